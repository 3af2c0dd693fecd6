"""Baselines on real MovieLens through the project's loaders (a few seconds)."""

from __future__ import annotations

import numpy as np
import pytest

import tastebud as tb
from tastebud.data.movielens import fixed_split, ml100k_folds
from tastebud.eval.evaluate import evaluate, summarize


def test_bias_ml100k_u1_u5_rmse(data_root):
    results = evaluate({"bias": tb.get_model("bias")()}, ml100k_folds(data_root), metrics=("ndcg",))
    assert len(results) == 5
    mean_rmse = results["rmse"].mean()
    assert mean_rmse <= 0.945, mean_rmse  # Surprise's BaselineOnly measures 0.9458 on the same folds


@pytest.mark.parametrize("name,peer", [("ml-100k", 0.214), ("ml-latest-small", 0.179)])
def test_popular_matches_published_peer_figure(data_root, name, peer):
    split = fixed_split(name, data_root)
    row = summarize(evaluate({"popular": tb.get_model("popular")()}, split)).iloc[0]
    # the peer table rounds to 3 decimals: the protocol (full ranking, train items excluded,
    # IDCG over min(k, |test|)) must reproduce it
    assert abs(row["ndcg@10"] - peer) < 0.0006
    assert row["users"] == split.report["test_users"]


def test_ml100k_loader_shape(data_root):
    from tastebud.data.movielens import load_ml100k

    data = load_ml100k(data_root)
    assert (len(data), data.n_users, data.n_items) == (100_000, 943, 1682)
    assert data.rating_scale == (1.0, 5.0)
    feats = data.item_features
    assert feats.loc[1, "title"] == "Toy Story (1995)"
    assert "Animation" in feats.loc[1, "genres"]
    assert np.isclose(data.values.mean(), 3.52986)
