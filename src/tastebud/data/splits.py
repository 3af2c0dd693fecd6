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


# ---------------------------------------------------------------------------------------------
# Strong generalisation (Liang et al., WWW 2018): the users evaluated are not the users trained on.


@dataclass
class FoldIn:
    """Held-out users: the events given as each one's history at query time, and the events to score.

    Both share the full vocabularies; ``fold_in`` holds every held-out user, ``target`` only those
    with events to score.
    """

    fold_in: Interactions
    target: Interactions
    name: str = "heldout"

    @property
    def users(self) -> np.ndarray:
        """Indices of the held-out users with at least one target event (the users evaluated)."""
        return np.nonzero(np.diff(self.target.matrix.indptr) > 0)[0]


@dataclass
class StrongSplit:
    """Training users, and disjoint validation and test users who are folded in at query time.

    Fit on ``train``; choose hyper-parameters on ``validation`` (None when not carved); report on
    ``test`` once. :func:`tastebud.eval.strong.evaluate_fold_in` scores a :class:`FoldIn`.
    """

    train: Interactions
    validation: FoldIn | None
    test: FoldIn
    name: str = "strong"
    report: dict[str, Any] = field(default_factory=dict)


def strong_generalization(
    data: Interactions,
    heldout_users: int | float = 0.1,
    fold_in: float = 0.8,
    validation: bool = True,
    min_interactions: int = 5,
    random_state: int = 0,
) -> StrongSplit:
    """Liang et al.'s protocol: whole users are held out, and for each a share of their events is
    folded in (given as a history) while the rest is scored.

    ``heldout_users`` is the number of test users (an int) or their share of all users (a float in
    (0, 1)); a validation set of the same size is carved too unless ``validation=False``. Held-out
    users are drawn among those with at least ``min_interactions`` events. As in the paper, their
    events on items no training user has are dropped (a model cannot learn such an item); then for
    each, ``floor((1 - fold_in) * n)`` random events are the target and the rest the fold-in (users
    left with fewer than ``min_interactions`` events have no target and are not evaluated).
    """
    if not 0.0 < fold_in < 1.0:
        raise ConfigError(f"fold_in must be between 0 and 1 (exclusive), got {fold_in!r}")
    if (
        isinstance(min_interactions, bool)
        or not isinstance(min_interactions, (int, np.integer))
        or min_interactions < 2
    ):
        raise ConfigError(f"min_interactions must be an integer of at least 2, got {min_interactions!r}")
    rng = _check_random_state(random_state)
    counts = np.diff(data.matrix.indptr)
    eligible = np.nonzero(counts >= min_interactions)[0]
    if isinstance(heldout_users, bool) or not isinstance(heldout_users, (int, np.integer, float)):
        raise ConfigError(f"heldout_users must be a count or a share in (0, 1), got {heldout_users!r}")
    if isinstance(heldout_users, float):
        if not 0.0 < heldout_users < 1.0:
            raise ConfigError(f"heldout_users as a share must be in (0, 1), got {heldout_users!r}")
        n_part = max(1, int(round(heldout_users * int((counts > 0).sum()))))
    else:
        if heldout_users < 1:
            raise ConfigError(f"heldout_users must be at least 1, got {heldout_users!r}")
        n_part = int(heldout_users)
    parts = 2 if validation else 1
    if n_part * parts > len(eligible) or n_part * parts >= int((counts > 0).sum()):
        raise DataError(
            f"{data.summary.source}: {parts} x {n_part} held-out users asked but only {len(eligible)} users have "
            f">= {min_interactions} events (and some must stay for training); lower heldout_users"
        )
    chosen = rng.permutation(eligible)[: n_part * parts]
    role = np.zeros(data.n_users, np.int8)  # 0 train, 1 test, 2 validation
    role[chosen[:n_part]] = 1
    role[chosen[n_part:]] = 2
    event_role = role[data.user_idx]
    train = data.subset(event_role == 0, source=f"{data.summary.source} [strong train]")
    known = np.zeros(data.n_items, bool)
    known[train.item_idx] = True
    keep = known[data.item_idx]
    # random target events per held-out user, among the events kept (drawn once for every user)
    kept_counts = np.bincount(data.user_idx[keep], minlength=data.n_users)
    perm = np.lexsort((rng.random(len(data)), ~keep, data.user_idx))  # kept events first, shuffled, per user
    starts = np.concatenate([[0], np.cumsum(np.bincount(data.user_idx, minlength=data.n_users))[:-1]])
    rank = _rank_in_user(data.user_idx[perm], starts)
    n_target = np.where(
        kept_counts >= min_interactions, np.floor((1.0 - fold_in) * kept_counts + 1e-9).astype(np.int64), 0
    )
    is_target = np.zeros(len(data), bool)
    is_target[perm[rank < n_target[data.user_idx[perm]]]] = True
    is_target &= keep

    def part(code: int, name: str) -> FoldIn:
        mine = (event_role == code) & keep
        return FoldIn(
            data.subset(mine & ~is_target, source=f"{data.summary.source} [{name} fold-in]"),
            data.subset(mine & is_target, source=f"{data.summary.source} [{name} target]"),
            name,
        )

    test = part(1, "test")
    val = part(2, "validation") if validation else None
    report = {
        "train_users": int(((role == 0) & (counts > 0)).sum()),
        "train_interactions": len(train),
        "test_users": int(len(test.users)),
        "validation_users": 0 if val is None else int(len(val.users)),
        "heldout_events_on_unseen_items": int(((event_role > 0) & ~keep).sum()),
        "fold_in": float(fold_in),
        "random_state": int(random_state),
    }
    return StrongSplit(train, val, test, name=f"strong{n_part}x{parts}", report=report)
