"""Two-tower model: the streaming frequency estimator, the corrected in-batch softmax against a
brute-force reference, the history sampler, serving paths and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

import tastebud as tb  # noqa: E402
from tastebud.core.errors import ConfigError, DataError, TrainingError  # noqa: E402
from tastebud.models import two_tower as tt  # noqa: E402
from tastebud.models.two_tower import estimator  # noqa: E402
from tastebud.models.two_tower.networks import _nets  # noqa: E402

FAST = dict(factors=8, epochs=2, batch_size=256, validation=0.0, device="cpu", max_history=20)


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_streaming_frequency_converges_to_the_true_rates():
    est = tt.StreamingFrequency(buckets=1024, alpha=0.05, hashes=2, prior=10.0, seed=0)
    for step in range(1, 2001):
        items = [0] + ([1] if step % 4 == 0 else []) + ([2] if step % 10 == 0 else [])
        est.update(np.array(items))
    p = est.probability(np.array([0, 1, 2]))
    np.testing.assert_allclose(p, [1.0, 0.25, 0.1], rtol=0.02)


def test_streaming_frequency_counts_an_item_once_per_step():
    est = tt.StreamingFrequency(buckets=64, alpha=1.0, hashes=1, prior=5.0)
    est.update(np.array([3, 3, 3]))
    est.update(np.array([3]))
    assert est.probability(np.array([3]))[0] == pytest.approx(1.0)


def test_sampled_softmax_matches_brute_force():
    rng = np.random.default_rng(0)
    u = rng.normal(size=(4, 3)).astype(np.float32)
    v = rng.normal(size=(4, 3)).astype(np.float32)
    nv = rng.normal(size=(2, 3)).astype(np.float32)
    items = np.array([5, 7, 5, 9])  # rows 0 and 2 share an item: an accidental hit
    neg = np.array([7, 11])  # row 1's own item is drawn as a negative too
    logq = np.log(np.array([0.5, 0.2, 0.5, 0.1]))
    logq_n = np.log(np.array([0.3, 0.3]))
    tau = 0.5
    got = tt.sampled_softmax_loss(
        torch.tensor(u), torch.tensor(v), torch.tensor(items), torch.tensor(logq, dtype=torch.float32), tau,
        torch.tensor(nv), torch.tensor(neg), torch.tensor(logq_n, dtype=torch.float32),
    ).item()  # fmt: skip
    losses = []
    for i in range(4):
        cands = [(u[i] @ v[j] / tau - logq[j]) for j in range(4) if j == i or items[j] != items[i]]
        cands += [(u[i] @ nv[j] / tau - logq_n[j]) for j in range(2) if neg[j] != items[i]]
        pos = u[i] @ v[i] / tau - logq[i]
        losses.append(-(pos - np.log(np.sum(np.exp(cands)))))
    assert got == pytest.approx(float(np.mean(losses)), rel=1e-5)


def test_history_sampler_leaves_the_target_out():
    rng = np.random.default_rng(0)
    indptr = np.array([0, 3, 63, 64])
    indices = np.arange(64)
    users = np.array([0, 0, 1, 1, 2] * 40)
    target = np.array([1, 2, 0, 59, 0] * 40)
    hist, mask = tt.sample_history(rng, indptr, indices, users, target, 10)
    assert hist.shape == (200, 10)
    for r in range(200):
        got = hist[r][mask[r]]
        row = indices[indptr[users[r]] : indptr[users[r] + 1]]
        assert 1 <= len(got) <= min(10, len(row) - 1) or (len(row) == 1 and len(got) == 0)
        assert set(got) <= set(row) and row[target[r]] not in got
        if users[r] == 0:
            assert len(set(got)) == len(got)  # a short row is sampled without replacement


def test_history_sampler_short_share_sets_the_lengths():
    rng = np.random.default_rng(1)
    indptr = np.array([0, 301])
    users = np.zeros(4000, np.int64)
    target = rng.integers(0, 301, size=4000)
    _, full = tt.sample_history(rng, indptr, np.arange(301), users, target, 20, short_share=0.0)
    assert (full.sum(1) == 20).all()  # a long row fills the history
    _, short = tt.sample_history(rng, indptr, np.arange(301), users, target, 20, short_share=1.0)
    n = short.sum(1)
    assert n.min() == 1 and n.max() <= 20
    # log-uniform on [1, 21): P(length <= 4) = log(5) / log(21)
    assert np.mean(n <= 4) == pytest.approx(np.log(5) / np.log(21), abs=0.03)


def test_dimension_mismatch_is_caught_at_construction(synth):
    nets = _nets()
    user = nets["UserTower"](5, 8, 0, [16, 8], "mean", False, False)
    item = nets["ItemTower"](5, 8, 0, [16, 4])
    with pytest.raises(ConfigError, match="same dimension"):
        nets["TwoTowerNet"](user, item)
    with pytest.raises(ConfigError, match="user_layers ends in 8 but item_layers in 4"):
        tb.get_model("two_tower")(user_layers=[16, 8], item_layers=[16, 4]).fit(synth)


def test_missing_feature_columns_name_themselves(synth):
    with pytest.raises(DataError, match="'colour'"):
        tb.get_model("two_tower")(item_columns=["genres", "colour"], **FAST).fit(synth)
    with pytest.raises(DataError, match="'shoe_size'"):
        tb.get_model("two_tower")(user_columns=["shoe_size"], **FAST).fit(synth)
    model = tb.get_model("two_tower")(**FAST).fit(synth)
    with pytest.raises(DataError, match="'genres'"):
        model.encode_items(synth.item_features.drop(columns=["genres"]))


def test_nan_loss_stops_training(synth):
    with pytest.raises(TrainingError, match="loss became"):
        tb.get_model("two_tower")(temperature=1e-45, **FAST).fit(synth)


def test_uses_features_context_and_demographics(synth):
    model = tb.get_model("two_tower")(**FAST).fit(synth)
    assert model.context_ and model.n_item_features_ > 0 and model.n_user_features_ > 0
    cols = [b["column"] for b in model.item_feature_spec_]
    assert cols == ["genres", "year", "description"]
    assert {b["column"] for b in model.user_feature_spec_} == {"age", "gender", "occupation"}
    n = np.linalg.norm(model.item_factors_, axis=1)
    np.testing.assert_allclose(n, 1.0, rtol=1e-5)
    assert model.item_factors_.shape == (synth.n_items, 8)
    id_only = tb.get_model("two_tower")(features=False, context=False, **FAST).fit(synth)
    assert id_only.n_item_features_ == 0 and not id_only.context_


def test_history_vector_is_the_user_tower_of_a_known_person(synth):
    model = tb.get_model("two_tower")(features=False, context=False, **FAST).fit(synth)
    m = synth.matrix
    u = int(np.argmin(np.diff(m.indptr)))  # a short row: fewer items than max_history
    items = m.indices[m.indptr[u] : m.indptr[u + 1]]
    assert len(items) <= 20
    np.testing.assert_allclose(model.encode_history(items), model.user_factors_[u], rtol=1e-5, atol=1e-6)
    # a new person with five interactions is served from their history, without retraining
    recs = model.recommend_for_history(synth.items.to_ids(items[:5]).tolist(), k=5)
    expect = np.argsort(-(model.item_factors_ @ model.encode_history(items[:5])), kind="stable")
    expect = [i for i in expect if i not in set(items[:5])][:5]
    assert recs.items_of(0) == synth.items.to_ids(np.array(expect)).tolist()


def test_history_pools_the_item_towers_own_vectors(synth):
    """The user tower is ``normalize(mean of the history's item vectors + MLP correction)``: with
    the correction switched off it must equal the normalised mean of ``item_factors_`` rows."""
    model = tb.get_model("two_tower")(**FAST).fit(synth)
    last = model._net.user_tower.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    items = np.array([3, 17, 42])
    mean = model.item_factors_[items].mean(axis=0)
    np.testing.assert_allclose(model.encode_history(items), mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)
    # one item: the person's vector is that item's vector, so it is its own nearest item
    np.testing.assert_allclose(model.encode_history([7]), model.item_factors_[7], rtol=1e-5, atol=1e-6)


def test_new_items_get_vectors_from_features_alone(synth):
    cold = synth.items.index(["i0", "i1", "i2"])
    keep = ~np.isin(synth.item_idx, cold)
    data = synth.subset(keep)
    model = tb.get_model("two_tower")(**FAST).fit(data)
    assert (model.item_counts_[cold] == 0).all()
    from_features = model.encode_items(synth.item_features.loc[["i0", "i1", "i2"]])
    np.testing.assert_allclose(from_features, model.item_factors_[cold], rtol=1e-5, atol=1e-6)
    # a brand-new item that is not in the catalogue at all
    new = synth.item_features.iloc[:1].copy()
    new.index = pd.Index(["brand-new"])
    assert model.encode_items(new).shape == (1, 8)


def test_attention_pooling_and_extra_negatives_train(synth):
    model = tb.get_model("two_tower")(pooling="attention", negatives=16, user_ids=True, **FAST).fit(synth)
    assert np.isfinite(model.item_factors_).all() and np.isfinite(model.user_factors_).all()
    assert model.history_[-1]["loss"] > 0


def test_learns_planted_communities():
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{i}") for u in range(60) for i in range(30 * (u % 2), 30 * (u % 2) + 30) if rng.random() < 0.4]
    data = tb.Interactions.from_frame(pd.DataFrame(rows, columns=["user", "item"]))
    model = tb.get_model("two_tower")(
        factors=16, epochs=15, batch_size=64, learning_rate=0.01, validation=0.0, device="cpu"
    ).fit(data)
    even = model.recommend_for_history(["i0", "i3", "i7"], k=10).items_of(0)
    odd = model.recommend_for_history(["i30", "i33", "i37"], k=10).items_of(0)
    assert np.mean([int(i[1:]) < 30 for i in even]) >= 0.9
    assert np.mean([int(i[1:]) >= 30 for i in odd]) >= 0.9


def test_logq_changes_the_loss_only_through_the_correction(synth):
    a = tb.get_model("two_tower")(logq=True, **FAST).fit(synth)
    b = tb.get_model("two_tower")(logq=False, **FAST).fit(synth)
    assert a.history_[0]["loss"] != b.history_[0]["loss"]


def test_kill_and_resume_gives_the_uninterrupted_result(synth, tmp_path, monkeypatch):
    params = dict(FAST, epochs=3, validation=0.25, patience=None)
    straight = tb.get_model("two_tower")(**params).fit(synth)
    calls = {"n": 0}
    real = estimator.hit_rate

    def dies_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(estimator, "hit_rate", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        tb.get_model("two_tower")(checkpoint_dir=str(tmp_path), **params).fit(synth)
    monkeypatch.setattr(estimator, "hit_rate", real)
    resumed = tb.get_model("two_tower")(checkpoint_dir=str(tmp_path), resume=True, **params).fit(synth)
    assert len(resumed.history_) == 3
    np.testing.assert_allclose(resumed.item_factors_, straight.item_factors_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(resumed.user_factors_, straight.user_factors_, rtol=1e-5, atol=1e-6)


def test_device_auto_trains_here():
    # "auto" is CUDA when present, else CPU; either way the model trains and serves from CPU arrays
    rows = [(f"u{u}", f"i{(u + k) % 10}") for u in range(12) for k in range(4)]
    data = tb.Interactions.from_frame(pd.DataFrame(rows, columns=["user", "item"]))
    model = tb.get_model("two_tower")(factors=4, epochs=1, validation=0.0, device="auto").fit(data)
    assert model.item_factors_.dtype == np.float32


def test_saved_model_serves_new_items_and_empty_histories(synth, tmp_path):
    model = tb.get_model("two_tower")(pooling="attention", **FAST).fit(synth)
    model.save(tmp_path / "tt")
    loaded = tb.load_model(str(tmp_path / "tt"))
    feats = synth.item_features.iloc[:4]
    np.testing.assert_allclose(loaded.encode_items(feats), model.encode_items(feats), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.encode_history([1, 2, 3]), model.encode_history([1, 2, 3]), rtol=1e-5, atol=1e-6)
    recs = loaded.recommend_for_history(["nobody-knows-this"], k=3)
    assert len(recs.items_of(0)) == 3 and "nobody-knows-this" in recs.warnings[0]


def test_validation_history_scores_anonymous_short_histories(synth, monkeypatch):
    seen_calls = []
    real = estimator.hit_rate

    def spy(scores, seen, target, k=20):
        seen_calls.append((np.array(scores), seen.copy()))
        return real(scores, seen, target, k)

    monkeypatch.setattr(estimator, "hit_rate", spy)
    model = tb.get_model("two_tower")(**dict(FAST, epochs=1, validation=0.25, validation_history=2)).fit(synth)
    scores, seen = seen_calls[-1]
    assert scores.shape[0] == seen.shape[0] > 0
    for r in range(seen.shape[0]):
        row = seen.indices[seen.indptr[r] : seen.indptr[r + 1]]
        pairs = np.array([(a, b) for j, a in enumerate(row) for b in row[j + 1 :]], np.int64)
        # each validation row is the user tower of an anonymous person with two of their items
        # (as encode_history computes it, checked on the first row)
        anon = np.full(len(pairs), -1)
        vecs = model._run_user_tower(
            model._net, torch.device("cpu"), pairs, np.ones(pairs.shape, bool), anon, np.zeros(len(pairs)), None,
            model.item_factors_,
        )  # fmt: skip
        close = np.abs(vecs @ model.item_factors_.T - scores[r]).max(axis=1) < 1e-5
        assert close.any()
        if r == 0:
            np.testing.assert_allclose(vecs[close][0], model.encode_history(pairs[close][0]), atol=1e-6)
    with pytest.raises(ConfigError, match="validation_history"):
        tb.get_model("two_tower")(validation_history=0).fit(synth)


def _popularity_only_data(seed: int = 0) -> tuple[tb.Interactions, np.ndarray]:
    """Every person draws items from one Zipf law, independent of who they are: the best
    ranking for anyone is by popularity, which a learned item bias must pick up."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, 41) ** 1.2
    rows = [(f"u{u}", f"i{i}") for u in range(300) for i in rng.choice(40, size=8, replace=False, p=p / p.sum())]
    data = tb.Interactions.from_frame(pd.DataFrame(rows, columns=["user", "item"]))
    return data, np.bincount(data.item_idx, minlength=data.n_items)


def _rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1])


def test_item_bias_learns_popularity_and_is_served():
    from tastebud.index.vectors import factor_view

    data, counts = _popularity_only_data()
    params = dict(factors=8, epochs=5, batch_size=128, learning_rate=0.02, validation=0.0, device="cpu")
    model = tb.get_model("two_tower")(item_bias=True, **params).fit(data)
    c = model.item_bias_
    assert c.shape == (data.n_items,) and np.isfinite(c).all()
    assert _rank_corr(c, counts) > 0.7  # the learned bias orders items by how often they were seen
    # served scores are <u, v> + c, for known people and for live histories
    np.testing.assert_allclose(
        model._score(np.arange(5), None), model.user_factors_[:5] @ model.item_factors_.T + c, rtol=1e-5, atol=1e-6
    )
    rare = np.sort(np.argsort(counts)[:3])
    scores = model._score_history(rare, np.ones(3))
    np.testing.assert_allclose(scores, model.item_factors_ @ model.encode_history(rare) + c, rtol=1e-5, atol=1e-6)
    # a person with three rare items is still shown mostly popular ones (the law is shared)
    scores[rare] = -np.inf
    assert len(set(np.argsort(-counts)[:10]) & set(np.argsort(-scores)[:10])) >= 6
    # the index serves it with the bias folded in as one extra dimension
    view = factor_view(model)
    assert view is not None and "item_bias_" in view.source
    # without the option: no bias, plain cosine scores
    plain = tb.get_model("two_tower")(**params).fit(data)
    assert plain.item_bias_ is None and plain._net.item_tower.bias is None
    np.testing.assert_allclose(
        plain._score(np.arange(5), None), plain.user_factors_[:5] @ plain.item_factors_.T, rtol=1e-6
    )


def test_item_bias_enters_the_loss_as_cosine_plus_bias(synth, monkeypatch):
    """The softmax sees (<u, v_j> + c_j) / temperature: u gains a 1, v (and extra negatives) their c."""
    calls = []
    real = estimator.sampled_softmax_loss

    def spy(u, v, items, logq, temperature, neg_v=None, neg_items=None, logq_neg=None):
        calls.append((u.detach(), v.detach(), items, neg_v.detach(), neg_items))
        return real(u, v, items, logq, temperature, neg_v, neg_items, logq_neg)

    monkeypatch.setattr(estimator, "sampled_softmax_loss", spy)
    model = tb.get_model("two_tower")(item_bias=True, negatives=5, **dict(FAST, epochs=1)).fit(synth)
    u, v, items, nv, neg = calls[-1]
    c = model._net.item_tower.bias.weight.detach()[:, 0]
    assert u.shape[1] == v.shape[1] == nv.shape[1] == 9  # 8 factors + the bias slot
    np.testing.assert_allclose(u[:, -1].numpy(), 1.0)
    np.testing.assert_allclose(torch.linalg.norm(u[:, :-1], dim=1).numpy(), 1.0, rtol=1e-5)
    # the last step's bias was applied before the optimiser moved it: compare up to one Adam step
    np.testing.assert_allclose(v[:, -1].numpy(), c[items].numpy(), atol=5 * model.learning_rate)
    np.testing.assert_allclose(nv[:, -1].numpy(), c[neg].numpy(), atol=5 * model.learning_rate)
    assert float(c.abs().max()) > 0  # it trained


def test_item_bias_round_trips_and_unseen_items_get_the_lowest(synth, tmp_path):
    model = tb.get_model("two_tower")(item_bias=True, **dict(FAST, validation=0.25)).fit(synth)
    raw = model._net.item_tower.bias.weight.detach().numpy()[:, 0]
    np.testing.assert_array_equal(model.item_bias_[model.item_counts_ > 0], raw[model.item_counts_ > 0])
    model.item_counts_[[3, 7]] = 0  # as if items 3 and 7 had no training interactions
    c = model._learned_bias(model._net)
    assert c[3] == c[7] == np.delete(raw, [3, 7]).min()
    model.item_counts_[[3, 7]] = 1
    model.save(tmp_path / "tt")
    loaded = tb.load_model(str(tmp_path / "tt"))
    np.testing.assert_array_equal(loaded.item_bias_, model.item_bias_)
    h = np.array([1, 2])
    np.testing.assert_allclose(
        loaded._score_history(h, np.ones(2)), model._score_history(h, np.ones(2)), rtol=1e-5, atol=1e-6
    )


def test_cosine_schedule_anneals_the_learning_rate_step_by_step(synth, monkeypatch):
    seen_lr: list[float] = []
    real_step = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        seen_lr.append(self.param_groups[0]["lr"])
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    params = dict(FAST, epochs=3, validation=0.0, learning_rate=0.01)
    model = tb.get_model("two_tower")(lr_schedule="cosine", **params).fit(synth)
    per_epoch = -(-model.user_items_.nnz // params["batch_size"])
    t = np.arange(3 * per_epoch)
    np.testing.assert_allclose(seen_lr, 0.005 * (1 + np.cos(np.pi * t / len(t))), rtol=1e-12)
    seen_lr.clear()
    tb.get_model("two_tower")(**params).fit(synth)
    assert seen_lr == [0.01] * len(t)  # the default keeps it constant
    with pytest.raises(ConfigError, match="lr_schedule"):
        tb.get_model("two_tower")(lr_schedule="step").fit(synth)
