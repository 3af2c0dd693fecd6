"""LensKit's models fitted in LensKit's own environment, their learned arrays handed back (issue #22).

LensKit 2025 pins ``pandas~=2.0`` while tastebud runs on pandas 3, so it cannot share tastebud's
environment: it lives in ``.venv-lenskit`` (``make lenskit-env``) and this script runs there as a
subprocess of ``peers.py``. It reads ``DIR/train.npz`` (``user``, ``item``, ``value``: the training
events as tastebud's row and column positions; ``shape``) and ``DIR/params.json`` (``model``,
``params``, ``seed``, ``threads``), fits the model, and writes ``DIR/out.npz`` (no pickle anywhere):

- ``als``: :class:`lenskit.als.ImplicitMFScorer` (Hu, Koren and Volinsky 2008, confidence
  ``1 + weight`` on every observed cell). Its scorer answers a query that carries a history
  (LensKit's pipeline looks a known user's training items up) by solving a fresh user vector
  against the final item embeddings, ``(V'V + reg I + weight V_h'V_h) u = (1 + weight) V_h' 1``
  (:func:`als_fold_in`), for training users and new people alike; so the item embeddings ``V``
  and ``V'V + reg I`` (``otor``) are what it hands back.
- ``knn``: :class:`lenskit.knn.ItemKNNScorer` with implicit feedback (Deshpande and Karypis 2004).
  Its scorer is not ``h W``: for each target item it keeps, of the person's items, the
  ``max_nbrs`` most similar to the target and sums those similarities (an item with fewer than
  ``min_nbrs`` such neighbours gets no score) (:func:`knn_scores`); the similarity matrix is what
  it hands back.

Before writing, the worker scores a few users with LensKit's own scorer and with those functions
over the arrays it is about to hand back, and fails loudly when they differ. Items LensKit never
saw in training are not in its vocabulary: it cannot score them, so their rows are NaN (``als``)
or empty (``knn``). The two functions need numpy and scipy only: ``peers.py`` imports them from
here, so the rule checked here is the rule the benchmarks run.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

#: Users whose scores the worker compares with LensKit's own scorer before handing arrays back.
CHECKED_USERS = 5
#: |carried - LensKit| allowed, relative to the largest |score| of the user (float32 solves differ in order).
TOLERANCE = 1e-3


def als_fold_in(item_factors: np.ndarray, otor: np.ndarray, weight: float, rows: sp.csr_matrix) -> np.ndarray:
    """LensKit ImplicitMF's user vector for each history row: ``(otor + weight V_h'V_h)^-1 (1 + weight) V_h' 1``.

    Presence only (LensKit's default ``use_ratings=False``); items LensKit does not know (NaN
    rows of ``item_factors``) are left out, as its scorer leaves them out.
    """
    rows = sp.csr_matrix(rows)
    known = ~np.isnan(item_factors[:, 0])
    out = np.zeros((rows.shape[0], item_factors.shape[1]), np.float64)
    for r in range(rows.shape[0]):
        items = rows.indices[rows.indptr[r] : rows.indptr[r + 1]]
        items = items[known[items]]
        if len(items) == 0:
            continue
        m = item_factors[items].astype(np.float64)
        a = otor + weight * (m.T @ m)
        out[r] = scipy.linalg.solve(a, (1.0 + weight) * m.sum(axis=0), assume_a="pos")
    return out.astype(np.float32)


def knn_scores(sims: sp.csr_matrix, rows: sp.csr_matrix, max_nbrs: int, min_nbrs: int = 1) -> np.ndarray:
    """LensKit ItemKNN's implicit-feedback scores of history rows (n, n_items): for target ``j``, the
    sum of the ``max_nbrs`` largest ``sims[i, j]`` over the person's items ``i``; NaN where fewer
    than ``min_nbrs`` of them are neighbours of ``j`` (``sims`` holds positive similarities only)."""
    rows = sp.csr_matrix(rows)
    sims = sp.csr_matrix(sims)
    out = np.full((rows.shape[0], sims.shape[1]), np.nan, np.float32)
    for r in range(rows.shape[0]):
        items = np.unique(rows.indices[rows.indptr[r] : rows.indptr[r + 1]])
        if len(items) == 0:
            continue
        block = sims[items].toarray()  # (history, n_items); 0 = not a neighbour
        counts = np.minimum((block > 0).sum(axis=0), max_nbrs)
        if len(items) > max_nbrs:  # keep the max_nbrs largest per column (zeros only fill)
            block = np.partition(block, len(items) - max_nbrs, axis=0)[len(items) - max_nbrs :]
        scores = block.sum(axis=0, dtype=np.float64)
        out[r] = np.where(counts >= min_nbrs, scores, np.nan)
    return out


# ------------------------------------------------------------------ inside LensKit's environment
def _dataset(user: np.ndarray, item: np.ndarray) -> Any:
    import pandas as pd
    from lenskit.data import from_interactions_df

    return from_interactions_df(pd.DataFrame({"user_id": user, "item_id": item}))


def _ours(vocab: Any, n: int) -> np.ndarray:
    """LensKit's numbers of our positions 0..n-1 (-1: not in its vocabulary)."""
    return np.asarray(vocab.numbers(np.arange(n), missing="negative"), np.int64)


def _lenskit_scores(scorer: Any, user: Any, history: np.ndarray, n_items: int) -> np.ndarray:
    """LensKit's own scores, in our item order, of a query with ``history`` (user None: a new person)."""
    from lenskit.data import ItemList, RecQuery

    query = RecQuery(user_id=user, history_items=ItemList(item_ids=history))
    scored = scorer(query, ItemList(item_ids=np.arange(n_items)))
    return np.asarray(scored.scores(), np.float64)


def _check(name: str, lenskit: np.ndarray, carried: np.ndarray) -> None:
    """Fail loudly when the carried rule does not give LensKit's scores (NaN where LensKit has none)."""
    if not np.array_equal(np.isnan(lenskit), np.isnan(carried)):
        raise SystemExit(f"lenskit worker: {name}: the carried scores are missing where LensKit's are not")
    ok = ~np.isnan(lenskit)
    scale = max(float(np.abs(lenskit[ok]).max(initial=0.0)), 1e-12)
    diff = float(np.abs(lenskit[ok] - carried[ok]).max(initial=0.0)) / scale
    if diff > TOLERANCE:
        raise SystemExit(f"lenskit worker: {name}: carried scores differ from LensKit's by {diff:.2e} of the largest")


def fit(user: np.ndarray, item: np.ndarray, shape: tuple[int, int], model: str, params: dict[str, Any],
        seed: int) -> dict[str, np.ndarray]:  # fmt: skip
    """Fit LensKit's ``model`` and return its arrays in our item order, checked against its own scorer."""
    from lenskit.training import TrainingOptions

    data = _dataset(user, item)
    n_users, n_items = shape
    rows = sp.csr_matrix((np.ones(len(user), np.float32), (user, item)), shape=shape)
    rows.sum_duplicates()
    if model == "als":
        from lenskit.als import ImplicitMFScorer

        scorer = ImplicitMFScorer(**params)
        scorer.train(data, TrainingOptions(rng=seed))
        nums = _ours(scorer.items, n_items)
        v = np.full((n_items, scorer.item_embeddings.shape[1]), np.nan, np.float32)
        v[nums >= 0] = scorer.item_embeddings[nums[nums >= 0]]
        otor = np.asarray(scorer._OtOr, np.float64)  # V'V + reg I, kept by LensKit for this very step
        out = {"item_factors": v, "otor": otor, "weight": np.float64(scorer.config.weight)}

        def carried(r: sp.csr_matrix) -> np.ndarray:
            return (als_fold_in(v, otor, float(out["weight"]), r) @ np.nan_to_num(v).T).astype(np.float64) + np.where(
                np.isnan(v[:, 0]), np.nan, 0.0
            )
    elif model == "knn":
        from lenskit.knn import ItemKNNScorer

        if params.get("feedback") != "implicit":  # the explicit mode averages centred ratings: not knn_scores
            raise SystemExit("lenskit worker: knn runs with feedback='implicit' only (the rule knn_scores carries)")
        scorer = ItemKNNScorer(**params)
        scorer.train(data, TrainingOptions(rng=seed))
        nums = _ours(scorer.items, n_items)
        theirs = sp.csr_matrix(scorer.sim_matrix.to_scipy())
        known = np.nonzero(nums >= 0)[0]
        back = np.full(len(scorer.items), -1, np.int64)
        back[nums[known]] = known
        coo = theirs.tocoo()
        sims = sp.csr_matrix((coo.data.astype(np.float32), (back[coo.row], back[coo.col])), shape=(n_items, n_items))
        out = {"data": sims.data, "indices": sims.indices, "indptr": sims.indptr}
        k, min_nbrs = scorer.config.max_nbrs, scorer.config.min_nbrs

        def carried(r: sp.csr_matrix) -> np.ndarray:
            return knn_scores(sims, r, k, min_nbrs).astype(np.float64)
    else:
        raise SystemExit(f"lenskit worker: unknown model {model!r} (als or knn)")

    users = np.unique(user)
    rng = np.random.default_rng(seed)
    for u in users[np.linspace(0, len(users) - 1, min(CHECKED_USERS, len(users))).astype(np.int64)]:
        history = rows[u].indices
        _check(f"{model} user {u}", _lenskit_scores(scorer, int(u), history, n_items), carried(rows[u])[0])
        half = rng.choice(history, size=max(1, len(history) // 2), replace=False)  # a new person's history
        new = sp.csr_matrix((np.ones(len(half), np.float32), (np.zeros(len(half), np.int64), half)), shape=(1, n_items))
        _check(f"{model} new history", _lenskit_scores(scorer, None, np.sort(half), n_items), carried(new)[0])
    return out


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        import lenskit

        print(lenskit.__version__)
        return
    if len(sys.argv) != 2:
        raise SystemExit("usage: lenskit_worker.py DIR (DIR/train.npz and DIR/params.json in, DIR/out.npz out)")
    work = Path(sys.argv[1])
    spec = json.loads((work / "params.json").read_text())
    with np.load(work / "train.npz", allow_pickle=False) as f:
        user, item, shape = f["user"], f["item"], tuple(int(x) for x in f["shape"])
    from lenskit.parallel import initialize

    initialize(processes=1, threads=int(spec.get("threads", 2)), backend_threads=1)
    out = fit(user, item, shape, spec["model"], spec["params"], int(spec["seed"]))
    tmp = work / "out.tmp.npz"
    np.savez(tmp, **out)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(work / "out.npz")


if __name__ == "__main__":
    main()
