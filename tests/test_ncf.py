"""NCF (GMF, MLP, NeuMF): scoring shortcuts against brute force, the NeuMF fusion, the sampler,
learning on planted structure, divergence, checkpoints and resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

import tastebud as tb  # noqa: E402
from tastebud.core.errors import ConfigError, TrainingError  # noqa: E402
from tastebud.models import ncf  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the CI machine is small and shared
    yield
    torch.set_num_threads(old)


def blocks(n_users: int = 40, n_items: int = 40, p: float = 0.5, seed: int = 0) -> tb.Interactions:
    """Two communities: users 0..19 use items 0..19, the others items 20..39."""
    rng = np.random.default_rng(seed)
    rows = []
    half_u, half_i = n_users // 2, n_items // 2
    for u in range(n_users):
        lo = 0 if u < half_u else half_i
        for i in range(lo, lo + half_i):
            if rng.random() < p:
                rows.append((f"u{u}", f"i{i}"))
    return tb.Interactions.from_frame(pd.DataFrame(rows, columns=["user", "item"]))


@pytest.mark.parametrize("kind", ["gmf", "mlp", "neumf"])
def test_score_block_equals_pairwise_forward(kind):
    torch.manual_seed(0)
    net = ncf._nets()[kind](7, 11, 4, 3)
    for p in net.parameters():  # away from the tiny init so that ReLUs are not all zero
        torch.nn.init.normal_(p, std=0.5)
    u = torch.tensor([0, 3, 6])
    items = torch.tensor([0, 2, 5, 10])
    with torch.no_grad():
        block = net.score_block(u, items)
        brute = net(u.repeat_interleave(len(items)), items.repeat(len(u))).reshape(len(u), len(items))
    torch.testing.assert_close(block, brute, rtol=1e-5, atol=1e-5)


def test_mlp_tower_shape_follows_the_paper():
    net = ncf._nets()["mlp"](5, 5, 8, 3)
    widths = [m.out_features for m in net.tower if isinstance(m, torch.nn.Linear)]
    assert net.user.embedding_dim == 32 and widths == [32, 16, 8]  # 64 -> 32 -> 16 -> 8


def test_neumf_from_pretrained_is_the_alpha_mix():
    nets = ncf._nets()
    torch.manual_seed(1)
    gmf, mlp, neu = nets["gmf"](6, 9, 4, 2), nets["mlp"](6, 9, 4, 2), nets["neumf"](6, 9, 4, 2)
    for m in (gmf, mlp):
        for p in m.parameters():
            torch.nn.init.normal_(p, std=0.3)
    neu.init_from(gmf, mlp, 0.3)
    u, i = torch.arange(6).repeat(9), torch.arange(9).repeat_interleave(6)
    with torch.no_grad():
        torch.testing.assert_close(neu(u, i), 0.3 * gmf(u, i) + 0.7 * mlp(u, i), rtol=1e-5, atol=1e-6)


def test_negative_sampler_avoids_positives_and_is_uniform():
    m = sp.csr_matrix(np.array([[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]], np.float32))
    rng = np.random.default_rng(0)
    neg = ncf.sample_negatives(rng, np.array([0] * 3000 + [1] * 3000), m, 2)
    assert neg.shape == (6000, 2)
    assert not np.isin(neg[:3000], [0, 1]).any() and not (neg[3000:] == 5).any()
    counts = np.bincount(neg[:3000].ravel(), minlength=6)[2:]
    assert counts.min() > 0.9 * 1500 and counts.max() < 1.1 * 1500  # 4 free items, 6000 draws


def test_negative_sampler_draws_what_reprobing_every_draw_each_round_draws():
    """Re-probing only the redrawn entries is a speed-up, not a new sampler: the same draws, in order."""
    dense = (np.random.default_rng(3).random((40, 30)) < 0.5).astype(np.float32)
    dense[0, :29] = 1.0  # a user who saw almost everything: several rounds, one draw left colliding
    m = sp.csr_matrix(dense)
    users = np.repeat(np.arange(40), 7)

    def reprobe_all(rng, n, rounds=20):
        keys = np.repeat(np.arange(40, dtype=np.int64), np.diff(m.indptr)) * 30 + m.indices
        u = np.repeat(users, n)
        neg = rng.integers(0, 30, size=len(u))
        for _ in range(rounds):
            probe = u * 30 + neg
            pos = np.searchsorted(keys, probe)
            hit = (pos < len(keys)) & (keys[np.minimum(pos, len(keys) - 1)] == probe)
            if not hit.any():
                break
            neg[hit] = rng.integers(0, 30, size=int(hit.sum()))
        return neg.reshape(-1, n)

    got = ncf.sample_negatives(np.random.default_rng(5), users, m, 3)
    np.testing.assert_array_equal(got, reprobe_all(np.random.default_rng(5), 3))


def test_holdout_removes_one_item_per_chosen_user():
    m = blocks().matrix
    rest, users, items = ncf.holdout(m, 0.5, seed=0)
    assert len(users) == 20 and rest.nnz == m.nnz - 20
    assert all(m[u, i] > 0 and rest[u, i] == 0 for u, i in zip(users, items, strict=True))


@pytest.mark.parametrize("kind,loss", [("gmf", "log"), ("mlp", "log"), ("neumf", "bpr")])
def test_learns_planted_communities(kind, loss):
    data = blocks()
    model = tb.get_model(kind)(
        factors=8, layers=2, epochs=15, learning_rate=0.02, batch_size=256, loss=loss, validation=0.0, device="cpu"
    )
    model.fit(data)
    recs = model.recommend([f"u{u}" for u in range(0, 40, 3)], k=5)
    own = [all(int(i[1:]) // 20 == int(u[1:]) // 20 for i in items) for u, items, _ in recs]
    assert np.mean(own) >= 0.9
    assert model.history_[-1]["loss"] < model.history_[0]["loss"]


def test_pretrained_neumf_trains_all_three_stages():
    model = tb.get_model("neumf")(
        factors=4, layers=2, epochs=2, pretrain=True, learning_rate=0.01, batch_size=512, validation=0.0, device="cpu"
    )
    model.fit(blocks())
    assert [h["stage"] for h in model.history_] == ["gmf", "gmf", "mlp", "mlp", "neumf", "neumf"]


def test_validation_and_early_stopping_record_a_metric():
    model = tb.get_model("gmf")(
        factors=4, epochs=3, validation=0.3, patience=1, learning_rate=0.01, batch_size=512, device="cpu"
    )
    model.fit(blocks())
    assert all(0.0 <= h["metric"] <= 1.0 for h in model.history_)
    assert model.best_epoch_ is not None and model.history_[0]["examples_per_s"] > 0


def test_nan_loss_stops_with_a_message():
    with pytest.raises(TrainingError, match="learning_rate"):
        tb.get_model("gmf")(factors=4, epochs=3, learning_rate=1e30, batch_size=64, validation=0.0, device="cpu").fit(
            blocks()
        )


def test_bad_parameters_name_themselves():
    data = blocks()
    with pytest.raises(ConfigError, match="pretrain"):
        tb.get_model("gmf")(pretrain=True).fit(data)
    with pytest.raises(ConfigError, match="gmf_weight"):
        tb.get_model("neumf")(gmf_weight=1.5).fit(data)
    with pytest.raises(ConfigError, match="negatives"):
        tb.get_model("mlp")(negatives=0).fit(data)
    with pytest.raises(ConfigError, match="loss"):
        tb.get_model("mlp")(loss="hinge").fit(data)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            tb.get_model("gmf")(device="cuda").fit(data)


def test_kill_and_resume_gives_the_uninterrupted_result(tmp_path, monkeypatch):
    data = blocks()
    params = dict(
        factors=4, layers=2, epochs=3, learning_rate=0.01, batch_size=256, validation=0.25, patience=None, device="cpu"
    )
    straight = tb.get_model("mlp")(**params).fit(data)

    calls = {"n": 0}
    real = ncf.hit_rate

    def dies_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ncf, "hit_rate", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        tb.get_model("mlp")(checkpoint_dir=str(tmp_path), **params).fit(data)
    monkeypatch.setattr(ncf, "hit_rate", real)
    resumed = tb.get_model("mlp")(checkpoint_dir=str(tmp_path), resume=True, **params).fit(data)
    assert len(resumed.history_) == 3
    users = list(data.users.ids)
    np.testing.assert_allclose(resumed.score(users), straight.score(users), rtol=1e-5, atol=1e-6)
