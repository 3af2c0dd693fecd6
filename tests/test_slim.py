"""SLIM: every column is an optimum of its elastic net (KKT conditions), fold-in, memory check."""

from __future__ import annotations

import numpy as np
import pytest

import tastebud as tb
from tastebud.core.errors import ConfigError


@pytest.mark.parametrize(("l1", "l2"), [(0.5, 1.0), (0.0, 5.0), (2.0, 0.1)])
def test_each_column_satisfies_the_elastic_net_optimality_conditions(synth_implicit, l1: float, l2: float) -> None:
    """At the optimum of 1/2 w'Gw - G_j'w + l1|w|_1 + l2/2|w|^2 with w >= 0 and w_j = 0, the
    gradient g_k = (G w)_k - G_kj + l2 w_k equals -l1 where w_k > 0 and is >= -l1 where w_k = 0."""
    n = synth_implicit.n_items
    model = tb.get_model("slim")(reg=l2, l1_penalty=l1, neighbors=n, epochs=500, tol=1e-9).fit(synth_implicit)
    X = synth_implicit.matrix.astype(np.float64)
    G = (X.T @ X).toarray()
    W = model.weights_.toarray().astype(np.float64)
    assert (W >= 0).all() and np.allclose(np.diag(W), 0.0)
    grad = G @ W - G + l2 * W
    off = ~np.eye(n, dtype=bool)
    active = (W > 0) & off
    scale = np.abs(G).max()
    assert active.any()
    np.testing.assert_allclose(grad[active], -l1, atol=1e-3 * scale)
    assert (grad[~active & off] >= -l1 - 1e-3 * scale).all()


def test_neighbors_cap_each_column_and_fold_in_equals_known_user(synth_implicit) -> None:
    model = tb.get_model("slim")(neighbors=5, l1_penalty=0.1).fit(synth_implicit)
    per_column = np.diff(model.weights_.tocsc().indptr)
    assert per_column.max() <= 5 and per_column.sum() > 0
    row = synth_implicit.matrix[4]
    user = synth_implicit.users.ids[4].item()
    known = model.recommend([user], k=6)
    folded = model.recommend_for_history(synth_implicit.items.to_ids(row.indices).tolist(), row.data.tolist(), k=6)
    assert known.items_of(0) == folded.items_of(0)


def test_result_does_not_depend_on_threads(synth_implicit) -> None:
    one = tb.get_model("slim")(threads=1, neighbors=10).fit(synth_implicit).weights_
    two = tb.get_model("slim")(threads=2, neighbors=10).fit(synth_implicit).weights_
    assert (one != two).nnz == 0


def test_memory_budget_and_bad_params_are_named(synth_implicit) -> None:
    with pytest.raises(ConfigError, match="memory budget"):
        tb.get_model("slim")(max_memory_gb=1e-9).fit(synth_implicit)
    with pytest.raises(ConfigError, match="reg and l1_penalty"):
        tb.get_model("slim")(reg=0.0, l1_penalty=0.0).fit(synth_implicit)
    with pytest.raises(ConfigError, match="neighbors"):
        tb.get_model("slim")(neighbors=0).fit(synth_implicit)
