"""RP3beta against a dense reference of the paper's formula, worked on a tiny matrix."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import tastebud as tb
from tastebud.core.errors import ConfigError


def _data(values: np.ndarray) -> tb.Interactions:
    u, i = np.nonzero(values)
    frame = pd.DataFrame({"user": u, "item": i, "value": values[u, i]})
    return tb.Interactions.from_frame(frame, user="user", item="item", rating="value")


def _reference(X: np.ndarray, a: float, b: float, k: int) -> np.ndarray:
    """W = (P_iu^a P_ui^a) / deg^b with a zero diagonal and each row cut to its k largest weights."""
    p_ui = X / X.sum(axis=1, keepdims=True)
    binary = (X > 0).astype(float)
    degree = binary.sum(axis=0)
    p_iu = binary.T / degree[:, None]
    W = (p_iu**a) @ (p_ui**a) / degree[None, :] ** b
    np.fill_diagonal(W, 0.0)
    for row in W:
        if (row > 0).sum() > k:
            row[row < np.sort(row)[-k]] = 0.0
    return W


@pytest.mark.parametrize(("a", "b", "k"), [(1.0, 0.0, 5), (0.8, 0.5, 2), (1.5, 0.3, 3)])
def test_weights_match_the_formula(a: float, b: float, k: int) -> None:
    rng = np.random.default_rng(0)
    X = (rng.random((12, 6)) < 0.5) * rng.integers(1, 4, (12, 6)).astype(float)
    X[0, :2] = 1.0  # every user and item has at least one interaction
    X[:, X.sum(axis=0) == 0] = 1.0
    data = _data(X)
    model = tb.get_model("rp3beta")(neighbors=k, transition_exponent=a, popularity_exponent=b, normalize=False).fit(data)
    # the model's items are in the data's id order; map back to the matrix columns
    order = data.items.index(list(range(6)), "item")
    got = model.weights_.toarray()[np.ix_(order, order)]
    np.testing.assert_allclose(got, _reference(X, a, b, k), rtol=1e-5, atol=1e-7)


def test_history_fold_in_equals_the_known_user(synth_implicit) -> None:
    model = tb.get_model("rp3beta")(neighbors=15).fit(synth_implicit)
    user = synth_implicit.users.ids[3].item()
    row = synth_implicit.matrix[3]
    items = synth_implicit.items.to_ids(row.indices).tolist()
    known = model.recommend([user], k=8)
    folded = model.recommend_for_history(items, values=row.data.tolist(), k=8)
    assert known.items_of(0) == folded.items_of(0)
    np.testing.assert_allclose(known.scores_of(0), folded.scores_of(0), rtol=1e-5)


def test_explanations_add_up_to_the_score(synth_implicit) -> None:
    model = tb.get_model("rp3beta")(neighbors=15).fit(synth_implicit)
    user = synth_implicit.users.ids[5].item()
    recs = model.recommend([user], k=3, explain=True)
    for item, score, why in zip(recs.items_of(0), recs.scores_of(0), recs.explanations[0], strict=True):
        assert "reached from" in why.text
        total = float(why.text.rsplit("total ", 1)[1].rstrip(")"))
        assert total == pytest.approx(score, rel=1e-3), item


def test_normalized_rows_sum_to_one_and_bad_params_are_named(synth_implicit) -> None:
    model = tb.get_model("rp3beta")(neighbors=10, normalize=True).fit(synth_implicit)
    sums = np.asarray(model.weights_.sum(axis=1)).ravel()
    np.testing.assert_allclose(sums[sums > 0], 1.0, rtol=1e-5)
    with pytest.raises(ConfigError, match="popularity_exponent"):
        tb.get_model("rp3beta")(popularity_exponent=-1.0).fit(synth_implicit)
