"""Neural models (NCF: GMF, MLP, NeuMF; the two-tower model) beside iALS, EASE and MostPopular,
under the benchmark protocol (issue #18; ``protocol.py``).

On the fixed 80/20 splits of ML-100K and ml-latest-small (``tastebud.data.movielens.fixed_split``):

* the non-neural rows (``classic:NAME``): MostPopular, and tastebud's ``ials`` and ``ease`` each at
  its defaults and tuned on validation: ``bench_implicit.candidates``, the same ``tastebud.tune``
  search, carve (a random 20% of each user's training events, seed 0), seed and ``--trials`` as the
  ``implicit`` section; refitted on the whole training part (``--seeds`` seeds for iALS, which draws)
  and read once on the test part (``protocol.top_n``, plus Recall@50 on *tail* test items: those
  outside the 20% most popular training items);
* the neural rows (``neural:NAME``): ``gmf``, ``mlp``, ``neumf``, ``two_tower`` at their defaults,
  over ``--seeds`` seeds (``random_state``), each stopping early on its own validation slice of the
  training part (one held-out item for a share of the users), never on test; the same test read;
* each neural row against the best non-neural row *by validation* NDCG@10, paired per seed
  (``protocol.paired``; a deterministic reference's one fit stands for every seed).

Then the two-tower model's cold start on ML-100K: the short-history setting ``TWO_TOWER_COLD``
re-measured beside its alternatives on training users only (``cold_validation``; the test split is
never read), users held out of training and served from 5 items of their history
(``cold_users``; ``--cold-draws`` draws x ``--cold-seeds`` seeds) beside ItemKNN, and 10% of the
items held out of training (``cold_items``) beside the content model.

Training speed is the ``neural_speed`` section's (``bench_neural_speed.py``: interleaved timings);
``fit s`` here is one fit's wall time on shared cores, for scale only.

    .venv/bin/python benchmarks/bench_neural.py            # every part in one process
    .venv/bin/python benchmarks/bench_neural.py --part classic:ml-100k --part neural:ml-100k --out DIR
    .venv/bin/python benchmarks/bench_neural.py --render --out DIR   # the section from the parts in DIR
    .venv/bin/python benchmarks/bench_neural.py --part cold_items --seeds 1 --cold-seeds 1 --out /tmp/x --no-write

Parts save JSON in ``--out`` (atomic writes), so they may run as separate processes and be
rendered together; the section is written only from a full run or ``--render``, never with
``--no-write``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_implicit import METRIC, OURS, Candidate, _ours, _params, _per_seed, candidates, log  # noqa: E402
from common import markdown_table, timer, write_section  # noqa: E402
from protocol import carve, mean_std, paired, top_n, validation_value  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# The code this benchmark's section measures (besides common.COMMON_PATHS); make bench-check reads it.
MEASURES = [
    "src/tastebud/models/ncf.py",
    "src/tastebud/models/two_tower",
    "src/tastebud/models/_torch.py",
    "src/tastebud/models/_openmp.py",
    "src/tastebud/models/ials.py",
    "src/tastebud/models/ease.py",
    "src/tastebud/models/knn.py",
    "src/tastebud/models/_item_item.py",
    "src/tastebud/models/content.py",
    "src/tastebud/models/baseline.py",
    "src/tastebud/models/_common.py",
    "src/tastebud/kernels/ials.py",
    "src/tastebud/kernels/knn.py",
    "src/tastebud/tune.py",
    "benchmarks/protocol.py",
    "benchmarks/bench_implicit.py",
]
DATASETS = ("ml-100k", "ml-latest-small")
CLASSIC = ("ials", "ease")  # tuned beside their defaults; MostPopular has nothing to tune
NEURAL = ("gmf", "mlp", "neumf", "two_tower")  # rows are named by registry name, as a user asks for them
PARTS = (
    *(f"classic:{n}" for n in DATASETS),
    *(f"neural:{n}" for n in DATASETS),
    "cold_validation",
    "cold_users",
    "cold_items",
)

# The two-tower's setting for people served from a handful of items, on top of its defaults. It was
# chosen by earlier sweeps on the training-users protocol of ``cold_validation`` (never on the test
# users); ``cold_validation`` re-measures it beside the alternatives in COLD_GRID each run.
TWO_TOWER_COLD: dict[str, Any] = {
    "short_history": 0.9,
    "max_history": 10,
    "item_bias": True,
    "lr_schedule": "cosine",
    "epochs": 8,
    "validation": 0.0,
    "patience": None,
    "learning_rate": 0.002,
}
COLD_GRID: dict[str, dict[str, Any]] = {
    "two-tower (defaults)": {},
    "two-tower (short-history setting without item_bias)": {
        k: v for k, v in TWO_TOWER_COLD.items() if k != "item_bias"
    },
    "two-tower (short-history setting)": TWO_TOWER_COLD,
}
COLD_CHOSEN = "two-tower (short-history setting)"
ITEMKNN = "ItemKNN (defaults)"
#: called with a part's rows so far after each fit (saved, so a run stopped at its time limit keeps them)
Done = Callable[[list[dict[str, Any]]], None]
#: the full budget (the command-line defaults); a run below any of them says so in the section
DEFAULTS = {"trials": 10, "seeds": 3, "cold_draws": 3, "cold_seeds": 3, "cold_validation_draws": 3}
BUDGETS = {
    "trials": "tuning trials",
    "seeds": "seeds",
    "cold_draws": "cold-start user draws",
    "cold_seeds": "two-tower seeds per cold-start draw (and on the held-out items)",
    "cold_validation_draws": "draws of the training-users protocol",
}


# ---------------------------------------------------------------------------- metrics
def tail_mask(train: sp.csr_matrix, share: float = 0.2) -> np.ndarray:
    """True for the items outside the ``share`` most popular training items (the long tail)."""
    pop = np.bincount(train.indices, minlength=train.shape[1])
    order = np.argsort(-pop, kind="stable")
    head = np.zeros(train.shape[1], bool)
    head[order[: int(round(share * train.shape[1]))]] = True
    return ~head


def tail_recall(model: Any, split: Any, tail: np.ndarray, k: int = 50) -> float:
    """Recall@k over each test user's tail items (users with at least one), training items excluded."""
    from tastebud.eval import metrics as M

    rel = sp.csr_matrix(split.test.matrix.multiply(tail[None, :]))
    rel.eliminate_zeros()
    users = np.nonzero(np.diff(rel.indptr) > 0)[0]
    rec, _ = model.rank_rows(users, k, exclude_seen=True)
    return float(np.mean(M.recall_at_k(rec, rel[users], k)))


def test_read(model: Any, split: Any, tail: np.ndarray) -> dict[str, float]:
    """The one read of the test part every row gets: ``protocol.top_n`` and tail Recall@50."""
    return {**top_n(model, split), "tail recall@50": tail_recall(model, split, tail)}


def shown_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The values a row runs with for what its model's search space names (and the training
    schedule of the torch models), read from the model itself: the defaults are never restated here."""
    import tastebud as tb

    cls = tb.get_model(name)
    everything = cls(**params).get_params()
    keys = [*cls.search_space, *(k for k in ("epochs", "patience", "validation") if k in everything)]
    return {k: everything[k] for k in dict.fromkeys(keys) if k in everything}


def with_user_features(split: Any, name: str) -> Any:
    """ML-100K's demographics on both parts (the two-tower's user tower reads them)."""
    if name == "ml-100k":
        from tastebud.data.movielens import load_ml100k

        uf = load_ml100k().user_features
        split.train.user_features = uf
        split.test.user_features = uf
    return split


# ---------------------------------------------------------------------------- accuracy parts
def classic(name: str, trials: dict[str, int], seeds: list[int], done: Done) -> list[dict[str, Any]]:
    """MostPopular, and iALS / EASE at defaults and tuned on the carve; refitted, read once on test."""
    import tastebud as tb
    from tastebud.data.movielens import fixed_split

    split = fixed_split(name)
    tail = tail_mask(split.train.matrix)
    val = carve(split.train, "ials", METRIC)  # the carve candidates() and tune use (seed 0)
    popular = tb.get_model("popular")
    rows = [
        {
            "model": "popular",
            "setting": "defaults",
            "validation": validation_value(popular().fit(val.train), val, METRIC),
            "params": {},
            "runs": [],
        }
    ]
    with timer() as t:
        model = popular().fit(split.train)
    rows[0]["runs"].append({"seed": seeds[0], **test_read(model, split, tail), "fit_s": t["s"]})
    for m in CLASSIC:
        if trials[m]:
            chosen = candidates(name, [m], trials[m])
        else:  # no tuned row: the defaults alone, read on the same carve as candidates() reads them
            stochastic, build = _ours(m, OURS[m])
            value = validation_value(build(val.train, 0), val, METRIC)
            chosen = [Candidate("tastebud", m, "defaults", dict(OURS[m]), value, stochastic, build)]
        for c in chosen:
            runs = []
            for seed in seeds if c.stochastic else seeds[:1]:
                with timer() as t:
                    model = c.build(split.train, seed)
                runs.append({"seed": seed, **test_read(model, split, tail), "fit_s": t["s"]})
            shown = {k: v for k, v in c.params.items() if k != "threads"}
            rows.append({"model": m, "setting": c.setting, "validation": c.validation,
                         "params": shown_params(m, shown) if c.setting == "defaults" else shown, "runs": runs,
                         "trials": trials[m]})  # fmt: skip
            log(f"{name}: {m} ({c.setting}): test NDCG@10 {mean_std([r['ndcg@10'] for r in runs])}")
            done(rows)
    return rows


def neural(name: str, seeds: list[int], done: Done) -> list[dict[str, Any]]:
    """Each neural model at its defaults, one fit per seed, read once on test. Seed by seed (every
    model on one seed, then the next), so a run cut short still has every model."""
    import tastebud as tb
    from tastebud.data.movielens import fixed_split

    split = with_user_features(fixed_split(name), name)
    tail = tail_mask(split.train.matrix)
    rows = [
        {"model": m, "setting": "defaults", "validation": None, "params": shown_params(m, {}), "runs": []}
        for m in NEURAL
    ]
    for seed in seeds:
        for row in rows:
            model = tb.get_model(row["model"])(random_state=seed)
            with timer() as t:
                model.fit(split.train)
            row["runs"].append({"seed": seed, **test_read(model, split, tail), "fit_s": t["s"],
                                "epochs": f"{model.best_epoch_}/{len(model.history_)}"})  # fmt: skip
            log(f"{name}: {row['model']} seed {seed}: {row['runs'][-1]}")
            done([r for r in rows if r["runs"]])
    return rows


def reference(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The non-neural row with the highest *validation* NDCG@10 (the test part plays no part)."""
    return max((r for r in rows if r["validation"] is not None), key=lambda r: r["validation"])


# ---------------------------------------------------------------------------- cold-start users
def cold_draw(split: Any, draw: int, share: float = 0.25, size: int = 5) -> tuple[Any, np.ndarray, list[np.ndarray]]:
    """Hold a ``share`` of the test users out of training; give each ``size`` random items of
    their training history as a live history. Returns (training data, cold users, histories)."""
    rng = np.random.default_rng(draw)
    test = split.test.matrix
    test_users = np.nonzero(np.diff(test.indptr) > 0)[0]
    cold = np.sort(rng.choice(test_users, size=int(len(test_users) * share), replace=False))
    is_cold = np.zeros(split.train.n_users, bool)
    is_cold[cold] = True
    train = split.train.subset(~is_cold[split.train.user_idx], source="train without cold users")
    full = split.train.matrix
    histories = []
    for u in cold:
        items = full.indices[full.indptr[u] : full.indptr[u + 1]]
        histories.append(np.sort(rng.choice(items, size=min(size, len(items)), replace=False)))
    return train, cold, histories


def history_metrics(model: Any, histories: list[np.ndarray], rel: sp.csr_matrix) -> dict[str, float]:
    """NDCG@10 and Recall@10 of top-10 lists scored from each live history alone (its items excluded)."""
    from tastebud.eval import metrics as M

    recs = np.full((len(histories), 10), -1, np.int64)
    for r, h in enumerate(histories):
        recs[r] = model.rank_history_idx(h, k=10)[0]
    return {
        "ndcg@10": float(np.mean(M.ndcg_at_k(recs, rel, 10))),
        "recall@10": float(np.mean(M.recall_at_k(recs, rel, 10))),
    }


def cold_users(draws: int, seeds: list[int], done: Done) -> list[dict[str, Any]]:
    """Users held out of training, served from 5 items of their history at query time.

    One row per (draw, model, seed); ``render`` averages them. Deterministic models fit once a draw."""
    import tastebud as tb
    from tastebud.data.movielens import fixed_split

    split = with_user_features(fixed_split("ml-100k"), "ml-100k")
    models: dict[str, tuple[Callable[[int], Any], Sequence[int]]] = {
        "MostPopular": (lambda s: tb.get_model("popular")(), seeds[:1]),
        ITEMKNN: (lambda s: tb.get_model("itemknn")(), seeds[:1]),
        COLD_CHOSEN: (lambda s: tb.get_model("two_tower")(**TWO_TOWER_COLD, random_state=s), seeds),
    }
    tb.get_model("itemknn")().fit(split.train)  # numba compiles outside the timed fits
    rows = []
    for draw in range(draws):
        train, cold, histories = cold_draw(split, draw)
        rel = split.test.matrix[cold]
        for label, (make, model_seeds) in models.items():
            for seed in model_seeds:
                model = make(seed)
                with timer() as t:
                    model.fit(train)
                rows.append({"model": label, "draw": draw, "seed": seed, "users": len(cold),
                             **history_metrics(model, histories, rel), "fit_s": t["s"]})  # fmt: skip
                log(f"cold users: {rows[-1]}")
                done(rows)
    return rows


def cold_validation_draw(
    split: Any, draw: int, share: float = 0.25, size: int = 5
) -> tuple[Any, list[np.ndarray], sp.csr_matrix]:
    """The cold-start protocol on TRAINING users only (for choosing hyper-parameters).

    The test users of the cold-start table's draw 0 are dropped; a ``share`` of the remaining users
    with at least 10 training items are held out too; for each, a random 20% of their training
    items are the relevant set and three random ``size``-item histories from the rest are three
    queries. The test split is never read (its users only decide who is left out)."""
    _, cold, _ = cold_draw(split, 0)
    rng = np.random.default_rng([100, draw])
    full = split.train.matrix
    out = np.zeros(full.shape[0], bool)
    out[cold] = True
    rest = np.nonzero(~out & (np.diff(full.indptr) >= 10))[0]
    val = np.sort(rng.choice(rest, size=int(len(rest) * share), replace=False))
    out[val] = True
    train = split.train.subset(~out[split.train.user_idx], source="train without validation users")
    histories, rel_rows = [], []
    for u in val:
        items = rng.permutation(full.indices[full.indptr[u] : full.indptr[u + 1]])
        n_rel = max(1, int(round(0.2 * len(items))))
        for _ in range(3):
            rel_rows.append(items[:n_rel])
            histories.append(np.sort(rng.choice(items[n_rel:], size=size, replace=False)))
    rows = np.repeat(np.arange(len(histories)), [len(r) for r in rel_rows])
    rel = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, np.concatenate(rel_rows))), shape=(len(histories), full.shape[1])
    )
    return train, histories, rel


def cold_validation(draws: int, done: Done) -> list[dict[str, Any]]:
    """COLD_GRID beside MostPopular and ItemKNN on the training-users protocol (two-tower seed = draw)."""
    import tastebud as tb
    from tastebud.data.movielens import fixed_split

    split = with_user_features(fixed_split("ml-100k"), "ml-100k")
    tb.get_model("itemknn")().fit(split.train)  # numba compiles outside the timed fits
    rows = []
    for draw in range(draws):
        train, histories, rel = cold_validation_draw(split, draw)
        grid = [("MostPopular", tb.get_model("popular")()), (ITEMKNN, tb.get_model("itemknn")())]
        grid += [(label, tb.get_model("two_tower")(**change, random_state=draw)) for label, change in COLD_GRID.items()]
        for label, model in grid:
            with timer() as t:
                model.fit(train)
            rows.append({"model": label, "draw": draw, "seed": draw, "queries": len(histories),
                         **history_metrics(model, histories, rel), "fit_s": t["s"]})  # fmt: skip
            log(f"cold validation: {rows[-1]}")
            done(rows)
    return rows


# ---------------------------------------------------------------------------- cold-start items
def cold_items(seeds: list[int], done: Done) -> list[dict[str, Any]]:
    """10% of the items lose all training interactions; rank only those for their test users."""
    import tastebud as tb
    from tastebud.data.movielens import fixed_split
    from tastebud.eval import metrics as M

    split = with_user_features(fixed_split("ml-100k"), "ml-100k")
    rng = np.random.default_rng(1)
    n_items = split.train.n_items
    held = np.sort(rng.choice(n_items, size=n_items // 10, replace=False))
    is_held = np.zeros(n_items, bool)
    is_held[held] = True
    train = split.train.subset(~is_held[split.train.item_idx], source="train without cold items")
    rel = sp.csr_matrix(split.test.matrix.multiply(is_held[None, :]))
    rel.eliminate_zeros()
    users = np.nonzero(np.diff(rel.indptr) > 0)[0]
    models: dict[str, tuple[Callable[[int], Any], Sequence[int]]] = {
        "Random": (lambda s: tb.get_model("random")(random_state=s), seeds),
        "content (defaults)": (lambda s: tb.get_model("content")(), seeds[:1]),
        "two-tower (defaults, features)": (lambda s: tb.get_model("two_tower")(random_state=s), seeds),
    }
    rows = []
    for label, (make, model_seeds) in models.items():
        for seed in model_seeds:
            model = make(seed)
            with timer() as t:
                model.fit(train)
            rec, _ = model.rank_rows(users, 10, exclude_seen=True, allowed=held)
            rows.append({"model": label, "seed": seed, "held-out items": len(held), "users": len(users),
                         "ndcg@10": float(np.mean(M.ndcg_at_k(rec, rel[users], 10))), "fit_s": t["s"]})  # fmt: skip
            log(f"cold items: {rows[-1]}")
            done(rows)
    return rows


# ---------------------------------------------------------------------------- running parts
def run_part(part: str, args: argparse.Namespace, done: Done) -> list[dict[str, Any]]:
    seeds = list(range(args.seeds))
    kind, _, name = part.partition(":")
    if kind == "classic":
        trials = {m: args.trials for m in CLASSIC}
        for m, n, value in args.trials_for:
            if n == name:
                trials[m] = value
        return classic(name, trials, seeds, done)
    if kind == "neural":
        return neural(name, seeds, done)
    if part == "cold_validation":
        return cold_validation(args.cold_validation_draws, done)
    if part == "cold_users":
        return cold_users(args.cold_draws, list(range(args.cold_seeds)), done)
    return cold_items(list(range(args.cold_seeds)), done)


def measure(part: str, args: argparse.Namespace, options: dict[str, Any], out: Path | None) -> dict[str, Any]:
    """Run one part; its rows so far are saved after every fit (``complete`` False until it ends)."""
    start, load0 = time.perf_counter(), os.getloadavg()[0]

    def payload(rows: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
        return {"rows": rows, "seeds": list(range(args.seeds)), "seconds": time.perf_counter() - start,
                "load": [load0, os.getloadavg()[0]], "options": options, "complete": complete}  # fmt: skip

    def done(rows: list[dict[str, Any]]) -> None:
        if out is not None:
            save_part(out, part, payload(rows, complete=False))

    result = payload(run_part(part, args, done), complete=True)
    if out is not None:
        save_part(out, part, result)
    return result


def save_part(out: Path, part: str, payload: dict[str, Any]) -> None:
    """One part's result as JSON, written to a temporary sibling and renamed into place."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{part.replace(':', '_')}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=float) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_parts(out: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for part in PARTS:
        path = out / f"{part.replace(':', '_')}.json"
        if path.is_file():
            found[part] = json.loads(path.read_text(encoding="utf-8"))
    return found


# ---------------------------------------------------------------------------- rendering
def _fmt_params(params: dict[str, Any]) -> str:
    return _params(params) if params else "-"


def accuracy_table(rows: list[dict[str, Any]], seeds: list[int]) -> tuple[str, str]:
    """The table of one data set and its computed sentence on the reference."""
    ref = reference(rows)
    ref_ndcg = _per_seed(ref, seeds, "ndcg@10")
    ref_label = f"{ref['model']}, {_setting(ref)}"
    table = []
    for r in rows:
        nd = [x["ndcg@10"] for x in r["runs"]]
        row = {
            "model": r["model"],
            "setting": _setting(r),
            "validation NDCG@10": "-" if r["validation"] is None else f"{r['validation']:.4f}",
            "NDCG@10": mean_std(nd),
            "Recall@20": mean_std([x["recall@20"] for x in r["runs"]]),
            "tail Recall@50": mean_std([x["tail recall@50"] for x in r["runs"]]),
            "fits": len(r["runs"]),
            "fit s": f"{statistics.median(x['fit_s'] for x in r['runs']):.1f}",
            "epochs (best/run)": ", ".join(x["epochs"] for x in r["runs"]) if "epochs" in r["runs"][0] else "",
            "NDCG@10 / reference": f"{statistics.fmean(nd) / statistics.fmean(ref_ndcg):.3f}",
            "vs reference, per seed": "reference" if r is ref else (_paired(r, ref) if r["validation"] is None else ""),
            "parameters": _fmt_params(r["params"]),
        }
        table.append(row)
    wins = [f"{r['model']} {_wins(r, ref)} of {len(r['runs'])}" for r in rows if r["validation"] is None]
    sentence = (
        f"Reference (the non-neural row best on validation): {ref_label}, validation NDCG@10 {ref['validation']:.4f}."
    )
    if wins:
        sentence += " Seeds on which a neural model's test NDCG@10 is above the reference's: " + ", ".join(wins) + "."
    return markdown_table(pd.DataFrame(table)), sentence


def _pairs(r: dict[str, Any], ref: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Test NDCG@10 of row ``r`` and of the reference on each of ``r``'s seeds."""
    own = [x["seed"] for x in r["runs"]]
    return _per_seed(r, own, "ndcg@10"), _per_seed(ref, own, "ndcg@10")


def _paired(r: dict[str, Any], ref: dict[str, Any]) -> str:
    return paired(*_pairs(r, ref), lower_is_better=False)


def _wins(r: dict[str, Any], ref: dict[str, Any]) -> int:
    return sum(a > b for a, b in zip(*_pairs(r, ref), strict=True))


def _fits(rows: list[dict[str, Any]]) -> int:
    """Fits behind a part's rows: an accuracy row holds one run per fit, a cold-start row is one fit."""
    return sum(len(r["runs"]) if "runs" in r else 1 for r in rows)


def _setting(r: dict[str, Any]) -> str:
    if r["setting"] == "defaults":
        return "defaults"
    return f"tuned on validation ({r['trials']} trials)"


def cold_summary(runs: pd.DataFrame, reference_model: str) -> pd.DataFrame:
    """Per model: NDCG@10 mean, standard deviation and range over runs, and per-draw gap to ``reference_model``."""
    ref = runs[runs.model == reference_model].groupby("draw")["ndcg@10"].mean()
    out = []
    for label, g in runs.groupby("model", sort=False):
        nd = g["ndcg@10"].to_numpy()
        per_draw = g.groupby("draw")["ndcg@10"].mean()
        gap = (per_draw - ref.reindex(per_draw.index)).to_numpy()
        above = int(np.sum(nd > ref.reindex(g["draw"]).to_numpy()))
        row = {"model": label, "runs": len(g), "ndcg@10": mean_std(list(nd)),
               "range": f"{nd.min():.4f}-{nd.max():.4f}", "recall@10": f"{g['recall@10'].mean():.4f}"}  # fmt: skip
        if label != reference_model:
            row["vs ItemKNN (per draw)"] = " / ".join(f"{d:+.4f}" for d in gap)
            row["runs above ItemKNN"] = f"{above}/{len(g)}"
        else:
            row["vs ItemKNN (per draw)"] = row["runs above ItemKNN"] = ""
        row["fit s"] = f"{g['fit_s'].mean():.1f}"
        out.append(row)
    return pd.DataFrame(out)


def cold_verdict(runs: pd.DataFrame, model: str, reference_model: str) -> str:
    """One sentence: is ``model`` ahead of ``reference_model`` on every draw and in most runs?"""
    ref = runs[runs.model == reference_model].set_index("draw")["ndcg@10"]
    g = runs[runs.model == model]
    if g.empty or ref.empty:
        return ""
    gaps = g["ndcg@10"].to_numpy() - ref.reindex(g["draw"]).to_numpy()
    per_draw = g.groupby("draw")["ndcg@10"].mean() - ref.reindex(sorted(g["draw"].unique()))
    ahead = bool((per_draw > 0).all() and np.mean(gaps > 0) >= 2 / 3)
    word = "beats" if ahead else "does not clearly beat"
    spread = f" ± {gaps.std(ddof=1):.4f}" if len(gaps) > 1 else ""
    return (
        f"Verdict (computed): the {model} {word} ItemKNN on these users: NDCG@10 gap "
        f"{gaps.mean():+.4f}{spread} (mean ± standard deviation over {len(gaps)} runs), ahead on "
        f"{int((per_draw > 0).sum())}/{len(per_draw)} draws and in {int((gaps > 0).sum())}/{len(gaps)} runs "
        "(criterion: ahead on every draw and in at least two thirds of the runs)."
    )


def cold_choice(runs: pd.DataFrame) -> str:
    """Which grid row this run's validation favours, and whether it is the setting the test table uses."""
    grid = runs[runs.model.isin(list(COLD_GRID))]
    if grid.empty:
        return ""
    means = grid.groupby("model", sort=False)["ndcg@10"].mean()
    best = str(means.idxmax())
    agree = (
        "the setting the next table uses" if best == COLD_CHOSEN else f"not the {COLD_CHOSEN} that the next table uses"
    )
    return (
        f"In this run the grid row with the highest mean validation NDCG@10 is the {best} ({means[best]:.4f}): {agree}. "
        "The earlier sweeps chose the setting for leading ItemKNN on every draw; here, "
        + cold_verdict(runs, COLD_CHOSEN, ITEMKNN).replace("Verdict (computed): the", "the")
    )


def scaled_down(options: dict[str, Any]) -> str:
    """A sentence naming every budget below the script's defaults, and why (empty when none is)."""
    cut = [
        f"{what} {options[key]} instead of {DEFAULTS[key]}"
        for key, what in BUDGETS.items()
        if options[key] < DEFAULTS[key]
    ]
    cut += [
        f"{m} on {d}: " + (f"{n} trials instead of {options['trials']}" if n else "no tuned row (0 trials)")
        for m, d, n in options["trials_for"]
    ]
    if not cut:
        return ""
    return (
        "Scaled down from the script's defaults so that the whole run fits about half an hour on the shared cores "
        "(see the fit s columns; an EASE fit inverts a dense item x item matrix, 9,724 items on ml-latest-small): "
        + "; ".join(cut)
        + ". "
    )


def command(options: dict[str, Any]) -> str:
    """The options that shape the figures, as a command line."""
    words = [f"--{key.replace('_', '-')} {options[key]}" for key in DEFAULTS]
    return " ".join(words + [f"--trials-for {m}@{d}={n}" for m, d, n in options["trials_for"]])


def render(results: dict[str, dict[str, Any]]) -> str:
    parts = ["## Neural models: NCF and two-tower beside iALS and EASE", ""]
    first = next((results[p] for p in results if p.startswith("neural:") or p.startswith("classic:")), None)
    seeds = first["seeds"] if first else []
    trials = next(iter(results.values()))["options"]["trials"]
    parts.append(
        "Fixed 80/20 splits (`tastebud.data.movielens.fixed_split`), full ranking, each user's training items "
        "excluded; NDCG@10 and Recall@20 as in every top-N table (`protocol.top_n`); `tail Recall@50`: recall over "
        "the test items outside the 20% most popular training items. Every choice is made on the training part: "
        'iALS and EASE get a "defaults" row (the models\' own defaults) and a "tuned on validation" row from '
        "`tastebud.tune` (Optuna TPE, seed 0) on the carve the `implicit` section uses (a random 20% of each user's "
        "training events, seed 0), the same search with the same budget (`bench_implicit.candidates`); `validation "
        "NDCG@10` is each row's value on that carve. GMF, MLP, NeuMF (He et al. 2017) and the two-tower model "
        "(Covington et al. 2016; Yi et al. 2019) run "
        f"at their defaults (parameters column, read from the models) with seeds {', '.join(map(str, seeds))} "
        "(`random_state`; mean ± standard deviation), each stopping early on its own validation slice of the "
        "training part (`validation`, `patience`; `epochs` = best/run per seed); iALS also draws, so it has one fit "
        f"per seed (on {OURS['ials'].get('threads', 0)} numba threads, as in the `implicit` section), and popular and "
        "EASE fit once. The test part is read once per fit. The **reference** is the "
        "non-neural row with the highest validation NDCG@10 (never chosen by test); `vs reference, per seed` is each "
        "neural row's test NDCG@10 minus the reference's, seed by seed (`protocol.paired`; a deterministic "
        f"reference's one fit stands for every seed). No neural row is tuned: the same {trials}-trial search for "
        f"{len(NEURAL)} models on {len(DATASETS)} data sets is {trials * len(NEURAL) * len(DATASETS)} more fits on the "
        "carve (see the fit s column), over this run's budget; "
        "Rendle et al. (RecSys 2020) is the reference point for a tuned comparison. `fit s` is the median wall "
        "time of one fit (1 torch thread) on a shared 2-core machine, for scale only: training speed under the "
        "interleaved timing protocol is the `neural_speed` section (`bench_neural_speed.py`)."
    )
    parts.append("")
    for name in DATASETS:
        rows = [*results.get(f"classic:{name}", {}).get("rows", []), *results.get(f"neural:{name}", {}).get("rows", [])]
        if not rows or not any(r["validation"] is not None for r in rows):
            continue
        table, sentence = accuracy_table(rows, seeds)
        parts += [f"### {name}", "", table, "", sentence, ""]
    if "cold_validation" in results:
        runs = pd.DataFrame(results["cold_validation"]["rows"])
        parts += [
            "### Choosing the cold-start setting (training users only)",
            "",
            "The cold-start protocol of the next table, on *training* users: the test users of draw 0 are "
            "dropped, a quarter of the other users with at least 10 training items are held out of training, "
            "and each is queried three times with 5 random items of their training history; relevant = a "
            "random 20% of their training items kept out of those histories. The test split is never read. "
            f"{runs['draw'].nunique()} draw(s), two-tower `random_state` = draw. The short-history setting "
            f"(`{', '.join(f'{k}={v}' for k, v in TWO_TOWER_COLD.items())}` on top of the defaults) was chosen "
            "on this protocol by earlier sweeps, whose figures this script does not reproduce: they tried "
            "`short_history`, `max_history`, `temperature`, extra `negatives`, `id_dropout`, attention pooling, "
            "`reg`, `validation_history`, the batch size, `logq=False`, `learning_rate`, `factors` and a learned "
            "`item_bias`, and found the early-stopped epoch to be the main noise with a constant learning rate, "
            'hence a fixed 8 epochs with the learning rate annealed to zero (`lr_schedule="cosine"`, so no '
            "validation slice). The table re-measures the final candidates: the model's defaults, the setting "
            "without the item bias, and the setting.",
            "",
            markdown_table(cold_summary(runs, ITEMKNN)),
            "",
            cold_choice(runs),
            "",
        ]
    if "cold_users" in results:
        cold = pd.DataFrame(results["cold_users"]["rows"])
        draws, n_seeds = cold["draw"].nunique(), cold.loc[cold.model == COLD_CHOSEN, "seed"].nunique()
        parts += [
            "### Cold-start users (ML-100K)",
            "",
            "A quarter of the test users are removed from training; each is served from 5 random items of "
            "their training history at query time (`recommend_for_history`, no retraining); relevant = their "
            f"test items. {draws} draw(s) of the held-out users and their histories x {n_seeds} two-tower seed(s) "
            "(MostPopular and ItemKNN are deterministic: one run per draw). `ndcg@10` is the mean over runs "
            "with its standard deviation and range; `vs ItemKNN` is, per draw, the model's mean NDCG@10 minus "
            "ItemKNN's on the same users and histories. The two-tower user tower pools the item tower's own "
            "vectors of the 5 items and adds a learned (residual) correction; with `item_bias` a learned per-item "
            "bias is added to the cosine score. The two-tower runs the short-history setting above.",
            "",
            markdown_table(cold_summary(cold, ITEMKNN)),
            "",
            cold_verdict(cold, COLD_CHOSEN, ITEMKNN),
            "",
        ]
    if "cold_items" in results:
        items = pd.DataFrame(results["cold_items"]["rows"])
        summary = [
            {"model": label, "runs": len(g), "held-out items": int(g["held-out items"].iloc[0]),
             "users": int(g["users"].iloc[0]), "ndcg@10": mean_std(list(g["ndcg@10"])), "fit s": f"{g['fit_s'].mean():.1f}"}
            for label, g in items.groupby("model", sort=False)
        ]  # fmt: skip
        parts += [
            "### Item cold start (ML-100K)",
            "",
            "10% of the items (random, seed 1) lose every training interaction; for each test user who has any of "
            "them in the test set, only those items are ranked. The two-tower model (defaults, one run per seed) "
            "places them from features alone (genres, year, TF-IDF of the title); the content model at its defaults "
            "(its block weights chosen on validation are the `knn` section's).",
            "",
            markdown_table(pd.DataFrame(summary)),
            "",
        ]
    short = [f"`{p}` ({_fits(results[p]['rows'])} fits)" for p in results if not results[p].get("complete", True)]
    if short:
        parts += [
            "Cut short at this run's time limit, shown with the fits it finished: " + ", ".join(short) + ".",
            "",
        ]
    missing = [p for p in PARTS if p not in results]
    if missing:
        parts += [
            "Not measured in this run (over its time budget): " + ", ".join(f"`{p}`" for p in missing) + ".",
            "",
        ]
    options = next(iter(results.values()))["options"]
    loads = [x for p in results.values() for x in p["load"]]
    parts.append(
        "Wall time per part: "
        + ", ".join(f"`{p}` {results[p]['seconds'] / 60:.1f} min" for p in results)
        + f" ({sum(p['seconds'] for p in results.values()) / 60:.0f} min in all; parts may run as separate processes "
        f"side by side), 1 torch thread, on 2 cores shared with other jobs (1-minute load average {min(loads):.1f} to "
        f"{max(loads):.1f} at the parts' starts and ends). "
        + scaled_down(options)
        + f"Reproduce: `.venv/bin/python benchmarks/bench_neural.py {command(options)}` (or `--part NAME --out DIR` "
        "per part, then `--render --out DIR`)."
    )
    return "\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=PARTS, action="append", help="run only these parts (default: all)")
    ap.add_argument("--out", default=None, help="folder for the parts' JSON (to run parts in separate processes)")
    ap.add_argument("--render", action="store_true", help="only render the section from the parts in --out")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    ap.add_argument(
        "--trials",
        type=int,
        default=DEFAULTS["trials"],
        help="tuning trials of iALS and EASE (default 10, as bench_implicit)",
    )
    ap.add_argument(
        "--trials-for",
        action="append",
        default=[],
        metavar="MODEL@DATA=N",
        help="fewer trials for one model on one data set (e.g. ease@ml-latest-small=5; 0: no tuned row), said in the section",
    )
    ap.add_argument("--seeds", type=int, default=DEFAULTS["seeds"], help="seeds of the models that draw (default 3)")
    ap.add_argument(
        "--cold-draws", type=int, default=DEFAULTS["cold_draws"], help="draws of held-out users (default 3)"
    )
    ap.add_argument(
        "--cold-seeds", type=int, default=DEFAULTS["cold_seeds"], help="two-tower seeds per cold-start draw (default 3)"
    )
    ap.add_argument(
        "--cold-validation-draws",
        type=int,
        default=DEFAULTS["cold_validation_draws"],
        help="draws of the training-users protocol",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()
    parsed = []
    for item in args.trials_for:
        try:
            target, value = item.split("=")
            model, data = target.split("@")
            parsed.append((model, data, int(value)))
        except ValueError:
            ap.error(f"--trials-for wants MODEL@DATA=N, got {item!r}")
        if model not in CLASSIC or data not in DATASETS or int(value) < 0:
            ap.error(
                f"--trials-for: MODEL in {', '.join(CLASSIC)}, DATA in {', '.join(DATASETS)}, N >= 0; got {item!r}"
            )
    args.trials_for = parsed
    if min(args.trials, args.seeds, args.cold_draws, args.cold_seeds, args.cold_validation_draws, args.threads) < 1:
        ap.error("--trials, --seeds, --cold-draws, --cold-seeds, --cold-validation-draws and --threads must be >= 1")
    if args.part and args.out is None and not args.no_write:
        ap.error("--part needs --out (then --render --out), or --no-write")
    from tastebud.models._torch import require_torch

    require_torch().set_num_threads(args.threads)
    out = Path(args.out) if args.out else None
    results: dict[str, dict[str, Any]] = {}
    if not args.render:
        options = {**{k: getattr(args, k) for k in DEFAULTS}, "trials_for": args.trials_for}
        for part in args.part or PARTS:
            results[part] = measure(part, args, options, out)
    if args.render:
        if out is None:
            ap.error("--render needs --out")
        results = load_parts(out)
        if not results:
            ap.error(f"--render: no parts in {out}")
    text = render(results)
    print(text, flush=True)
    if not args.no_write and (args.render or not args.part):
        write_section("neural", text, measures=MEASURES)
        print("written section 'neural' of BENCHMARKS.md", flush=True)


if __name__ == "__main__":
    main()
