"""Core pieces: top-k, id maps, persistence, registry, parameter checks, baselines."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import tastebud as tb
from tastebud.core import persist
from tastebud.core.errors import ConfigError, ModelFormatError, UnknownIdError, UnknownModelError
from tastebud.core.ranking import topk


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.integers(1, 30)),
        elements=st.sampled_from([-np.inf, 0.0, 0.5, 1.0, 2.0, 3.5]),
    ),
    st.integers(1, 40),
)
def test_topk_matches_stable_sort(scores, k):
    idx, val = topk(scores, k)
    assert idx.shape == (scores.shape[0], k)
    for row in range(scores.shape[0]):
        order = sorted(range(scores.shape[1]), key=lambda c: (-scores[row, c], c))
        expected = [c for c in order if np.isfinite(scores[row, c])][:k]
        got = [int(i) for i in idx[row] if i >= 0]
        assert got == expected
        assert np.isnan(val[row][len(got) :]).all()


def test_topk_row_alone_equals_row_in_batch():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(20, 50)).astype(np.float32)
    idx, _ = topk(scores, 7)
    for row in range(20):
        assert (topk(scores[row], 7)[0] == idx[row]).all()


def test_idmap_types_and_unknown():
    ints = tb.IdMap([10, 2, 7], "user")
    assert ints.lookup(["2", 2, 2.0, "x", 99]).tolist() == [1, 1, 1, -1, -1]
    strs = tb.IdMap(["a", "é", "b"], "item")
    assert strs.lookup(["é", "zz"]).tolist() == [1, -1]
    with pytest.raises(UnknownIdError, match="unknown item id\\(s\\): 'zz'"):
        strs.index(["a", "zz"])
    with pytest.raises(tb.DataError, match="duplicate"):
        tb.IdMap(["a", "a"])
    assert strs.to_ids(np.array([2, -1])).tolist() == ["b", None]
    # one typed id (the service's per-request path) agrees with lookup
    assert [ints.position(v) for v in (10, 2, 7, 99)] == [0, 1, 2, -1]
    assert [strs.position(v) for v in ("é", "zz", 3)] == [1, -1, -1]


def _seed_frame():
    return pd.DataFrame(
        {"user": ["a", "a", "b", "b", "c", "c"], "item": [1, 2, 1, 3, 2, 3], "rating": [5, 3, 4, 1, 2, 5]}
    )


def test_bias_recovers_additive_ratings():
    # r = mu + a_u + b_i exactly on a full grid; without damping ALS recovers it exactly
    a = {"u1": 0.5, "u2": -0.5, "u3": 0.0}
    b = {1: 1.0, 2: -1.0, 3: 0.0, 4: 0.25}
    rows = [(u, i, 3.0 + au + bi) for u, au in a.items() for i, bi in b.items()]
    data = tb.Interactions.from_frame(pd.DataFrame(rows, columns=["user", "item", "rating"]), rating="rating")
    model = tb.get_model("bias")(reg_user_bias=0.0, reg_item_bias=0.0, epochs=50).fit(data)
    pred = model.predict([r[0] for r in rows], [r[1] for r in rows])
    np.testing.assert_allclose(pred, [r[2] for r in rows], atol=1e-5)
    # unknown user: global mean + item bias, and a warning that says so
    with pytest.warns(tb.FallbackWarning, match="1 unknown user\\(s\\) 'new': predicted from the biases"):
        assert model.predict(["new"], [1])[0] == pytest.approx(3.0 + 1.0, abs=0.2)


def test_popular_known_answer_and_recency():
    frame = pd.DataFrame(
        {"user": [1, 2, 3, 1, 2, 3], "item": ["x", "x", "x", "y", "y", "z"], "t": [0, 0, 0, 10**7, 10**7, 10**7]}
    )
    data = tb.Interactions.from_frame(frame, time="t")
    plain = tb.get_model("popular")().fit(data)
    assert plain.recommend_for_history(["x"], k=3, exclude_seen=False).items_of(0) == ["x", "y", "z"]
    recent = tb.get_model("popular")(half_life_days=1.0).fit(data)
    assert recent.recommend_for_history(["x"], k=3, exclude_seen=False).items_of(0) == ["y", "z", "x"]


def test_registry_errors():
    with pytest.raises(UnknownModelError, match="no model named 'nope'"):
        tb.get_model("nope")
    assert {"random", "popular", "bias"} <= set(tb.list_models())


def test_param_type_checks():
    data = tb.Interactions.from_frame(_seed_frame(), rating="rating")
    with pytest.raises(ConfigError, match="epochs must be an integer"):
        tb.get_model("bias")(epochs="ten").fit(data)
    with pytest.raises(ConfigError, match="epochs must be > 0"):
        tb.get_model("bias")(epochs=0).fit(data)
    with pytest.raises(ConfigError, match="no hyper-parameter 'nope'"):
        tb.get_model("bias")().set_params(nope=1)


def test_persistence_refuses_tampering(tmp_path):
    data = tb.Interactions.from_frame(_seed_frame(), rating="rating")
    model = tb.get_model("bias")().fit(data)
    folder = model.save(tmp_path / "m")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"] == "bias" and manifest["data_fingerprint"] == data.fingerprint()
    assert not any("pickle" in p.name for p in folder.iterdir())
    # truncated arrays
    arrays = folder / "arrays.npz"
    blob = arrays.read_bytes()
    arrays.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ModelFormatError, match="SHA-256 mismatch"):
        tb.load_model(str(folder))
    # newer format
    model.save(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["format_version"] = 99
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match="newer than this tastebud reads"):
        tb.load_model(str(folder))
    # a model name outside the registry allowlist
    manifest["format_version"] = 1
    manifest["model"] = "os.system"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFormatError, match="no model named"):
        tb.load_model(str(folder))
    with pytest.raises(ModelFormatError, match="not a tastebud model folder"):
        tb.load_model(str(tmp_path / "missing"))


def test_save_is_atomic_over_existing(tmp_path, monkeypatch):
    data = tb.Interactions.from_frame(_seed_frame(), rating="rating")
    model = tb.get_model("bias")().fit(data)
    folder = model.save(tmp_path / "m")
    before = (folder / "manifest.json").read_text()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(persist.np, "savez", boom)
    with pytest.raises(OSError):
        model.save(folder)
    assert (folder / "manifest.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temp folder left behind
    assert tb.load_model(str(folder)).predict(["a"], [1]).shape == (1,)


def test_recommend_for_history_unknown_and_values():
    data = tb.Interactions.from_frame(_seed_frame(), rating="rating")
    model = tb.get_model("popular")().fit(data)
    recs = model.recommend_for_history([1, "nope"], k=2)
    assert recs.warnings == ["ignored 1 unknown item(s): 'nope'"]
    assert 1 not in recs.items_of(0)
    with pytest.raises(tb.DataError, match="values has 1 entries"):
        model.recommend_for_history([1, 2], values=[1.0])


def _counts_frame():
    """Item 3 is the most popular (4 people), then 1 (3), 2 (2), 4 (1); users a..e."""
    pairs = [("a", 3), ("b", 3), ("c", 3), ("d", 3), ("a", 1), ("b", 1), ("e", 1), ("c", 2), ("e", 2), ("d", 4)]
    return pd.DataFrame(pairs, columns=["user", "item"])


@pytest.mark.parametrize("name", ["itemknn", "bias", "random"])
def test_one_fallback_rule_unknown_people_get_the_most_popular_items(name):
    data = tb.Interactions.from_frame(_counts_frame())
    model = tb.get_model(name)().fit(data)
    assert dict(zip(model.items_.ids.tolist(), model.item_counts().tolist(), strict=True)) == {1: 3, 2: 2, 3: 4, 4: 1}
    popular = model.popular_items(k=3)
    assert popular.items_of(0) == [3, 1, 2] and popular.scores_of(0) == [4.0, 3.0, 2.0]
    # a history of only unknown items: the popular items, said in warnings (not 10 arbitrary zeros)
    recs = model.recommend_for_history(["nope", "never"], k=3)
    assert recs.items_of(0) == [3, 1, 2] and recs.scores_of(0) == [4.0, 3.0, 2.0]
    assert recs.warnings == [
        "ignored 2 unknown item(s): 'nope', 'never'",
        "empty history (no known item): recommended the most popular items of the training data",
    ]
    assert model.recommend_for_history([], k=2, candidates=[4, 2]).items_of(0) == [2, 4]
    assert model.popular_items(k=3, exclude=[3]).items_of(0) == [1, 2, 4]
    # unknown users raise by default (the contract), or opt in to the same fallback
    with pytest.raises(UnknownIdError, match="unknown user id\\(s\\): 'zed'"):
        model.recommend(["a", "zed"], k=3)
    both = model.recommend(["a", "zed"], k=3, unknown="popular", explain=True)
    assert both.items_of(0) == model.recommend(["a"], k=3).items_of(0)
    assert both.items_of(1) == [3, 1, 2] and both.explanations[1][0].text == "popular: 4 interactions"
    assert both.warnings == ["1 unknown user(s) 'zed': recommended the most popular items of the training data"]
    assert model.recommend(["a"], k=3, unknown="popular").warnings == []
    with pytest.raises(ConfigError, match="unknown must be 'raise' or 'popular'"):
        model.recommend(["a"], unknown="ignore")


def test_cli_uses_the_same_fallback(tmp_path):
    from typer.testing import CliRunner

    from tastebud.cli import app

    data = tb.Interactions.from_frame(_counts_frame())
    folder = tb.get_model("itemknn")().fit(data).save(tmp_path / "m")
    runner = CliRunner()
    for args in (["--user", "zed"], ["--history", "nope"]):
        res = runner.invoke(app, ["recommend", "--model", str(folder), "--k", "3", "--json", *args])
        assert res.exit_code == 0, res.output
        payload = json.loads(res.output)
        assert [e["item"] for e in payload["results"][0]["items"]] == [3, 1, 2]
        assert "most popular items of the training data" in payload["warnings"][-1]


def test_predict_falls_back_to_biases_and_says_so():
    data = tb.Interactions.from_frame(_seed_frame(), rating="rating")
    model = tb.get_model("bias")().fit(data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # known pairs: no warning
        model.predict(["a"], [1])
    with pytest.warns(tb.FallbackWarning) as caught:
        pred = model.predict(["a", "nobody"], [99, 1])
    assert [str(w.message) for w in caught] == [
        "1 unknown user(s) 'nobody': predicted from the biases the model has (the global mean at worst)",
        "1 unknown item(s) 99: predicted from the biases the model has (the global mean at worst)",
    ]
    assert np.isfinite(pred).all() and ((1 <= pred) & (pred <= 5)).all()
    again, notes = model.predict_with_warnings(["a", "nobody"], [99, 1])
    np.testing.assert_array_equal(again, pred)
    assert notes == [str(w.message) for w in caught]


def test_short_lists_are_shorter_not_padded():
    data = tb.Interactions.from_frame(_seed_frame(), rating="rating")
    model = tb.get_model("popular")().fit(data)
    recs = model.recommend(["a", "b"], k=3, explain=True)  # a has seen 1 and 2: one item is left
    assert [len(row) for row in recs.items] == [1, 1] and [len(row) for row in recs.scores] == [1, 1]
    assert not any(np.isnan(row).any() for row in recs.scores)
    assert [len(row) for row in recs.explanations] == [1, 1]
    frame = recs.to_frame()
    assert len(frame) == 2 and frame.notna().all().all() and frame["explanation"].str.len().gt(0).all()
    assert [len(r["items"]) for r in recs.to_records()] == [1, 1]
    assert json.dumps(recs.to_records())  # JSON-ready: no NaN, no numpy scalars
    hist = model.recommend_for_history([1, 2], k=3, explain=True)
    assert hist.items_of(0) == [3] and len(hist.explanations[0]) == 1
    # no candidate at all: empty lists, not an error
    assert model.recommend(["a"], k=3, items=[]).items_of(0) == []
    assert model.recommend_for_history([1], k=3, candidates=[]).items_of(0) == []
    assert model.popular_items(k=3, candidates=[]).to_frame().empty


def test_ids_keep_the_vocabulary_type():
    ints = tb.Interactions.from_frame(_counts_frame().assign(user=lambda f: f.user.map(ord)))
    model = tb.get_model("popular")().fit(ints)
    recs = model.recommend(["97", 98], k=2)  # "97" finds the integer user 97
    assert recs.users == [97, 98] and recs.items[0].dtype == np.int64
    frame = recs.to_frame()
    assert frame["user"].dtype == np.int64 and frame["item"].dtype == np.int64
    assert model.recommend([97], k=2, exclude_seen=False).to_frame()["item"].tolist() == [3, 1]
    strs = tb.Interactions.from_frame(_seed_frame(), item="user", user="item")  # string items a, b, c
    frame = tb.get_model("popular")().fit(strs).recommend([1, 2], k=2, exclude_seen=False).to_frame()
    assert frame["user"].dtype == np.int64
    assert all(type(i) is str for i in frame["item"]) and frame["item"].dtype != np.int64


def test_similar_items_frame_names_the_query_item():
    data = tb.Interactions.from_frame(_counts_frame())
    recs = tb.get_model("itemknn")().fit(data).similar_items([3, "1"], k=2)
    frame = recs.to_frame()
    assert list(frame.columns) == ["query_item", "item", "score", "rank"]
    assert set(frame["query_item"]) == {3, 1} and frame["query_item"].dtype == np.int64
    assert not (frame["query_item"] == frame["item"]).any()
    assert [r["query_item"] for r in recs.to_records()] == [3, 1]


def test_recommendations_frame_and_records():
    data = tb.Interactions.from_frame(_seed_frame(), rating="rating")
    model = tb.get_model("popular")().fit(data)
    recs = model.recommend(["a", "b"], k=5)
    frame = recs.to_frame()
    assert list(frame.columns) == ["user", "item", "score", "rank"]
    # a has seen 1 and 2, so only item 3 is left; b only 2
    assert frame[frame.user == "a"].item.tolist() == [3]
    assert frame[frame.user == "b"].item.tolist() == [2]
    assert recs.to_records()[0]["items"][0]["rank"] == 1


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 5), st.integers(1, 80)),
        elements=st.sampled_from([-np.inf, np.nan, 0.0, 0.5, 1.0, 2.0]),
    ),
    st.integers(1, 12),
    st.integers(0, 2**31 - 1),
)
def test_fused_masked_topk_equals_mask_then_topk(scores, k, seed):
    import scipy.sparse as sp

    from tastebud.kernels.topk import topk_masked, topk_masked_serial

    rng = np.random.default_rng(seed)
    seen = sp.csr_matrix(rng.random(scores.shape) < 0.3, dtype=np.float32)
    seen.sort_indices()
    rows = np.arange(scores.shape[0], dtype=np.int64)
    masked = scores.copy()
    masked[seen.toarray() > 0] = -np.inf
    ref_idx, ref_val = topk(masked, k)
    for kernel in (topk_masked, topk_masked_serial):  # the parallel kernel and its one-request twin
        out_idx = np.empty((len(rows), k), np.int64)
        out_val = np.empty((len(rows), k), np.float32)
        kernel(scores.copy(), rows, seen.indptr.astype(np.int64), seen.indices, k, out_idx, out_val)
        assert (out_idx == ref_idx).all()
        np.testing.assert_array_equal(out_val, ref_val)


def test_bundle_arrays_read_back_exactly(tmp_path):
    """read_bundle reads np.savez members at their offsets; every layout comes back as np.load reads it,
    and a compressed archive (another writer) still reads through numpy's own path."""
    rng = np.random.default_rng(0)
    arrays = {
        "f32": rng.standard_normal((7, 3)).astype(np.float32),
        "fortran": np.asfortranarray(rng.standard_normal((4, 5))),
        "empty": np.zeros((0, 3), np.int32),
        "scalar": np.array(3.5),
        "flags": rng.random(11) > 0.5,
        "text": np.array(["a", "bé", ""]),
        "big_endian": np.arange(6, dtype=">i4").reshape(2, 3),
        "strided": rng.standard_normal((6, 6))[::2, 1::2],
    }
    folder = persist.write_bundle(tmp_path / "b", {"kind": "test"}, arrays)
    _, got, _ = persist.read_bundle(folder)
    with np.load(folder / "arrays.npz", allow_pickle=False) as npz:
        for name, arr in arrays.items():
            assert got[name].dtype == arr.dtype and got[name].shape == arr.shape, name
            np.testing.assert_array_equal(got[name], arr)
            np.testing.assert_array_equal(got[name], npz[name])
    assert got["fortran"].flags.f_contiguous
    np.savez_compressed(tmp_path / "c.npz", **arrays)
    squeezed = persist._read_npz(tmp_path / "c.npz")
    for name, arr in arrays.items():
        np.testing.assert_array_equal(squeezed[name], arr)


def test_bundle_verify_false_skips_the_checksums_and_unread_files_stay_on_disk(tmp_path):
    """verify=False (a fleet worker following a version another worker verified) skips the
    SHA-256 check; files named in ``unread`` are checked but not read into memory."""
    folder = persist.write_bundle(tmp_path / "b", {"kind": "test"}, {"x": np.arange(4)}, {"blob.bin": b"abc"})
    _, _, extra = persist.read_bundle(folder, unread=("blob.bin",))
    assert extra == {}
    (folder / "blob.bin").write_bytes(b"abd")  # same size, other bytes
    with pytest.raises(ModelFormatError, match="SHA-256 mismatch"):
        persist.read_bundle(folder)
    with pytest.raises(ModelFormatError, match="SHA-256 mismatch"):
        persist.read_bundle(folder, unread=("blob.bin",))
    _, arrays, extra = persist.read_bundle(folder, verify=False)
    assert extra == {"blob.bin": b"abd"} and arrays["x"].tolist() == [0, 1, 2, 3]
    (folder / "blob.bin").unlink()
    with pytest.raises(ModelFormatError, match="missing"):
        persist.read_bundle(folder, verify=False)


def test_saved_files_have_the_permissions_of_any_file_the_user_writes(tmp_path):
    """mkstemp/mkdtemp make owner-only entries; renamed into place they must follow the umask."""
    mask = persist._UMASK
    folder = persist.write_bundle(tmp_path / "b", {"kind": "test"}, {"x": np.arange(4)}, {"blob.bin": b"abc"})
    assert folder.stat().st_mode & 0o777 == 0o777 & ~mask
    for f in folder.iterdir():
        assert f.stat().st_mode & 0o777 == 0o666 & ~mask, f.name
    persist.atomic_write_bytes(tmp_path / "one.json", b"{}")
    assert (tmp_path / "one.json").stat().st_mode & 0o777 == 0o666 & ~mask
