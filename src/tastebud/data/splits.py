"""Train/test splits. Every split keeps the full vocabularies on both sides, so test items that
never occur in training are still in the catalogue, and counts of such users/items are reported."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
