"""Mult-VAE and RecVAE: the papers' pieces against their formulas, learning on planted structure
under strong generalisation, fold-in, validation users, persistence and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tastebud as tb  # noqa: E402
from tastebud.core.errors import ConfigError, DataError  # noqa: E402
from tastebud.data.splits import strong_generalization  # noqa: E402
from tastebud.data.synthetic import generate  # noqa: E402
from tastebud.eval.strong import evaluate_fold_in  # noqa: E402
from tastebud.models import _vae  # noqa: E402

FAST = {
    "mult_vae": dict(factors=16, hidden=64, epochs=10, learning_rate=3e-3, anneal_steps=100, batch_size=50),
    "recvae": dict(factors=16, hidden=64, epochs=6, encoder_epochs=2, learning_rate=3e-3, batch_size=50),
}


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the CI machine is small and shared
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def planted():
    """Implicit data drawn from latent tastes, split by users (Liang's protocol)."""
    data = generate(n_users=300, n_items=100, n_interactions=6000, explicit=False, random_state=0)
    return strong_generalization(data, heldout_users=40, random_state=0)


def make(name: str, **extra):
    return tb.get_model(name)(**{**FAST[name], "validation": 0.0, "device": "cpu", **extra})


# ------------------------------------------------------------------ the papers' pieces


def test_mult_vae_architecture_is_the_papers():
    defaults = tb.get_model("mult_vae")()
    assert (defaults.hidden, defaults.factors, defaults.dropout, defaults.anneal_cap) == (600, 200, 0.5, 0.2)
    net = _vae.nets()["mult_vae"](50, defaults.hidden, defaults.factors)
    layers = [(m.in_features, m.out_features) for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert layers == [(50, 600), (600, 400), (200, 600), (600, 50)]  # [I -> 600 -> 200 (mu, logvar) -> 600 -> I]


def test_beta_anneals_per_update_up_to_the_cap():
    model = tb.get_model("mult_vae")(anneal_cap=0.2, anneal_steps=1000)
    assert [model.beta(t) for t in (0, 100, 200, 5000)] == [0.0, 0.1, 0.2, 0.2]
    assert tb.get_model("mult_vae")(anneal_cap=0.3, anneal_steps=0).beta(0) == 0.3


def test_losses_match_their_formulas():
    g = torch.Generator().manual_seed(0)
    logits, x = torch.randn(3, 5, generator=g), torch.tensor([[1.0, 0, 2, 0, 0], [0, 0, 0, 0, 1], [1, 1, 1, 1, 1]])
    mu, logvar = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    p = torch.softmax(logits, dim=-1)
    torch.testing.assert_close(_vae.multinomial_ll(logits, x), (x * p.log()).sum(-1))
    var = logvar.exp()
    kl = 0.5 * (var + mu**2 - 1 - logvar).sum(-1)  # KL(N(mu, var) || N(0, 1)) per dimension, summed
    torch.testing.assert_close(_vae.gaussian_kl(mu, logvar), kl)
    z = torch.randn(3, 4, generator=g)
    want = -0.5 * math.log(2 * math.pi) - 0.5 * logvar - (z - mu) ** 2 / (2 * var)
    torch.testing.assert_close(_vae.log_normal(z, mu, logvar), want)


def test_composite_prior_is_the_three_component_mixture():
    torch.manual_seed(0)
    net = _vae.nets()["recvae"](7, 6, 3)
    x = (torch.rand(4, 7) < 0.5).float()
    z = torch.randn(4, 3)
    with torch.no_grad():
        old_mu, old_logvar = net.old_encoder(x)
        got = net.log_prior(x, z)

    def pdf(v, m, lv):
        return torch.exp(-0.5 * (v - m) ** 2 / torch.exp(lv)) / torch.sqrt(2 * math.pi * torch.exp(lv))

    w = _vae.PRIOR_WEIGHTS
    zero = torch.zeros_like(z)
    mixture = w[0] * pdf(z, zero, zero) + w[1] * pdf(z, old_mu, old_logvar) + w[2] * pdf(z, zero, zero + 10.0)
    torch.testing.assert_close(got, mixture.log(), rtol=1e-5, atol=1e-5)
    assert sum(w) == pytest.approx(1.0)


def test_recvae_encoder_has_five_layer_normed_skip_layers():
    net = _vae.nets()["recvae"](30, 12, 4)
    assert len(net.encoder.dense) == 5 and all(n.eps == 0.1 for n in net.encoder.norms)
    assert not any(p.requires_grad for p in net.old_encoder.parameters())


def test_recvae_alternates_encoder_and_decoder(planted):
    """After an epoch the prior holds the encoder as it left its passes; the decoder pass that
    follows must not move the encoder, so the two are still equal at the end."""
    model = make("recvae", epochs=1).fit(planted.train)
    enc, old = model._net.encoder.state_dict(), model._net.old_encoder.state_dict()
    for key in enc:
        torch.testing.assert_close(enc[key], old[key], rtol=0, atol=0)
    fresh = _vae.nets()["recvae"](planted.train.n_items, 64, 16)
    assert not torch.equal(fresh.decoder.weight, model._net.decoder.weight)


# ------------------------------------------------------------------ learning


@pytest.mark.parametrize("name", ["mult_vae", "recvae"])
def test_learns_planted_structure_under_strong_generalisation(name, planted):
    metrics = ["ndcg@10", "recall_capped@10"]
    popular = evaluate_fold_in(tb.get_model("popular")().fit(planted.train), planted.test, metrics)
    vae = evaluate_fold_in(make(name).fit(planted.train), planted.test, metrics)
    assert vae["users"] == popular["users"] == 40
    assert vae["ndcg@10"] > popular["ndcg@10"] + 0.05
    assert vae["recall_capped@10"] > popular["recall_capped@10"]


@pytest.mark.parametrize("name", ["mult_vae", "recvae"])
def test_validation_users_pick_the_best_epoch(name, planted):
    model = make(name, validation=0.15, epochs=4).fit(planted.train)
    metrics = [row["metric"] for row in model.history_]
    assert len(metrics) == 4 and all(0 < m <= 1 for m in metrics)
    assert model.best_epoch_ == int(np.argmax(metrics)) + 1
    assert model.validation_users_ == round(0.15 * 220) == 33  # 15% of the 220 training users


# ------------------------------------------------------------------ fold-in and persistence


@pytest.fixture(scope="module", params=["mult_vae", "recvae"])
def fitted(request, synth_implicit):
    return tb.get_model(request.param)(**tb.get_model(request.param).fast_params).fit(synth_implicit)


def test_fold_in_equals_scoring_the_same_history(fitted, synth_implicit):
    for user in synth_implicit.users.ids[:5]:
        row = synth_implicit.matrix[synth_implicit.users.index([user])[0]]
        history = synth_implicit.items.to_ids(row.indices)
        known = fitted.recommend([user], k=10)
        folded = fitted.recommend_for_history(history, row.data, k=10)
        again = fitted.recommend_for_history(history, row.data, k=10)
        assert folded.items_of(0) == known.items_of(0) == again.items_of(0)
        np.testing.assert_allclose(folded.scores_of(0), known.scores_of(0), rtol=1e-5, atol=1e-5)
        assert folded.scores_of(0) == again.scores_of(0)


def test_save_load_round_trip(fitted, synth_implicit, tmp_path):
    fitted.save(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert "weights.safetensors" in files and not any(f.endswith((".pkl", ".pt")) for f in files)
    loaded = tb.load_model(tmp_path / "m")
    users = list(synth_implicit.users.ids[:9])
    np.testing.assert_array_equal(loaded.score(users), fitted.score(users))
    history = list(synth_implicit.items.ids[:4])
    assert loaded.recommend_for_history(history, k=5).items_of(0) == fitted.recommend_for_history(
        history, k=5
    ).items_of(0)
    if fitted.name == "recvae":  # the prior's copy of the encoder is training state, not saved
        from safetensors.numpy import load

        keys = load((tmp_path / "m" / "weights.safetensors").read_bytes())
        assert keys and not any(k.startswith("old_encoder") for k in keys)


def test_training_is_deterministic_under_the_seed(synth_implicit):
    for name in ("mult_vae", "recvae"):
        cls = tb.get_model(name)
        users = list(synth_implicit.users.ids[:6])
        a = cls(**cls.fast_params).fit(synth_implicit).score(users)
        b = cls(**cls.fast_params).fit(synth_implicit).score(users)
        c = cls(**{**cls.fast_params, "random_state": 1}).fit(synth_implicit).score(users)
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


# ------------------------------------------------------------------ bad input


def test_bad_parameters_and_histories(synth_implicit):
    with pytest.raises(ConfigError, match="dropout"):
        tb.get_model("mult_vae")(dropout=1.0).fit(synth_implicit)
    with pytest.raises(ConfigError, match="encoder_epochs"):
        tb.get_model("recvae")(encoder_epochs=0).fit(synth_implicit)
    with pytest.raises(ConfigError, match="anneal_steps"):
        tb.get_model("mult_vae")(anneal_steps=-1).fit(synth_implicit)
    tiny = generate(n_users=6, n_items=10, n_interactions=20, explicit=False, random_state=0)
    with pytest.raises(DataError, match="validation"):
        tb.get_model("recvae")(validation=0.9, device="cpu").fit(tiny)
    signed = tb.Interactions.from_frame(
        synth_implicit.to_frame().assign(value=lambda f: np.where(f.index % 2, 1.0, -1.0)), rating="value"
    )
    with pytest.raises(DataError, match="must be >= 0"):
        tb.get_model("recvae")(**tb.get_model("recvae").fast_params).fit(signed)
    model = tb.get_model("mult_vae")(**tb.get_model("mult_vae").fast_params).fit(synth_implicit)
    with pytest.raises(DataError, match=">= 0"):
        model.recommend_for_history(list(synth_implicit.items.ids[:2]), [1.0, -1.0])
