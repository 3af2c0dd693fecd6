"""The one ranking path: candidates, exclusions, allowed items and top-k, for every layer.

The library (:class:`~tastebud.core.base.Recommender`), evaluation, the exact vector index and
the service all turn score blocks into ranked lists here, on one compiled kernel
(:func:`tastebud.kernels.topk.topk_masked`), so a list is the same whoever asks for it:

* best first; ties break towards the lower column (an item's index, or its position in a
  candidate list), so a row gives the same answer alone or in a batch;
* NaN and ``-inf`` scores are never returned: their slots come back as index ``-1``, score NaN;
* exclusions are fused into the selection (no masked copy of the scores is made).

A row of scores covers either the whole catalogue (column ``c`` is item ``c``) or a list of
``columns`` (the candidates, in the caller's order: a model scored only those, or the caller
gathered them). ``exclude`` names item indices, whichever the columns are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

#: Blocks of at most this many rows run the single-threaded kernel: waking the parallel
#: kernel's threads costs more than a request's few rows (see ``kernels._serial``).
SERIAL_ROWS = 4

Exclude = sp.spmatrix | np.ndarray | Sequence[np.ndarray] | None


def topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` columns of each row of ``scores``: (item indices, scores), each (n_rows, k).

    A 1-D ``scores`` is one row and gives 1-D results.
    """
    return rank(scores, k)


def rank(
    scores: np.ndarray,
    k: int,
    *,
    exclude: Exclude = None,
    exclude_rows: np.ndarray | None = None,
    columns: np.ndarray | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` items of each row of ``scores``, without excluded items: (indices, scores).

    ``columns``: the item index of each column when ``scores`` covers a candidate list, not the
    whole catalogue (ties then break by position in the list; duplicates stay as given).
    ``allowed``: scores cover the whole catalogue but only these items may be returned (the
    same as passing ``scores[:, allowed]`` with ``columns=allowed``).
    ``exclude``: items to drop, as one 1-D array of item indices for every row, a list with one
    array per row, or a sparse matrix whose rows hold each row's items (the users' training
    rows, say); ``exclude_rows[r]`` then names the matrix row of score row ``r`` (default: row
    ``r``), so a block of users needs no sliced copy of the interaction matrix.
    ``scores`` is not modified. Slots beyond the eligible items are -1 / NaN.
    """
    scores = np.asarray(scores)
    if allowed is not None:
        if columns is not None:
            raise ValueError("give columns (scores already restricted) or allowed (restrict them), not both")
        columns = np.asarray(allowed, np.int64)
        scores = scores[..., columns]
    if scores.ndim == 1:
        idx, val = rank(scores[None, :], k, exclude=exclude, exclude_rows=exclude_rows, columns=columns)
        return idx[0], val[0]
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    k = int(k)
    n_rows = scores.shape[0]
    out_idx = np.empty((n_rows, k), np.int64)
    out_val = np.empty((n_rows, k), np.float32)
    if columns is not None:
        columns = np.asarray(columns, np.int64)
        if scores.shape[1] != len(columns):
            raise ValueError(f"scores have {scores.shape[1]} columns for {len(columns)} candidate items")
        exclude, exclude_rows = _to_positions(exclude, exclude_rows, columns, n_rows)
    rows, indptr, indices = _exclusion_arrays(exclude, exclude_rows, n_rows)
    _select(scores, rows, indptr, indices, k, out_idx, out_val)
    if columns is not None:
        out_idx = from_positions(out_idx, columns)
    return out_idx, out_val


def merge(
    best_idx: np.ndarray, best_val: np.ndarray, idx: np.ndarray, val: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` of two ranked lists per row (a running best and a new block's), same tie rule.

    ``best_*`` must come from items with lower indices than ``idx`` (a scan in index order), so
    that the lower position in the concatenation is the lower item index.
    """
    both_idx = np.concatenate([best_idx, idx], axis=1)
    both_val = np.where(both_idx >= 0, np.concatenate([best_val, val], axis=1), np.nan)
    pos, top_val = rank(both_val, k)
    top_idx = np.where(pos >= 0, np.take_along_axis(both_idx, np.clip(pos, 0, None), axis=1), -1)
    return top_idx, top_val


def from_positions(pos: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Top-k positions in a candidate list -> item indices (-1 stays -1; an empty list gives none)."""
    if not len(columns):
        return np.full_like(pos, -1)
    return np.where(pos >= 0, columns[np.clip(pos, 0, None)], -1)


def warm() -> None:
    """Load (or compile) the kernel for the argument types a request uses, so that a service's
    first request does not pay for it."""
    one = np.zeros((1, 2), np.float32)
    rank(one, 1, exclude=np.zeros(1, np.int64))  # a person's items as an array
    rank(one, 1, exclude=sp.csr_matrix(one))  # rows of a sparse matrix (scipy's int32 indices)


def _select(
    scores: np.ndarray,
    rows: np.ndarray,
    indptr: np.ndarray,
    indices: np.ndarray,
    k: int,
    out_idx: np.ndarray,
    out_val: np.ndarray,
) -> None:
    from tastebud.kernels.topk import topk_masked, topk_masked_serial  # numba: on first use, not with tastebud

    kernel = topk_masked if len(scores) > SERIAL_ROWS else topk_masked_serial
    kernel(scores, rows, indptr, indices, k, out_idx, out_val)


_NO_ROWS = np.zeros(2, np.int64)
_NO_ITEMS = np.empty(0, np.int64)


def _exclusion_arrays(
    exclude: Exclude, exclude_rows: np.ndarray | None, n_rows: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row of each score row, indptr, sorted indices): the kernel's CSR form of ``exclude``."""
    if exclude is None:
        return np.full(n_rows, -1, np.int64), _NO_ROWS, _NO_ITEMS
    if sp.issparse(exclude):
        csr = exclude if isinstance(exclude, sp.csr_matrix) else sp.csr_matrix(exclude)
        if not csr.has_sorted_indices:
            csr = csr.sorted_indices()
        rows = np.arange(n_rows, dtype=np.int64) if exclude_rows is None else np.asarray(exclude_rows, np.int64)
        return rows, csr.indptr, csr.indices  # int32 or int64 as scipy chose: no copy per call
    if isinstance(exclude, np.ndarray) and exclude.ndim == 1:
        items = np.unique(exclude.astype(np.int64, copy=False))  # sorted, as the kernel needs
        return np.zeros(n_rows, np.int64), np.array([0, len(items)], np.int64), items
    per_row = [np.unique(np.asarray(e, np.int64).ravel()) for e in exclude]
    if len(per_row) != n_rows:
        raise ValueError(f"exclude has {len(per_row)} rows for {n_rows} score rows")
    indptr = np.zeros(n_rows + 1, np.int64)
    np.cumsum([len(e) for e in per_row], out=indptr[1:])
    indices = np.concatenate(per_row) if per_row else _NO_ITEMS
    return np.arange(n_rows, dtype=np.int64), indptr, indices


def _to_positions(
    exclude: Exclude, exclude_rows: np.ndarray | None, columns: np.ndarray, n_rows: int
) -> tuple[Any, np.ndarray | None]:
    """``exclude`` in item indices -> the same in positions of ``columns`` (every duplicate)."""
    if exclude is None:
        return None, None
    if sp.issparse(exclude):
        csr = sp.csr_matrix(exclude)
        if exclude_rows is not None:
            csr = csr[np.asarray(exclude_rows, np.int64)]
        return csr[:, columns], None
    if isinstance(exclude, np.ndarray) and exclude.ndim == 1:
        return np.flatnonzero(np.isin(columns, exclude)), None
    return [np.flatnonzero(np.isin(columns, e)) for e in exclude], None


__all__ = ["from_positions", "merge", "rank", "topk", "warm"]
