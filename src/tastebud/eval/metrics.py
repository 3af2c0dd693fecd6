"""Ranking and rating metrics as pure, vectorised functions.

Ranking metrics take ``recommended`` — an (n_users, k) array of item indices, best first, ``-1``
padding — and ``relevant``, a CSR matrix (n_users x n_items) whose non-zeros are each user's
held-out items (binary relevance). They return one value per user; averaging is the caller's.

Definitions (docs/metrics.md has them with formulas):

* Precision@k = hits / k;  Recall@k = hits / |rel|;  HitRate@k = 1 if hits > 0.
* RecallCapped@k = hits / min(k, |rel|): Liang et al.'s Recall@k (WWW 2018), which reaches 1 when
  the list is all hits even for a user with more than k held-out items.
* NDCG@k = DCG / IDCG, DCG = sum over hits at rank r (1-based) of 1 / log2(r + 1),
  IDCG over min(k, |rel|) — the convention of the fixed splits' peer table.
* MAP@k = (1 / min(k, |rel|)) * sum over hits at rank r of precision@r.
* MRR@k = 1 / rank of the first hit (0 when none in the top k).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def hits_matrix(recommended: np.ndarray, relevant: sp.csr_matrix) -> np.ndarray:
    """Boolean (n_users, k): is the item at each rank relevant for that user."""
    rec = np.asarray(recommended)
    rel = sp.csr_matrix(relevant)
    rel.sort_indices()
    n, k = rec.shape
    hits = np.zeros((n, k), dtype=bool)
    valid = rec >= 0
    rows = np.repeat(np.arange(n), k).reshape(n, k)
    # a relevant (user, item) pair <-> key; test membership with searchsorted on sorted keys
    n_items = max(rel.shape[1], 1)
    rel_keys = np.repeat(np.arange(rel.shape[0], dtype=np.int64), np.diff(rel.indptr)) * n_items + rel.indices
    rec_keys = rows[valid].astype(np.int64) * n_items + rec[valid]
    pos = np.searchsorted(rel_keys, rec_keys)
    found = (pos < len(rel_keys)) & (rel_keys[np.minimum(pos, len(rel_keys) - 1)] == rec_keys) if len(rel_keys) else np.zeros(len(rec_keys), bool)
    hits[valid] = found
    return hits


def _n_relevant(relevant: sp.csr_matrix) -> np.ndarray:
    return np.diff(sp.csr_matrix(relevant).indptr).astype(np.float64)


def precision_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int | None = None) -> np.ndarray:
    rec = _cut(recommended, k)
    return hits_matrix(rec, relevant).sum(axis=1) / rec.shape[1]


def recall_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int | None = None) -> np.ndarray:
    rec = _cut(recommended, k)
    nrel = _n_relevant(relevant)
    return _safe_div(hits_matrix(rec, relevant).sum(axis=1), nrel)


def recall_capped_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int | None = None) -> np.ndarray:
    rec = _cut(recommended, k)
    denom = np.minimum(_n_relevant(relevant), rec.shape[1])
    return _safe_div(hits_matrix(rec, relevant).sum(axis=1), denom)


def hit_rate_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int | None = None) -> np.ndarray:
    return hits_matrix(_cut(recommended, k), relevant).any(axis=1).astype(np.float64)


def ndcg_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int | None = None) -> np.ndarray:
    rec = _cut(recommended, k)
    kk = rec.shape[1]
    discounts = 1.0 / np.log2(np.arange(2, kk + 2))
    dcg = (hits_matrix(rec, relevant) * discounts).sum(axis=1)
    ideal_n = np.minimum(_n_relevant(relevant), kk).astype(int)
    idcg = np.concatenate([[0.0], np.cumsum(discounts)])[ideal_n]
    return _safe_div(dcg, idcg)


def map_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int | None = None) -> np.ndarray:
    rec = _cut(recommended, k)
    kk = rec.shape[1]
    hits = hits_matrix(rec, relevant)
    prec_at_r = np.cumsum(hits, axis=1) / np.arange(1, kk + 1)
    denom = np.minimum(_n_relevant(relevant), kk)
    return _safe_div((prec_at_r * hits).sum(axis=1), denom)


def mrr_at_k(recommended: np.ndarray, relevant: sp.csr_matrix, k: int | None = None) -> np.ndarray:
    hits = hits_matrix(_cut(recommended, k), relevant)
    first = np.argmax(hits, axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)


def catalog_coverage(recommended: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one list."""
    rec = np.asarray(recommended)
    return float(len(np.unique(rec[rec >= 0])) / max(1, n_items))


def novelty(recommended: np.ndarray, item_popularity: np.ndarray, n_users: int) -> np.ndarray:
    """Mean self-information -log2(p(i)) of recommended items, p(i) = share of users who had i."""
    rec = np.asarray(recommended)
    p = np.clip(np.asarray(item_popularity, np.float64) / max(1, n_users), 1e-12, 1.0)
    info = -np.log2(p)
    vals = np.where(rec >= 0, info[np.clip(rec, 0, None)], np.nan)
    return _nanmean_rows(vals)


def average_popularity(recommended: np.ndarray, item_popularity: np.ndarray) -> np.ndarray:
    """Mean training popularity (interaction count) of each list (ARP, Abdollahpouri et al.)."""
    rec = np.asarray(recommended)
    pop = np.asarray(item_popularity, np.float64)
    vals = np.where(rec >= 0, pop[np.clip(rec, 0, None)], np.nan)
    return _nanmean_rows(vals)


def intra_list_diversity(recommended: np.ndarray, item_vectors: np.ndarray) -> np.ndarray:
    """Mean pairwise cosine distance between the items of each list (1 - cosine)."""
    rec = np.asarray(recommended)
    vec = np.asarray(item_vectors, np.float64)
    norms = np.linalg.norm(vec, axis=1, keepdims=True)
    unit = vec / np.where(norms > 0, norms, 1.0)
    out = np.full(rec.shape[0], np.nan)
    for row in range(rec.shape[0]):
        items = rec[row][rec[row] >= 0]
        if len(items) < 2:
            continue
        v = unit[items]
        sim = v @ v.T
        n = len(items)
        out[row] = 1.0 - (sim.sum() - np.trace(sim)) / (n * (n - 1))
    return out


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    d = np.asarray(predicted, np.float64) - np.asarray(actual, np.float64)
    return float(np.sqrt(np.mean(d * d)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(predicted, np.float64) - np.asarray(actual, np.float64))))


RANKING_METRICS = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "recall_capped": recall_capped_at_k,
    "ndcg": ndcg_at_k,
    "map": map_at_k,
    "mrr": mrr_at_k,
    "hit_rate": hit_rate_at_k,
}


def _cut(recommended: np.ndarray, k: int | None) -> np.ndarray:
    rec = np.asarray(recommended)
    if rec.ndim != 2:
        raise ValueError("recommended must be a 2-D array (users x ranks)")
    return rec if k is None else rec[:, :k]


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return np.divide(a, b, out=np.zeros_like(a), where=b > 0)


def _nanmean_rows(vals: np.ndarray) -> np.ndarray:
    counts = (~np.isnan(vals)).sum(axis=1)
    sums = np.nansum(vals, axis=1)
    return np.divide(sums, counts, out=np.full(len(sums), np.nan), where=counts > 0)
