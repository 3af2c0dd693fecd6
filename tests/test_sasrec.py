"""SASRec: sequences in time order, causal attention, learns a known next-item rule, bad histories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

import tastebud as tb  # noqa: E402
from tastebud.core.errors import ConfigError, DataError  # noqa: E402
from tastebud.data.interactions import Interactions  # noqa: E402
from tastebud.models.sasrec import SASRec, _ordered_sequences, _pad_left, _SASRecNet, _trim  # noqa: E402

N_ITEMS = 24


@pytest.fixture(autouse=True)
def one_thread():
    # tiny models: intra-op threads only add barrier waits on a shared machine
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def cyclic(n_users: int = 60, length: int = 10, seed: int = 0) -> Interactions:
    """Every user walks the cycle i -> i + 1 (mod N_ITEMS) from a random start; rows shuffled."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start = int(rng.integers(N_ITEMS))
        for t in range(length):
            rows.append((f"u{u}", f"i{(start + t) % N_ITEMS}", 1.0, 1000 + 10 * t))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "ts"]).sample(frac=1.0, random_state=seed)
    return Interactions.from_frame(frame, "user", "item", "rating", "ts")


def nxt(item: str, step: int = 1) -> str:
    return f"i{(int(item[1:]) + step) % N_ITEMS}"


FAST = dict(factors=16, transformer_blocks=1, maxlen=8, dropout=0.0, epochs=40, batch_size=32, learning_rate=0.01, device="cpu")


@pytest.fixture(scope="module")
def cyc():
    return cyclic()


@pytest.fixture(scope="module")
def ce_model(cyc):
    torch.set_num_threads(1)
    return SASRec(**FAST).fit(cyc)


def test_sequences_follow_time_then_input_order():
    frame = pd.DataFrame(
        {"user": ["a", "b", "a", "a", "b", "a"], "item": ["x", "y", "y", "z", "x", "w"], "ts": [5, 1, 3, 3, 2, 9]}
    )
    data = Interactions.from_frame(frame, "user", "item", None, "ts")
    indptr, items = _ordered_sequences(data)
    ids = data.items.to_ids(items).tolist()
    a, b = data.users.index(["a", "b"], "user")
    # a: y(3) and z(3) tie -> input order y then z; then x(5), w(9)
    assert ids[indptr[a] : indptr[a + 1]] == ["y", "z", "x", "w"]
    assert ids[indptr[b] : indptr[b + 1]] == ["y", "x"]


def test_pad_left_and_trim():
    padded = _pad_left([np.array([4, 5, 6]), np.array([], np.int64), np.array([1, 2, 3, 4, 5, 6, 7])], 5)
    np.testing.assert_array_equal(padded, [[0, 0, 5, 6, 7], [0, 0, 0, 0, 0], [4, 5, 6, 7, 8]])
    np.testing.assert_array_equal(_trim(padded[:1]), [[5, 6, 7]])
    assert _trim(padded[1:2]).shape == (1, 1)


def test_attention_is_causal_and_ignores_padding():
    torch.manual_seed(0)
    net = _SASRecNet(n_items=10, d=8, blocks=2, heads=2, maxlen=6, dropout=0.0).eval()
    seq = torch.tensor([[0, 0, 3, 4, 5, 6]])
    changed = torch.tensor([[0, 0, 3, 4, 5, 9]])  # only the last item differs
    with torch.no_grad():
        a, b = net(seq), net(changed)
        # earlier positions never see the future
        torch.testing.assert_close(a[:, :5], b[:, :5])
        assert not torch.allclose(a[:, 5], b[:, 5])
        # cutting the all-padding columns changes nothing (positions are counted from the end)
        torch.testing.assert_close(net(seq[:, 2:]), a[:, 2:], rtol=1e-5, atol=1e-6)
        # a different padding token count in the same batch does not leak into a row
        batch = net(torch.tensor([[0, 0, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6]]))
        torch.testing.assert_close(batch[:1, 2:], a[:, 2:], rtol=1e-5, atol=1e-6)
        assert torch.isfinite(net(torch.zeros(1, 6, dtype=torch.long))).all()


def test_output_layer_is_the_item_embedding(ce_model, cyc):
    net = ce_model._net
    inp = torch.from_numpy(_pad_left([np.array([0, 1, 2])], ce_model.maxlen))
    with torch.no_grad():
        expected = (net(inp)[0, -1] @ net.item_emb.weight[1:].T).numpy()
    got = ce_model._score_sequences([np.array([0, 1, 2])], None)[0]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_learns_the_next_item(ce_model, cyc):
    hits = 0
    for start in range(N_ITEMS):
        session = [f"i{(start + t) % N_ITEMS}" for t in range(4)]
        top = ce_model.recommend_for_history(session, k=1).items_of(0)[0]
        hits += top == nxt(session[-1])
    assert hits >= N_ITEMS - 1
    # known users: their training sequence is read, the next item of their walk comes first
    users = cyc.users.ids[:10].tolist()
    recs = ce_model.recommend(users, k=1)
    frame = cyc.to_frame()
    for row, user in enumerate(users):
        last = frame[frame["user"] == user].sort_values("timestamp")["item"].iloc[-1]
        assert recs.items_of(row) == [nxt(last)]


@pytest.mark.parametrize("loss", ["bce", "sampled_softmax"])
def test_other_losses_learn_too(cyc, loss):
    model = SASRec(**dict(FAST, loss=loss, negatives=8, epochs=60)).fit(cyc)
    hits = 0
    for s in range(N_ITEMS):
        session = [nxt(f"i{s}", j) for j in range(3)]
        hits += nxt(session[-1]) in model.recommend_for_history(session, k=3).items_of(0)
    assert hits >= N_ITEMS - 1, hits


def test_bad_histories_are_handled_and_reported(ce_model, cyc):
    pop = ce_model.popularity_
    empty = ce_model.recommend_for_history([], k=3)
    assert "empty history" in empty.warnings[0]
    assert set(pop[cyc.items.index(empty.items_of(0), "item")]) <= set(np.sort(pop)[-3:])
    unknown = ce_model.recommend_for_history(["nope", "never"], k=3)
    assert any("unknown" in w for w in unknown.warnings) and any("empty history" in w for w in unknown.warnings)
    assert unknown.items_of(0) == empty.items_of(0)
    single = ce_model.recommend_for_history(["i5"], k=2)
    assert single.items_of(0)[0] == "i6" and not single.warnings
    long = [f"i{t % N_ITEMS}" for t in range(50)]  # 50 > maxlen 8
    got = ce_model.recommend_for_history(long, k=3, exclude_seen=False)
    assert any("last 8" in w for w in got.warnings)
    tail = ce_model.recommend_for_history(long[-8:], k=3, exclude_seen=False)
    assert got.items_of(0) == tail.items_of(0)
    assert got.items_of(0)[0] == nxt(long[-1])
    mixed = ce_model.recommend_for_history(["i3", "zzz", "i4"], k=1)
    assert mixed.items_of(0) == ["i5"] and "zzz" in mixed.warnings[0]


def test_save_load_round_trip(ce_model, cyc, tmp_path):
    ce_model.save(tmp_path / "m")
    loaded = tb.load_model(str(tmp_path / "m"))
    users = cyc.users.ids[:8].tolist()
    np.testing.assert_array_equal(loaded.score(users), ce_model.score(users))
    assert loaded.recommend_for_history(["i1", "i2"], k=4).items_of(0) == ce_model.recommend_for_history(
        ["i1", "i2"], k=4
    ).items_of(0)
    assert not any(p.suffix == ".pkl" for p in (tmp_path / "m").iterdir())


def test_deterministic_and_resumable(cyc, tmp_path):
    params = dict(FAST, epochs=4, dropout=0.2)
    a = SASRec(**params).fit(cyc)
    b = SASRec(**params).fit(cyc)
    np.testing.assert_array_equal(a.score(cyc.users.ids[:5].tolist()), b.score(cyc.users.ids[:5].tolist()))
    # two epochs with checkpoints, then resumed to four: same weights as four in one go
    SASRec(**dict(params, epochs=2, checkpoint_dir=str(tmp_path))).fit(cyc)
    c = SASRec(**dict(params, checkpoint_dir=str(tmp_path), resume=True)).fit(cyc)
    np.testing.assert_array_equal(a.score(cyc.users.ids[:5].tolist()), c.score(cyc.users.ids[:5].tolist()))
    assert [h["epoch"] for h in c.history_] == [1, 2, 3, 4]


def test_early_stopping_on_the_last_training_item(cyc):
    model = SASRec(**dict(FAST, epochs=30, patience=2)).fit(cyc)
    metrics = [h["metric"] for h in model.history_]
    assert all(m is not None for m in metrics)
    assert model.best_epoch_ == int(np.argmax(metrics)) + 1
    assert max(metrics) > 0.5  # the held-out last item follows the rule, so it is found
    # the held-out item is read back as input at recommendation time
    user = cyc.users.ids[0].item()
    frame = cyc.to_frame()
    last = frame[frame["user"] == user].sort_values("timestamp")["item"].iloc[-1]
    assert model.recommend([user], k=1).items_of(0) == [nxt(last)]


def test_config_and_data_errors(cyc):
    with pytest.raises(ConfigError, match="heads"):
        SASRec(factors=10, heads=3).fit(cyc)
    with pytest.raises(ConfigError, match="dropout"):
        SASRec(dropout=1.0).fit(cyc)
    with pytest.raises(ConfigError, match="loss"):
        SASRec(loss="mse").fit(cyc)
    with pytest.raises(ConfigError, match="maxlen"):
        SASRec(maxlen=0).fit(cyc)
    with pytest.raises(ConfigError, match="checkpoint_dir"):
        SASRec(resume=True).fit(cyc)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            SASRec(device="cuda").fit(cyc)
    singles = Interactions.from_frame(pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"]}), "user", "item")
    with pytest.raises(DataError, match="two or more"):
        SASRec(**FAST).fit(singles)
    assert SASRec().get_params()["loss"] == "ce" and SASRec().get_params()["device"] == "auto"


def test_early_stopping_is_the_default(cyc):
    assert SASRec().patience == 5
    model = SASRec(**FAST).fit(cyc)  # 40 epochs at most
    metrics = [h["metric"] for h in model.history_]
    assert all(m is not None for m in metrics) and model.best_epoch_ == int(np.argmax(metrics)) + 1
    assert len(metrics) < FAST["epochs"] and len(metrics) - model.best_epoch_ == 5  # stopped 5 epochs after the best
    off = SASRec(**dict(FAST, epochs=3, patience=None)).fit(cyc)
    assert [h["metric"] for h in off.history_] == [None, None, None]
