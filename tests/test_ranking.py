"""The one ranking path (core/ranking.py) against a brute-force reference, and the layering rule
that every other layer ranks through it and calls a model's public index-level API only."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from tastebud.core import ranking

SRC = Path(__file__).resolve().parents[1] / "src" / "tastebud"
VALUES = [-np.inf, np.nan, 0.0, 0.5, 1.0, 2.0]  # few distinct values: many ties


def brute(row: np.ndarray, k: int, excluded: set[int], columns: np.ndarray | None) -> tuple[list[int], list[float]]:
    """Sort every eligible column by (score desc, position asc); NaN, -inf and excluded items never."""
    items = np.arange(len(row)) if columns is None else columns
    keep = [p for p in range(len(row)) if np.isfinite(row[p]) and int(items[p]) not in excluded]
    keep.sort(key=lambda p: (-row[p], p))
    return [int(items[p]) for p in keep[:k]], [float(row[p]) for p in keep[:k]]


def check(idx: np.ndarray, val: np.ndarray, ref: tuple[list[int], list[float]], k: int) -> None:
    got = [int(i) for i in idx if i >= 0]
    assert got == ref[0]
    assert val[: len(got)].tolist() == ref[1]
    assert (idx[len(got) :] == -1).all() and np.isnan(val[len(got) :]).all() and len(idx) == k


@st.composite
def cases(draw):
    n_rows = draw(st.integers(1, 7))  # above ranking.SERIAL_ROWS too: the parallel kernel
    n_items = draw(st.integers(0, 40))
    scores = np.array(
        draw(st.lists(st.sampled_from(VALUES), min_size=n_rows * n_items, max_size=n_rows * n_items)), np.float32
    ).reshape(n_rows, n_items)
    k = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    return scores, k, np.random.default_rng(seed)


@settings(max_examples=200, deadline=None)
@given(cases(), st.sampled_from(["none", "array", "list", "csr", "csr_rows"]), st.booleans())
def test_rank_equals_brute_force(case, form, with_candidates):
    """Whole catalogue or a candidate list (shuffled, with duplicates), with every form of exclusions."""
    full, k, rng = case
    n_rows, n_items = full.shape
    columns = None
    scores = full
    if with_candidates and n_items:
        columns = rng.choice(n_items, size=rng.integers(0, n_items + 3), replace=True).astype(np.int64)
        scores = full[:, columns]
    sets = [set(np.flatnonzero(rng.random(n_items) < 0.3).tolist()) for _ in range(n_rows)]
    kwargs: dict = {}
    if form == "array":
        sets = [sets[0]] * n_rows
        kwargs["exclude"] = np.array(sorted(sets[0]), np.int64)[::-1]  # any order
    elif form == "list":
        kwargs["exclude"] = [np.array(sorted(s), np.int64) for s in sets]
    elif form in ("csr", "csr_rows"):
        dense = np.zeros((n_rows, n_items), np.float32)
        for r, s in enumerate(sets):
            dense[r, sorted(s)] = 1.0
        if form == "csr_rows":  # a bigger matrix whose rows are picked per score row (a block of users)
            order = rng.permutation(n_rows)
            big = np.zeros((n_rows, n_items), np.float32)
            big[order] = dense
            kwargs["exclude"], kwargs["exclude_rows"] = sp.csr_matrix(big), order
        else:
            kwargs["exclude"] = sp.csr_matrix(dense)
    else:
        sets = [set()] * n_rows
    before = scores.copy()
    idx, val = ranking.rank(scores, k, columns=columns, **kwargs)
    np.testing.assert_array_equal(scores, before)  # never modified
    for r in range(n_rows):
        check(idx[r], val[r], brute(scores[r], k, sets[r], columns), k)
        one_idx, one_val = ranking.rank(
            scores[r], k, columns=columns, **{**kwargs, **_row_args(kwargs, r)}
        )  # a row alone: the serial kernel, the same answer
        np.testing.assert_array_equal(one_idx, idx[r])
        np.testing.assert_array_equal(one_val, val[r])
    if columns is not None and form in ("none", "array"):  # allowed = gather the candidates, then rank
        a_idx, a_val = ranking.rank(full, k, allowed=columns, **kwargs)
        np.testing.assert_array_equal(a_idx, idx)
        np.testing.assert_array_equal(a_val, val)


@pytest.mark.parametrize("form", ["array", "list", "csr"])
def test_duplicate_candidates_are_all_excluded(form):
    """A candidate list naming an item twice: an excluded item is dropped at every position."""
    scores = np.array([[3.0, 2.0, 1.0, 3.0, 0.5]], np.float32)
    columns = np.array([7, 2, 4, 7, 1])
    exclude = {"array": np.array([7]), "list": [np.array([7])], "csr": sp.csr_matrix(([1.0], ([0], [7])), shape=(1, 9))}
    idx, _ = ranking.rank(scores, 5, exclude=exclude[form], columns=columns)
    assert idx[0].tolist() == [2, 4, 1, -1, -1]
    assert ranking.rank(scores, 5, columns=columns)[0][0].tolist() == [7, 7, 2, 4, 1]  # duplicates stay as given


def _row_args(kwargs: dict, r: int) -> dict:
    ex = kwargs.get("exclude")
    if isinstance(ex, list):
        return {"exclude": [ex[r]]}
    if sp.issparse(ex):
        rows = kwargs.get("exclude_rows")
        return {"exclude_rows": np.array([r if rows is None else rows[r]])}
    return {}


@settings(max_examples=60, deadline=None)
@given(cases(), st.integers(1, 40))
def test_merge_of_chunks_equals_whole(case, cut):
    """The exact index scans items in chunks and merges running top-k lists: same as one pass."""
    scores, k, _ = case
    n_items = scores.shape[1]
    cut = min(cut, n_items)
    whole = ranking.topk(scores, k)
    a = ranking.rank(scores[:, :cut], k, columns=np.arange(cut))
    b = ranking.rank(scores[:, cut:], k, columns=np.arange(cut, n_items))
    merged = ranking.merge(*a, *b, k)
    np.testing.assert_array_equal(merged[0], whole[0])
    np.testing.assert_array_equal(merged[1], whole[1])


def test_exact_index_ranks_like_the_library():
    """ExactIndex (chunked scan, fused exclusions, merge) equals a brute-force sort, ties included."""
    from tastebud.index.exact import ExactIndex

    rng = np.random.default_rng(3)
    vectors = rng.integers(-2, 3, size=(300, 4)).astype(np.float32)  # integer dots: many ties
    queries = rng.integers(-2, 3, size=(5, 4)).astype(np.float32)
    exclude = [rng.choice(300, 20, replace=False) for _ in range(5)]
    allowed = np.sort(rng.choice(300, 150, replace=False))
    index = ExactIndex(block=64 * 5).build(vectors)  # 64 items per chunk
    idx, val = index.search(queries, 12, exclude=exclude, allowed=allowed)
    for r in range(5):
        row = np.full(300, -np.inf, np.float32)
        row[allowed] = (queries[r] @ vectors[allowed].T).astype(np.float32)
        check(idx[r], val[r], brute(row, 12, set(exclude[r].tolist()), None), 12)


def test_rank_refuses_mismatched_columns():
    with pytest.raises(ValueError, match="columns"):
        ranking.rank(np.zeros((1, 3)), 2, columns=np.arange(4))
    with pytest.raises(ValueError, match="not both"):
        ranking.rank(np.zeros((1, 3)), 2, columns=np.arange(3), allowed=np.arange(2))


# ---------------------------------------------------------------------------- the layering rule
#: A model's extension points (and the private paths the index-level API replaced): only models/
#: and core/ may touch them; other layers call score_rows, rank_rows, similar_rows, ... instead.
MODEL_HOOKS = {
    "_fit",
    "_score",
    "_score_history",
    "_similar",
    "_explain",
    "_predict_pairs",
    "_recommend_idx",
    "_predict_idx",
    "_score_chunked",
    "_popular_idx",
}


def hook_calls(root: Path) -> list[str]:
    """``file:line expr`` for each use of a model hook outside ``models/`` and ``core/``."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("models/", "core/")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), rel)):
            if isinstance(node, ast.Attribute) and node.attr in MODEL_HOOKS:
                found.append(f"{rel}:{node.lineno} {ast.unparse(node)}")
    return found


def test_layers_call_only_the_public_index_api():
    assert hook_calls(SRC) == []


def test_layering_check_catches_a_hook_call(tmp_path):
    (tmp_path / "serve").mkdir()
    (tmp_path / "serve" / "x.py").write_text("def f(m):\n    return m._score(None, None)\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "y.py").write_text("def g(m):\n    return m._score(None, None)\n")
    assert hook_calls(tmp_path) == ["serve/x.py:2 m._score"]


def test_one_top_k():
    """No module selects a top-k of its own: no argpartition anywhere, and only core/ranking.py
    calls the compiled kernel."""
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(SRC).as_posix()
        assert "argpartition" not in text, rel
        if rel not in ("core/ranking.py", "kernels/topk.py"):
            assert "topk_masked" not in text, rel
