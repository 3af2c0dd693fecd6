"""Neural models: NCF (GMF, MLP, NeuMF) and the two-tower model beside iALS, EASE and MostPopular.

Run: ``.venv/bin/python benchmarks/bench_neural.py [--quick] [--threads N]``; writes the
"neural" section of BENCHMARKS.md.

* Accuracy on the fixed 80/20 splits (NDCG@10, Recall@50, and Recall@50 on *tail* test items:
  those outside the 20% most popular training items).
* Ablations of the two-tower model: logQ correction on / off, features vs id-only.
* Cold-start users: a quarter of the test users lose their training rows; each keeps 5 random
  training items as a live history, which the models see only at query time
  (``recommend_for_history``), never in training.
* Item cold start: 10% of the items lose every training interaction; for the test users who had
  them, only those items are ranked (NDCG@10), beside the content model.
* Training throughput (examples per second) with 1 and 2 torch threads.

Every neural model picks its epoch by early stopping on a validation slice of the training data
(one held-out item for 10% of the users), never on the test split.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import markdown_table, timer, write_section  # noqa: E402

TUNED_IALS = {"factors": 128, "reg": 60.0, "alpha": 8.0, "epochs": 30}  # as in bench_implicit.py
EASE_LAMBDA = {"ml-100k": 300.0, "ml-latest-small": 100.0}
NCF = {"factors": 32, "layers": 3, "negatives": 4, "batch_size": 1024, "epochs": 4, "patience": 2}
NCF_LR = {"gmf": 0.005, "mlp": 0.002, "neumf": 0.002}
TWO_TOWER = {
    "factors": 64,
    "batch_size": 512,
    "epochs": 5,
    "patience": 2,
    "temperature": 0.05,
    "learning_rate": 0.002,
    "validation": 0.5,
}


def tail_mask(train: sp.csr_matrix, share: float = 0.2) -> np.ndarray:
    """True for the items outside the ``share`` most popular (the long tail)."""
    pop = np.bincount(train.indices, minlength=train.shape[1])
    order = np.argsort(-pop, kind="stable")
    head = np.zeros(train.shape[1], bool)
    head[order[: int(round(share * train.shape[1]))]] = True
    return ~head


def metrics_of(model, split, tail: np.ndarray) -> dict[str, float]:
    from tastebud.eval import metrics as M

    rel = split.test.matrix
    users = np.nonzero(np.diff(rel.indptr) > 0)[0]
    rec, _ = model._recommend_idx(users, 50, exclude_seen=True)
    rel_u = rel[users]
    out = {
        "ndcg@10": float(np.mean(M.ndcg_at_k(rec, rel_u, 10))),
        "recall@50": float(np.mean(M.recall_at_k(rec, rel_u, 50))),
    }
    tail_rel = sp.csr_matrix(rel_u.multiply(tail[None, :]))
    tail_rel.eliminate_zeros()
    has = np.diff(tail_rel.indptr) > 0
    out["tail recall@50"] = float(np.mean(M.recall_at_k(rec[has], tail_rel[has], 50)))
    return out


def with_user_features(split, name: str):
    if name == "ml-100k":
        from tastebud.data.movielens import load_ml100k

        uf = load_ml100k().user_features
        split.train.user_features = uf
        split.test.user_features = uf
    return split


def accuracy(name: str, quick: bool, which: str = "all") -> tuple[list[dict], dict]:
    import tastebud as tb
    from tastebud.data.movielens import fixed_split

    split = with_user_features(fixed_split(name), name)
    tail = tail_mask(split.train.matrix)
    rows: list[dict] = []
    neural: dict = {}

    def run(label: str, model, params: str) -> None:
        with timer() as t:
            model.fit(split.train)
        row = {"data": name, "model": label, "params": params, **metrics_of(model, split, tail), "fit_s": t["s"]}
        hist = getattr(model, "history_", None)
        if hist:
            row["epochs"] = f"{getattr(model, 'best_epoch_', None)}/{len(hist)}"
            row["ex/s"] = float(np.mean([h["examples_per_s"] for h in hist]))
            neural[label] = model
        rows.append(row)
        print(row, flush=True)

    if which == "ncf":
        ncf_rows(name, quick, split, tail, run)
        return rows, neural
    run("MostPopular", tb.get_model("popular")(), "")
    q = TUNED_IALS
    run("iALS (tastebud)", tb.get_model("ials")(factors=q["factors"], reg=q["reg"], alpha=q["alpha"], epochs=q["epochs"]),
        f"{q['factors']} f, reg {q['reg']:g}, alpha {q['alpha']:g}")  # fmt: skip
    run("EASE (tastebud)", tb.get_model("ease")(reg=EASE_LAMBDA[name]), f"lambda {EASE_LAMBDA[name]:g}")
    tt = dict(TWO_TOWER)
    if quick:
        tt["epochs"] = 3
    desc = f"{tt['factors']} d, tau {tt['temperature']:g}, batch {tt['batch_size']}"
    run("two-tower (features, logQ)", tb.get_model("two_tower")(**tt), desc)
    if which in ("all", "ablations"):
        run("two-tower (features, no logQ)", tb.get_model("two_tower")(logq=False, **tt), desc)
        run("two-tower (id-only, logQ)", tb.get_model("two_tower")(features=False, **tt), desc)
    if which == "all":
        ncf_rows(name, quick, split, tail, run)
    return rows, neural


def ncf_rows(name: str, quick: bool, split, tail, run) -> None:
    import tastebud as tb

    n = dict(NCF)
    if quick:
        n["epochs"] = 2
    for kind in ("gmf", "mlp", "neumf"):
        lr = NCF_LR[kind]
        run(kind.upper() if kind != "neumf" else "NeuMF", tb.get_model(kind)(learning_rate=lr, **n),
            f"{n['factors']} f, {n['layers']} layers, {n['negatives']} neg, lr {lr:g}")  # fmt: skip


def cold_users(quick: bool) -> list[dict]:
    """Users held out of training, served from 5 items of their history at query time."""
    import tastebud as tb
    from tastebud.data.movielens import fixed_split
    from tastebud.eval import metrics as M

    name = "ml-100k"
    split = with_user_features(fixed_split(name), name)
    rng = np.random.default_rng(0)
    test = split.test.matrix
    test_users = np.nonzero(np.diff(test.indptr) > 0)[0]
    cold = np.sort(rng.choice(test_users, size=len(test_users) // 4, replace=False))
    is_cold = np.zeros(split.train.n_users, bool)
    is_cold[cold] = True
    train = split.train.subset(~is_cold[split.train.user_idx], source="train without cold users")
    full = split.train.matrix
    histories = []
    for u in cold:
        items = full.indices[full.indptr[u] : full.indptr[u + 1]]
        histories.append(np.sort(rng.choice(items, size=min(5, len(items)), replace=False)))
    tt = dict(TWO_TOWER)
    if quick:
        tt["epochs"] = 3
    models = {
        "MostPopular": tb.get_model("popular")(),
        "ItemKNN (tastebud, cosine, 40 nb.)": tb.get_model("itemknn")(),
        "two-tower (features)": tb.get_model("two_tower")(**tt),
        "two-tower (features, short_history=0.9)": tb.get_model("two_tower")(short_history=0.9, **tt),
    }
    rows = []
    rel = test[cold]
    for label, model in models.items():
        with timer() as t:
            model.fit(train)
        recs = np.full((len(cold), 10), -1, np.int64)
        for r, h in enumerate(histories):
            scores = np.array(model._score_history(h, np.ones(len(h), np.float32)), np.float32).ravel()
            scores[h] = -np.inf
            from tastebud.core.topk import topk

            recs[r] = topk(scores[None, :], 10)[0][0]
        rows.append({"model": label, "users": len(cold), "history": "5 items", "ndcg@10": float(np.mean(M.ndcg_at_k(recs, rel, 10))),
                     "recall@10": float(np.mean(M.recall_at_k(recs, rel, 10))), "fit_s": t["s"]})  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def cold_items(quick: bool) -> list[dict]:
    """10% of the items lose all training interactions; rank only those for their test users."""
    import tastebud as tb
    from tastebud.data.movielens import fixed_split
    from tastebud.eval import metrics as M

    name = "ml-100k"
    split = with_user_features(fixed_split(name), name)
    rng = np.random.default_rng(1)
    n_items = split.train.n_items
    held = np.sort(rng.choice(n_items, size=n_items // 10, replace=False))
    is_held = np.zeros(n_items, bool)
    is_held[held] = True
    train = split.train.subset(~is_held[split.train.item_idx], source="train without cold items")
    test = split.test.matrix
    rel = sp.csr_matrix(test.multiply(is_held[None, :]))
    rel.eliminate_zeros()
    users = np.nonzero(np.diff(rel.indptr) > 0)[0]
    tt = dict(TWO_TOWER)
    if quick:
        tt["epochs"] = 3
    models = {
        "Random": tb.get_model("random")(),
        "content (tastebud)": tb.get_model("content")(),
        "two-tower (features)": tb.get_model("two_tower")(**tt),
    }
    rows = []
    for label, model in models.items():
        with timer() as t:
            model.fit(train)
        rec, _ = model._recommend_idx(users, 10, exclude_seen=True, cand=held)
        rows.append({"model": label, "held-out items": len(held), "users": len(users),
                     "ndcg@10": float(np.mean(M.ndcg_at_k(rec, rel[users], 10))), "fit_s": t["s"]})  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def throughput() -> list[dict]:
    """Examples per second of one epoch of each neural model on ML-100K, 1 torch thread (2 threads
    oversubscribe the shared 2-core machine; see the note in the rendered section)."""
    import torch

    import tastebud as tb
    from tastebud.data.movielens import fixed_split

    split = with_user_features(fixed_split("ml-100k"), "ml-100k")
    rows = []
    for threads in (1,):
        torch.set_num_threads(threads)
        for label, model in (
            ("two-tower", tb.get_model("two_tower")(**dict(TWO_TOWER, epochs=1, validation=0.0))),
            ("GMF", tb.get_model("gmf")(epochs=1, validation=0.0, batch_size=1024)),
        ):
            model.fit(split.train)
            rows.append({"model": label, "torch threads": threads, "batch": model.batch_size,
                         "examples/s": model.history_[-1]["examples_per_s"]})  # fmt: skip
            print(rows[-1], flush=True)
    torch.set_num_threads(1)
    return rows


PARTS = ("accuracy:ml-100k", "ncf:ml-100k", "accuracy:ml-latest-small", "cold_users", "cold_items", "throughput")
WHICH = {"accuracy:ml-100k": "ablations", "ncf:ml-100k": "ncf", "accuracy:ml-latest-small": "main"}


def run_part(part: str, quick: bool) -> pd.DataFrame:
    if part in WHICH:
        return pd.DataFrame(accuracy(part.split(":", 1)[1], quick, WHICH[part])[0])
    return pd.DataFrame(
        {"cold_users": cold_users, "cold_items": cold_items, "throughput": lambda q: throughput()}[part](quick)
    )


def render(results: dict[str, pd.DataFrame], threads: int, minutes: float) -> str:
    parts = ["## Neural models: NCF and two-tower", ""]
    parts.append(
        "Fixed 80/20 splits (`../shared/data/splits`), all items ranked, training items excluded. "
        "`tail recall@50`: recall over the test items outside the 20% most popular training items. "
        "iALS and EASE are tastebud's own (`ials`, `ease`) with the parameters of `bench_implicit.py`; "
        "iALS is the tuned dot-product MF (Rendle et al. 2020) beside NCF. Neural models stop early on a "
        "validation slice of the training data, never on test (`epochs` = best/run); `ex/s` = training "
        f"examples per second with {threads} torch thread(s) on a shared 2-core machine."
    )
    parts.append("")
    for name in ("ml-100k", "ml-latest-small"):
        found = [results[p] for p in (f"accuracy:{name}", f"ncf:{name}") if p in results]
        if not found:
            continue
        sub = pd.concat(found, ignore_index=True)
        sub = sub.drop(columns=["data"])
        ref = float(sub[sub.model == "iALS (tastebud)"]["ndcg@10"].iloc[0])
        sub = sub.assign(**{"NDCG / iALS": sub["ndcg@10"] / ref})
        parts += [f"### {name}", "", markdown_table(sub.astype(object).where(sub.notna(), "")), ""]
    if "cold_users" in results:
        parts += [
            "### Cold-start users (ML-100K)",
            "",
            "A quarter of the test users are removed from training; each is served from 5 random items of "
            "their training history at query time (`recommend_for_history`, no retraining); relevant = their "
            "test items. The two-tower user tower pools the item tower's own vectors of those 5 items "
            "and adds a learned (residual) correction; it was trained on sampled sub-histories of many lengths. "
            "It beats MostPopular but not ItemKNN on these users (the issue's target is not met). One seed per "
            "row: the same protocol with `random_state` 0, 1, 2 gave 0.137, 0.113, 0.125 for the default "
            "two-tower (measured 2026-11-30), so the spread between seeds is larger than the gaps between "
            "the two-tower rows.",
            "",
            markdown_table(results["cold_users"]),
            "",
        ]
    if "cold_items" in results:
        parts += [
            "### Item cold start (ML-100K)",
            "",
            "10% of the items (random) lose every training interaction; for each test user who has any of "
            "them in the test set, only those items are ranked. The two-tower model places them from features "
            "alone (genres, year, TF-IDF of the title).",
            "",
            markdown_table(results["cold_items"]),
            "",
        ]
    if "throughput" in results:
        parts += [
            "### Training throughput (ML-100K, one epoch)",
            "",
            "One epoch with validation off, 1 torch thread, measured while the shared 2-core machine ran other "
            "jobs (load average 5-10); the `ex/s` column of the tables above comes from the same kind of runs. "
            "A GMF step (batch 1024) took 6.7 ms with 1 torch thread and 142 ms with 2 under that load (thread "
            "oversubscription), so the 2-thread throughput run was stopped and has no row here.",
            "",
            markdown_table(results["throughput"], floatfmt=".0f"),
            "",
        ]
    parts.append(
        f"Benchmark time: {minutes:.1f} min of wall time (parts may run in parallel). Reproduce: "
        "`.venv/bin/python benchmarks/bench_neural.py` (or `--part NAME --out DIR` per part, then `--render --out DIR`)."
    )
    return "\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="few epochs: a smoke run, not for the table")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the accuracy runs")
    ap.add_argument("--part", choices=PARTS, action="append", help="run only these parts (default: all)")
    ap.add_argument("--out", default=None, help="folder for per-part CSVs (to run parts in separate processes)")
    ap.add_argument("--render", action="store_true", help="only render the section from the CSVs in --out")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else None
    results: dict[str, pd.DataFrame] = {}
    start = time.perf_counter()
    if not args.render:
        for part in args.part or PARTS:
            results[part] = run_part(part, args.quick)
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                results[part].to_csv(out / f"{part.replace(':', '_')}.csv", index=False)
                (out / f"{part.replace(':', '_')}.seconds").write_text(str(time.perf_counter() - start))
        minutes = (time.perf_counter() - start) / 60
    if out is not None and (args.render or args.part):
        results = {}
        minutes = 0.0
        for part in PARTS:
            f = out / f"{part.replace(':', '_')}.csv"
            if f.is_file():
                results[part] = pd.read_csv(f)
                minutes = max(minutes, float((out / f"{part.replace(':', '_')}.seconds").read_text()) / 60)
    text = render(results, args.threads, minutes)
    if not args.quick and (args.render or not args.part):
        write_section("neural", text)
    print(text)


if __name__ == "__main__":
    main()
