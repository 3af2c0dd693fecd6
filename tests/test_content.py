"""Content-based model: profiles worked by hand, cold items, fallbacks, explanations, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import tastebud as tb
from tastebud.core.errors import ConfigError, DataError
from tastebud.data.idmap import IdMap
from tastebud.models.content import ContentBased, FeatureWarning

FEATS = pd.DataFrame(
    {
        "genres": [["Action"], ["Action", "Sci-Fi"], ["Romance"], ["Romance", "Comedy"], ["Sci-Fi"], ["Comedy"]],
        "title": ["space war", "space robots", "love letters", "love wedding", "robots rising", "wedding crashers"],
    },
    index=pd.Index(["m1", "m2", "m3", "m4", "m5", "m6"], name="item"),
)
RATINGS = pd.DataFrame(
    {
        "user": ["a", "a", "a", "b", "b", "b"],
        "item": ["m1", "m2", "m3", "m3", "m4", "m1"],
        "rating": [5.0, 4.0, 1.0, 5.0, 5.0, 2.0],
    }
)


def data(features=FEATS, frame=RATINGS, items=None, **kw) -> tb.Interactions:
    items = items or IdMap([f"m{i}" for i in range(1, 7)], "item")  # m5, m6: features, no ratings yet
    return tb.Interactions.from_frame(
        frame, rating="rating", scale=(1.0, 5.0), item_features=features, items=items, **kw
    )


def test_profile_and_cosine_by_hand():
    d = data()
    m = ContentBased(feature_blocks={"genres": 1.0}, calibrate=False).fit(d)
    vocab = ["Action", "Comedy", "Romance", "Sci-Fi"]
    V = {}
    for item, g in zip(FEATS.index, FEATS["genres"], strict=False):
        v = np.array([1.0 if x in g else 0.0 for x in vocab])
        V[item] = v / np.linalg.norm(v)
    # user a: mean 10/3; weights 5-10/3, 4-10/3, 1-10/3
    w = {"m1": 5 - 10 / 3, "m2": 4 - 10 / 3, "m3": 1 - 10 / 3}
    p = sum(w[i] * V[i] for i in w)
    p /= np.linalg.norm(p)
    items = list(FEATS.index)
    got = m.score(["a"], items)[0]
    want = np.array([p @ V[i] for i in items])
    np.testing.assert_allclose(got, want, atol=2e-6)
    # the disliked romance pushes m4/m6 down, the liked sci-fi pulls m5 up
    recs = m.recommend(["a"], k=3).items_of(0)
    assert recs[0] == "m5"


def test_blocks_combine_by_weight():
    d = data()
    both = ContentBased(feature_blocks={"genres": 2.0, "title": 1.0}, calibrate=False).fit(d)
    g = ContentBased(feature_blocks={"genres": 1.0}, calibrate=False).fit(d)
    t = ContentBased(feature_blocks={"title": 1.0}, calibrate=False).fit(d)
    users = ["a", "b"]
    want = (2.0 * g.score(users) + 1.0 * t.score(users)) / 3.0
    np.testing.assert_allclose(both.score(users), want, atol=5e-6)
    cal = ContentBased(feature_blocks={"genres": 2.0, "title": 1.0}).fit(d)
    s = cal.block_scale_
    assert s.min() == pytest.approx(1.0) and np.isfinite(s).all()
    want = (2.0 * s[0] * g.score(users) + 1.0 * s[1] * t.score(users)) / 3.0
    np.testing.assert_allclose(cal.score(users), want, atol=5e-5)


def test_items_without_interactions_are_recommendable():
    items = IdMap(["m1", "m2", "m3", "m4", "m5", "m6", "m7"], "item")
    feats = pd.concat(
        [
            FEATS,
            pd.DataFrame(
                {"genres": [["Sci-Fi", "Action"]], "title": ["space robots war"]}, index=pd.Index(["m7"], name="item")
            ),
        ]
    )
    d = data(features=feats, items=items)
    m = ContentBased(feature_blocks={"genres": 1.0, "title": 1.0}).fit(d)
    assert "m7" in m.recommend(["a"], k=2).items_of(0)
    assert m.recommend(["a"], k=5, items=["m7", "m6"]).items_of(0)[0] == "m7"


def test_feature_table_mismatch_is_reported():
    feats = pd.concat(
        [
            FEATS.drop(index="m6"),
            pd.DataFrame({"genres": [["War"]], "title": ["x y"]}, index=pd.Index(["ghost"], name="item")),
        ]
    )
    frame = pd.concat([RATINGS, pd.DataFrame({"user": ["b"], "item": ["m6"], "rating": [3.0]})])
    d = data(features=feats, frame=frame)
    with pytest.warns(FeatureWarning) as caught:
        m = ContentBased(feature_blocks={"genres": 1.0}).fit(d)
    text = " ".join(str(w.message) for w in caught)
    assert "not in the data" in text and "'ghost'" in text
    assert "no usable features" in text and "'m6'" in text
    assert m.report_["feature_rows_not_in_data"] == 1 and m.report_["items_without_features"] == 1
    scores = m.score(["a", "b"])
    assert np.isfinite(scores).all()
    col = d.items.index(["m6"])[0]
    assert np.all(np.abs(scores[:, col]) < 1e-5)  # neutral fallback, never NaN
    ex = m.recommend(["a"], k=6, exclude_seen=False, explain=True)
    row = ex.items_of(0).index("m6")
    assert "no features" in ex.explanations[0][row].text


def test_explanations_name_matched_features():
    m = ContentBased(feature_blocks={"genres": 1.0, "title": 1.0}).fit(data())
    recs = m.recommend(["a"], k=1, explain=True)
    assert recs.items_of(0) == ["m5"]
    ex = recs.explanations[0][0]
    names = [n for n, _ in ex.contributions]
    assert "genres: Sci-Fi" in names and "title: robots" in names
    assert all(w > 0 for _, w in ex.contributions)


def test_history_equals_known_user_and_flat_ratings():
    d = data()
    m = ContentBased(feature_blocks={"genres": 1.0, "title": 0.5}).fit(d)
    row = m.score(["a"])[0]
    hist = m._score_history(d.items.index(["m1", "m2", "m3"]), np.array([5.0, 4.0, 1.0], np.float32))
    np.testing.assert_allclose(hist, row, atol=1e-6)
    # equal ratings: every item counts as liked (no zero profile)
    recs = m.recommend_for_history(["m3"], values=[2.0], k=2)
    assert recs.items_of(0)[0] == "m4"


def test_implicit_data_and_similar_items():
    d = tb.Interactions.from_frame(
        RATINGS[["user", "item"]], item_features=FEATS, items=IdMap(list(FEATS.index), "item")
    )
    m = ContentBased().fit(d)
    assert not m.predicts_ratings
    assert m.similar_items(["m1"], k=1).items_of(0) == ["m2"]


def test_save_load_keeps_encoder(tmp_path):
    m = ContentBased(feature_blocks={"genres": 1.0, "title": {"weight": 0.5, "kind": "text"}}).fit(data())
    m.save(tmp_path / "c")
    back = tb.load_model(str(tmp_path / "c"))
    np.testing.assert_allclose(back.score(["a", "b"]), m.score(["a", "b"]), atol=1e-7)
    new = pd.DataFrame({"genres": [["Sci-Fi"]], "title": ["robots"]}, index=["new"])
    np.testing.assert_allclose(back.encoder_.transform(new).toarray(), m.encoder_.transform(new).toarray())
    assert (
        back.recommend(["a"], k=2, explain=True).explanations[0][0].text
        == m.recommend(["a"], k=2, explain=True).explanations[0][0].text
    )


def test_bad_input():
    with pytest.raises(DataError, match="no item_features"):
        ContentBased().fit(data(features=None))
    empty = FEATS.iloc[:0]
    d = data()
    d.item_features = empty
    with pytest.raises(DataError, match="empty"):
        ContentBased().fit(d)
    with pytest.raises(ConfigError, match="column 'budget' is not in the item feature table"):
        ContentBased(feature_blocks={"budget": 1.0}).fit(data())
    d = data()
    d.item_features = FEATS.set_axis([f"x{i}" for i in range(6)])
    with pytest.raises(DataError, match="none of the 6 feature rows matches an item"):
        ContentBased().fit(d)
    with pytest.raises(ConfigError, match="blocks must be"):
        ContentBased(feature_blocks={}).fit(data())


def test_params_are_json():
    import json

    m = ContentBased(feature_blocks={"genres": 1.0, "wiki": {"column": "title", "kind": "text", "weight": 0.5}})
    json.dumps(m.get_params())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m.fit(data())


@pytest.mark.slow
def test_ml100k_cold_start_beats_random(data_root):
    from tastebud.data.movielens import load_ml100k
    from tastebud.data.splits import Split
    from tastebud.eval import metrics as M

    d = load_ml100k(data_root)
    rng = np.random.default_rng(0)
    held = np.sort(rng.choice(d.n_items, size=d.n_items // 10, replace=False))
    mask = np.isin(d.item_idx, held)
    split = Split(d.subset(~mask), d.subset(mask))
    rel = split.test.matrix
    users = np.nonzero(np.diff(rel.indptr) > 0)[0]
    cand = np.random.default_rng(1).permutation(held)

    def ndcg(model):
        rec, _ = model.fit(split.train).rank_rows(users, 10, True, cand)
        return float(np.mean(M.ndcg_at_k(rec, rel[users], 10)))

    ours = ndcg(ContentBased(feature_blocks={"genres": 1.0, "title": 1.0}))
    rand = ndcg(tb.get_model("random")(random_state=0))
    assert ours > rand * 1.2
