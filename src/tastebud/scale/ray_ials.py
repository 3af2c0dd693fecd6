"""iALS on Ray: the sweeps of :class:`tastebud.models.ials.ImplicitALS` as parallel Ray tasks.

Hu, Koren & Volinsky (2008) alternate two least-squares sweeps; within a sweep every row is
independent given the other side's factors and the shared Gramian ``Y^T Y + reg I``. That is the
whole distribution scheme (as in Spark MLlib's ALS, minus its shuffle): the interaction matrix is
cut into row blocks (balanced by non-zeros) that live in Ray's object store for the whole fit;
each sweep broadcasts the other side's factors once (``ray.put``), and one task per block solves
its rows with the *same* compiled kernels as the single-process model
(:func:`tastebud.kernels.ials.cg_rows` / :func:`~tastebud.kernels.ials.exact_rows`), warm-started
from the block's previous vectors. Each task also returns its block's partial Gramian
``X_b^T X_b`` (float64), so the next sweep's Gramian is a sum of small k x k matrices and never
needs all vectors on one machine's BLAS.

Because the kernels treat rows independently, the factors equal the single-process ones for the
same seed and epochs up to float rounding of the summed Gramian (tests check max-abs difference
and NDCG@10).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from tastebud.core.errors import TrainingError
from tastebud.core.progress import progress_bar
from tastebud.kernels import ials as K
from tastebud.scale.session import ray_session

if TYPE_CHECKING:  # pragma: no cover
    from tastebud.data.interactions import Interactions
    from tastebud.models.ials import ImplicitALS


def row_blocks(indptr: np.ndarray, n_blocks: int) -> list[tuple[int, int]]:
    """Contiguous row ranges with about equal non-zeros (and never an empty range of rows)."""
    n = len(indptr) - 1
    n_blocks = max(1, min(int(n_blocks), n))
    total = int(indptr[-1])
    cuts = [0]
    for b in range(1, n_blocks):
        target = total * b / n_blocks
        cut = int(np.searchsorted(indptr, target, side="left"))
        if cut > 0 and (cut > n or target - indptr[cut - 1] < indptr[cut] - target):
            cut -= 1  # the row boundary nearest the target
        cuts.append(min(max(cut, cuts[-1] + 1), n - (n_blocks - b)))
    cuts.append(n)
    return [(cuts[b], cuts[b + 1]) for b in range(n_blocks)]


def _slice_csr(m: sp.csr_matrix, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    start, end = int(m.indptr[lo]), int(m.indptr[hi])
    indptr = (m.indptr[lo : hi + 1] - start).astype(m.indptr.dtype)  # the local fit's dtype
    return indptr, np.ascontiguousarray(m.indices[start:end]), np.ascontiguousarray(m.data[start:end])


def solve_block(
    block: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    X: np.ndarray,
    Y: np.ndarray,
    A0: np.ndarray,
    cg_steps: int,
    threads: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Re-solve one block's rows given ``Y``; returns the new vectors and their float64 Gramian.

    ``block`` is ``(indptr, indices, c - 1, extra_reg)`` for the block's rows; ``A0`` is
    ``Y^T Y + reg I`` in float64. This is the body of a Ray task; it is plain numpy so it can be
    tested (and reused) without Ray.
    """
    import numba

    from tastebud.models._common import numba_threads

    # Object-store arrays are read-only, and numba compiles read-only arrays as a different type
    # whose fastmath code rounds differently; writable copies run the very machine code of the
    # local fit, so the factors come out bit-identical for the same Gramian.
    indptr, indices, cm1, extra = (np.array(a, copy=True) for a in block)
    X = np.array(X, dtype=np.float32, copy=True)
    Y = np.array(Y, dtype=np.float32, copy=True)
    with numba_threads(threads if threads > 0 else numba.config.NUMBA_NUM_THREADS):
        if cg_steps > 0:
            K.cg_rows(indptr, indices, cm1, X, Y, A0.astype(np.float32), int(cg_steps), extra)
        else:
            out = np.zeros_like(X)
            K.exact_rows(indptr, indices, cm1, np.arange(X.shape[0], dtype=np.int64), out, Y, A0, extra)
            X = out
    X64 = X.astype(np.float64)
    return X, X64.T @ X64


def fit_ials_ray(
    model: ImplicitALS, data: Interactions, workers: int | None = None, address: str | None = None
) -> None:
    """Fit ``model`` (an :class:`ImplicitALS` whose base ``fit`` has set ``user_items_``) on Ray.

    Called from ``ImplicitALS._fit`` when ``engine="ray"``; sets ``user_factors_`` and
    ``item_factors_`` exactly as the local fit does, and ``_dist_info`` (engine, blocks,
    seconds per epoch; not saved, so the model files are the same as a local fit's).
    """
    from tastebud.models._common import check_values

    workers = int(workers if workers is not None else getattr(model, "workers", 2))
    address = address if address is not None else getattr(model, "address", None)
    m = model.user_items_
    check_values(m.data, "interaction values")
    check_values(data.values, "interaction values")
    cui = model._conf_matrix(m)
    ciu = cui.T.tocsr()
    n_users, n_items = cui.shape
    k = int(model.factors)
    reg = float(model.reg)
    # the same random start as the local fit (same generator, same order of draws)
    rng = np.random.default_rng(model.random_state)
    user_factors = (rng.random((n_users, k), dtype=np.float32) * 0.01).astype(np.float32)
    item_factors = (rng.random((n_items, k), dtype=np.float32) * 0.01).astype(np.float32)
    threads = int(getattr(model, "threads", 0)) or 1
    cg_steps = int(model.cg_steps)

    with ray_session(address, workers) as ray:
        task = ray.remote(num_cpus=1, num_returns=2)(solve_block)

        def put_blocks(
            conf: sp.csr_matrix, n_cols: int, factors: np.ndarray
        ) -> tuple[list[Any], list[Any], list[tuple[int, int]]]:
            extra = model._row_reg(conf, n_cols)
            ranges = row_blocks(conf.indptr, workers)
            refs, xs = [], []
            for lo, hi in ranges:
                indptr, indices, cm1 = _slice_csr(conf, lo, hi)
                ex = extra[lo:hi] if len(extra) else extra
                refs.append(ray.put((indptr, indices, cm1, np.ascontiguousarray(ex))))
                xs.append(ray.put(np.ascontiguousarray(factors[lo:hi])))
            return refs, xs, ranges

        user_blocks, user_x, user_ranges = put_blocks(cui, n_items, user_factors)
        item_blocks, item_x, item_ranges = put_blocks(ciu, n_users, item_factors)

        def sweep(blocks: list[Any], xs: list[Any], Y: np.ndarray, gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """One half-sweep: every block re-solved given ``Y``; ``xs`` is updated to the new blocks."""
            y_ref = ray.put(Y)
            a_ref = ray.put(gram + reg * np.eye(k))  # Y^T Y + reg I, as kernels.ials.gramian
            results = [task.remote(b, x, y_ref, a_ref, cg_steps, threads) for b, x in zip(blocks, xs, strict=True)]
            xs[:] = [r[0] for r in results]
            total = np.sum(ray.get([r[1] for r in results]), axis=0)
            return np.concatenate(ray.get(xs), axis=0), total

        gram_users = K.gramian(user_factors, 0.0)  # float64 Y^T Y of the starting user vectors
        epoch_seconds = []
        with progress_bar(int(model.epochs), f"{model.name} (ray)", "epoch") as bar:
            for epoch in range(int(model.epochs)):
                started = time.perf_counter()
                # items given users, then users given items (the local fit's order)
                item_factors, gram_items = sweep(item_blocks, item_x, user_factors, gram_users)
                user_factors, gram_users = sweep(user_blocks, user_x, item_factors, gram_items)
                if not (np.isfinite(user_factors).all() and np.isfinite(item_factors).all()):
                    raise TrainingError(
                        f"ImplicitALS (ray) diverged in epoch {epoch + 1} (non-finite factors): lower alpha "
                        f"(now {model.alpha}) or raise reg (now {model.reg})"
                    )
                epoch_seconds.append(time.perf_counter() - started)
                bar.update(1)
        user_factors = np.array(user_factors, copy=True)
        item_factors = np.array(item_factors, copy=True)

    model.user_factors_ = user_factors
    model.item_factors_ = item_factors
    model._dist_info = {
        "engine": "ray",
        "workers": workers,
        "user_blocks": len(user_ranges),
        "item_blocks": len(item_ranges),
        "epoch_seconds": [round(s, 4) for s in epoch_seconds],
    }


__all__ = ["fit_ials_ray", "row_blocks", "solve_block"]
