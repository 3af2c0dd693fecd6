"""Train/test splits. Every split keeps the full vocabularies on both sides, so test items that
never occur in training are still in the catalogue, and counts of such users/items are reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tastebud.core.errors import ConfigError, DataError
from tastebud.data.interactions import Interactions


@dataclass
class Split:
    """One train/test pair over the same vocabularies."""

    train: Interactions
    test: Interactions
    name: str = "split"
    report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.train.users is not self.test.users and self.train.users != self.test.users:
            raise ValueError("train and test must share the user vocabulary")
        if self.train.items is not self.test.items and self.train.items != self.test.items:
            raise ValueError("train and test must share the item vocabulary")
        train_users = np.zeros(self.train.n_users, bool)
        train_users[self.train.user_idx] = True
        train_items = np.zeros(self.train.n_items, bool)
        train_items[self.train.item_idx] = True
        test_users = np.unique(self.test.user_idx)
        test_items = np.unique(self.test.item_idx)
        self.report.setdefault("train_interactions", len(self.train))
        self.report.setdefault("test_interactions", len(self.test))
        self.report.setdefault("test_users", int(len(test_users)))
        self.report.setdefault("test_users_unseen_in_train", int((~train_users[test_users]).sum()))
        self.report.setdefault("test_items_unseen_in_train", int((~train_items[test_items]).sum()))


# ---------------------------------------------------------------------------------------------
# Splitters. Each works on event positions (so duplicates and timestamps survive), keeps the full
# vocabularies, and is deterministic under ``random_state``.


def _by_user(data: Interactions) -> tuple[np.ndarray, np.ndarray]:
    """Event positions grouped by user (stable), and each user's start in that order."""
    order = np.argsort(data.user_idx, kind="stable")
    counts = np.bincount(data.user_idx, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return order, starts


def _rank_in_user(users_sorted: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """0-based position of every entry inside its user's block (entries grouped by user)."""
    return np.arange(len(users_sorted)) - starts[users_sorted]


def _make(data: Interactions, test_mask: np.ndarray, name: str, **report: Any) -> Split:
    train = data.subset(~test_mask, source=f"{data.summary.source} [{name} train]")
    test = data.subset(test_mask, source=f"{data.summary.source} [{name} test]")
    return Split(train, test, name=name, report=dict(report))


def _check_random_state(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or random_state < 0:
        raise ConfigError(f"random_state must be a non-negative integer, got {random_state!r}")
    return np.random.default_rng(int(random_state))


def holdout(data: Interactions, fraction: float = 0.2, min_interactions: int = 5, random_state: int = 0) -> Split:
    """Per-user random holdout: ``round(fraction * n_u)`` of each user's events go to test.

    Users with fewer than ``min_interactions`` events stay entirely in training (counted in
    ``report["users_train_only"]``); every user with a test event keeps at least one training
    event.
    """
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"fraction must be between 0 and 1 (exclusive), got {fraction!r}")
    if min_interactions < 2:
        raise ConfigError(f"min_interactions must be at least 2, got {min_interactions!r}")
    rng = _check_random_state(random_state)
    _, starts = _by_user(data)
    counts = np.bincount(data.user_idx, minlength=data.n_users)
    perm = np.lexsort((rng.random(len(data)), data.user_idx))  # shuffled inside each user
    users_sorted = data.user_idx[perm]
    rank = _rank_in_user(users_sorted, starts)
    n_test = np.where(counts >= min_interactions, np.clip(np.rint(fraction * counts), 1, counts - 1), 0).astype(
        np.int64
    )
    mask = np.zeros(len(data), dtype=bool)
    mask[perm[rank < n_test[users_sorted]]] = True
    return _make(
        data, mask, f"holdout{fraction:g}",
        users_train_only=int(((counts > 0) & (counts < min_interactions)).sum()), random_state=int(random_state),
    )  # fmt: skip


def leave_last_out(
    data: Interactions, n: int = 1, validation: bool = False, min_interactions: int = 2
) -> Split | tuple[Split, Split]:
    """Leave each user's last ``n`` events (by timestamp, then input order) out for testing.

    With ``validation=True`` returns ``(validation, test)``: validation trains on all but the last
    ``2n`` events and tests on the ``n`` before the last ``n``; test trains on all but the last
    ``n`` (training plus validation events) and tests on the last ``n`` (SASRec's protocol).
    Users with fewer than ``min_interactions`` events (``2n + 1`` with validation would leave
    nothing to train on otherwise) stay in training only.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n must be a positive integer, got {n!r}")
    if data.timestamps is None:
        raise DataError("leave_last_out needs timestamps; build the data with time=...")
    need = max(min_interactions, (2 * n if validation else n) + 1)
    order = np.lexsort((np.arange(len(data)), data.timestamps, data.user_idx))
    counts = np.bincount(data.user_idx, minlength=data.n_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    users_sorted = data.user_idx[order]
    from_end = counts[users_sorted] - 1 - _rank_in_user(users_sorted, starts)  # 0 = last event
    eligible = counts[users_sorted] >= need
    last = np.zeros(len(data), dtype=bool)
    last[order[eligible & (from_end < n)]] = True
    report = {"n": int(n), "users_train_only": int(((counts > 0) & (counts < need)).sum())}
    test = _make(data, last, f"last{n}", **report)
    if not validation:
        return test
    before = np.zeros(len(data), dtype=bool)
    before[order[eligible & (from_end >= n) & (from_end < 2 * n)]] = True
    keep = ~last
    sub = data.subset(keep)
    val = _make(sub, before[keep], f"last{n}-validation", **report)
    return val, test


def time_cutoff(data: Interactions, at: float | int | str | None = None, quantile: float | None = None) -> Split:
    """Global temporal split: events before ``at`` train, the rest test.

    ``at`` is a Unix timestamp (int), a date string (``"2016-01-01"``), or, when it is a float in
    (0, 1), a quantile of the timestamps (as is ``quantile=``). Test users never seen before the
    cutoff are reported, not dropped.
    """
    if data.timestamps is None:
        raise DataError("time_cutoff needs timestamps; build the data with time=...")
    if quantile is None and isinstance(at, float) and 0.0 < at < 1.0:
        quantile, at = at, None
    if quantile is not None:
        if not 0.0 < quantile < 1.0:
            raise ConfigError(f"quantile must be between 0 and 1 (exclusive), got {quantile!r}")
        cut = int(np.quantile(data.timestamps, quantile, method="higher"))
    elif isinstance(at, str):
        try:
            cut = int(pd.Timestamp(at).timestamp())
        except ValueError:
            raise ConfigError(f"at={at!r} is not a date") from None
    elif isinstance(at, (int, np.integer, float)) and not isinstance(at, bool):
        cut = int(at)
    else:
        raise ConfigError("time_cutoff needs at= (timestamp, date or quantile in (0, 1)) or quantile=")
    mask = data.timestamps >= cut
    if mask.all() or not mask.any():
        raise ConfigError(f"cutoff {cut} puts every event on one side ({int(mask.sum())} of {len(data)} in test)")
    return _make(data, mask, f"time<{cut}", cutoff=cut)


def kfold(data: Interactions, k: int = 5, random_state: int = 0) -> list[Split]:
    """K-fold cross-validation over events: each event is in exactly one test fold."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= len(data):
        raise ConfigError(f"k must be an integer between 2 and the number of events, got {k!r}")
    rng = _check_random_state(random_state)
    fold = np.empty(len(data), dtype=np.int64)
    fold[rng.permutation(len(data))] = np.arange(len(data)) % k
    return [
        _make(data, fold == f, f"fold{f + 1}of{k}", fold=f + 1, k=int(k), random_state=int(random_state))
        for f in range(k)
    ]
