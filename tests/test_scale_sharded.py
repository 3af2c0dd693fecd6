"""Training from Parquet partitions with each worker holding only its share (tastebud.scale.sharded).

Fast tests need no Ray: the driver's scan keeps no events, a worker's share is exactly its
block of the in-memory matrix, and each share holds about 1/W of the events; the two-tower's
logQ streams over the global batch as in one process; feature tables
are read whole (items) or per block (users). The Ray tests fit iALS, NeuMF, the two-tower and
SASRec from the files and compare with the in-memory fits.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tastebud.core.errors import ConfigError, DataError, NotSupportedError
from tastebud.data.parquet import ParquetSource, read_interactions, write_interactions
from tastebud.data.splits import Split, holdout
from tastebud.data.synthetic import generate
from tastebud.eval.evaluate import evaluate_fitted
from tastebud.models.ials import ImplicitALS
from tastebud.scale.ray_ials import _slice_csr, row_blocks
from tastebud.scale.sharded import IALSShard, blocks, fit_parquet


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    """A train/test split written as Parquet files, and read back with the files' (sorted) vocabularies.

    Models fitted from the files index users and items in that vocabulary, so the split they are
    evaluated on (and the in-memory reference fit) must use it too.
    """
    data = generate(n_users=300, n_items=120, n_interactions=6000, explicit=False, features=False, random_state=3)
    split = holdout(data, fraction=0.2, random_state=0)
    root = tmp_path_factory.mktemp("events")
    write_interactions(split.train, root / "train", partitions=4)
    write_interactions(split.test, root / "test", partitions=1)
    train = read_interactions(root / "train")
    test = read_interactions(root / "test", users=train.users, items=train.items)
    return Split(train, test, name="parquet"), root / "train"


def test_scan_counts_without_keeping_events(events):
    split, path = events
    plan = ParquetSource(str(path)).scan()
    whole = read_interactions(path)
    assert plan.events == len(whole) == len(split.train)
    assert list(plan.users.ids) == list(whole.users.ids) and list(plan.items.ids) == list(whole.items.ids)
    np.testing.assert_array_equal(plan.user_events, np.bincount(whole.user_idx, minlength=whole.n_users))
    np.testing.assert_array_equal(plan.item_events, np.bincount(whole.item_idx, minlength=whole.n_items))
    assert plan.fingerprint().startswith("parquet-") and len(plan.files) == 4


@pytest.mark.parametrize("workers", [2, 3])
def test_each_shard_is_its_block_of_the_whole_matrix_and_holds_a_share(events, workers):
    """The blocks a worker reads from the files equal the in-memory Ray fit's slices, bit for bit."""
    _, path = events
    src = ParquetSource(str(path))
    plan = src.scan()
    whole = read_interactions(path, users=plan.users, items=plan.items)
    model = ImplicitALS(alpha=3.0, reg_exponent=1.0)
    cui = model._conf_matrix(whole.matrix)
    ciu = cui.T.tocsr()
    ur, ir = blocks(plan.user_events, workers), blocks(plan.item_events, workers)
    assert ur == row_blocks(cui.indptr, workers) and ir == row_blocks(ciu.indptr, workers)
    held = 0
    for (ulo, uhi), (ilo, ihi) in zip(ur, ir, strict=True):
        shard = IALSShard(src, plan, (ulo, uhi), (ilo, ihi), model.get_params())
        for got, (lo, hi), conf, n_cols in (
            (shard.user_block, (ulo, uhi), cui, whole.n_items),
            (shard.item_block, (ilo, ihi), ciu, whole.n_users),
        ):
            want = _slice_csr(conf, lo, hi)
            for a, b in zip(got[:3], want, strict=True):
                np.testing.assert_array_equal(a, b)
            np.testing.assert_array_equal(got[3], model._row_reg(conf, n_cols)[lo:hi])
        # a worker holds its own share of the events (in each orientation), not all of them
        n = plan.events
        assert shard.held["user_events"] <= 1.25 * n / workers and shard.held["item_events"] <= 1.25 * n / workers
        held += shard.held["user_events"]
        assert shard.seen.shape == (uhi - ulo, whole.n_items)
    assert held == plan.events


def test_fit_parquet_errors_are_clear(events, tmp_path):
    from tastebud.models.knn import ItemKNN

    with pytest.raises(NotSupportedError, match="ials"):
        fit_parquet(ItemKNN(), str(events[1]))
    with pytest.raises(DataError, match="no Parquet files|cannot open"):
        fit_parquet(ImplicitALS(), str(tmp_path / "nothing"))
    with pytest.raises(DataError, match="user_range"):
        read_interactions(events[1], user_range=(0, 5))


@pytest.fixture(scope="module")
def featured(tmp_path_factory):
    """A small split with timestamps and item / user features, all as Parquet files."""
    data = generate(n_users=240, n_items=100, n_interactions=5000, explicit=False, random_state=5)
    split = holdout(data, fraction=0.2, random_state=0)
    root = tmp_path_factory.mktemp("featured")
    write_interactions(split.train, root / "train", partitions=3)
    data.item_features.reset_index().to_parquet(root / "items.parquet")
    data.user_features.reset_index().to_parquet(root / "users.parquet")
    train = read_interactions(root / "train", time="timestamp")
    train.item_features, train.user_features = data.item_features, data.user_features
    write_interactions(split.test, root / "test", partitions=1)
    test = read_interactions(root / "test", users=train.users, items=train.items)
    src = ParquetSource(
        str(root / "train"),
        time="timestamp",
        item_features=str(root / "items.parquet"),
        user_features=str(root / "users.parquet"),
    )
    return Split(train, test, name="featured"), src, data


def test_logq_streams_over_the_global_batch_like_one_process(tmp_path):
    """With each rank on its own data, the gathered loss takes logQ from an estimator fed the
    gathered items of every global batch: the single-process estimator's stream (Yi et al. 2019).
    One gloo rank here, so the global batch is this rank's batch and the losses must match."""
    torch = pytest.importorskip("torch")
    import torch.distributed as dist

    from tastebud.models.two_tower import StreamingFrequency, sampled_softmax_loss
    from tastebud.scale.ray_train import Shares, gathered_softmax_loss

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    try:
        rng = np.random.default_rng(0)
        mine, reference = (StreamingFrequency(256, 0.1, 2, prior=4.0, seed=0) for _ in range(2))
        shares = Shares(0, 1)
        loss = gathered_softmax_loss(shares, mine)
        for _ in range(20):
            items = torch.as_tensor(rng.zipf(1.5, 16) % 40)
            u = torch.nn.functional.normalize(torch.randn(16, 4), dim=1)
            v = torch.nn.functional.normalize(torch.randn(16, 4), dim=1)
            shares.rows = shares.counts = [16]
            stale = torch.zeros(16)  # what a rank's own estimator would give: ignored
            reference.update(items.numpy())
            want = sampled_softmax_loss(
                u, v, items, torch.log(torch.as_tensor(reference.probability(items.numpy()))).float(), 0.1
            )
            assert float(loss(u, v, items, stale, 0.1)) == pytest.approx(float(want), rel=1e-5)
        np.testing.assert_array_equal(mine.B, reference.B)
    finally:
        dist.destroy_process_group()


def test_feature_tables_items_whole_users_per_block(featured, tmp_path):
    _, src, data = featured
    plan = src.scan()
    lo, hi = blocks(plan.user_events, 2)[1]
    items, users = src.read_features(plan, user_range=(lo, hi))
    assert sorted(items.index) == sorted(data.item_features.index)  # catalogue data: whole
    assert list(items.loc["i3", ["title", "year"]]) == list(data.item_features.loc["i3", ["title", "year"]])
    want = set(plan.users.ids[lo:hi].tolist())
    assert set(users.index) == want  # per block: only this worker's users
    assert (users["occupation"] == data.user_features.loc[users.index, "occupation"]).all()
    in_memory = ParquetSource(src.path, item_features=data.item_features, user_features=data.user_features)
    _, frame = in_memory.read_features(plan, user_range=(lo, hi))
    assert set(frame.index) == want
    with pytest.raises(ConfigError, match="DataFrame indexed by id or a Parquet path"):
        ParquetSource(src.path, user_features=42).read_features(plan)
    broken = str(tmp_path / "users_bad.parquet")
    data.user_features.reset_index().rename(columns={"user": "uid"}).to_parquet(broken)
    with pytest.raises(DataError, match="missing id column 'user'"):
        ParquetSource(src.path, user_features=broken).read_features(plan, user_range=(lo, hi))


def test_sasrec_blocks_balance_sequences_and_hold_a_share(featured):
    _, src, _ = featured
    plan = src.scan()
    ranges = blocks((plan.user_events >= 2).astype(np.int64), 2)
    held = [len(src.read(plan, user_range=r)) for r in ranges]
    assert ranges[0][0] == 0 and ranges[-1][1] == len(plan.users) and ranges[0][1] == ranges[1][0]
    assert sum(held) == plan.events and max(held) < 0.6 * plan.events
    seqs = [int((plan.user_events[a:b] >= 2).sum()) for a, b in ranges]
    assert abs(seqs[0] - seqs[1]) <= 1


# ---------------------------------------------------------------------------------- on Ray
@pytest.mark.slow
def test_ials_from_parquet_shards_equals_the_in_memory_fit(ray_local, events):
    """Exact row solves give the in-memory fit's factors exactly; the default conjugate-gradient
    sweeps agree to the quality (their last bits differ between processes)."""
    split, path = events
    params = {"factors": 8, "epochs": 4, "reg": 0.1, "alpha": 4.0, "random_state": 7}
    exact = {**params, "cg_steps": 0}
    local = ImplicitALS(**exact).fit(split.train)  # the same events, read into memory
    sharded = fit_parquet(ImplicitALS(**exact, engine="ray", workers=2), str(path))
    info = sharded._dist_info
    assert info["source"] == "parquet" and info["events"] == len(split.train)
    for h in info["held_events"]:  # each actor: about half the events in each orientation
        assert 0.3 * len(split.train) < h["user_events"] < 0.7 * len(split.train)
        assert 0.3 * len(split.train) < h["item_events"] < 0.7 * len(split.train)
    assert list(sharded.users_.ids) == list(local.users_.ids)
    assert np.abs(sharded.user_factors_ - local.user_factors_).max() < 1e-4
    assert np.abs(sharded.item_factors_ - local.item_factors_).max() < 1e-4
    assert (sharded.user_items_ != local.user_items_).nnz == 0  # the model excludes the same seen items
    users = list(split.train.users.ids[:5])
    assert [list(r) for r in sharded.recommend(users, k=5).items] == [
        list(r) for r in local.recommend(users, k=5).items
    ]
    local = ImplicitALS(**params).fit(split.train)
    sharded = fit_parquet(ImplicitALS(**params, engine="ray", workers=2), str(path))
    n_local = evaluate_fitted(local, split, 10)["ndcg@10"]
    assert abs(evaluate_fitted(sharded, split, 10)["ndcg@10"] - n_local) <= 0.02 * n_local


@pytest.mark.slow
def test_neumf_from_parquet_shards_trains_to_the_single_process_quality(ray_local, events):
    pytest.importorskip("torch")
    from tastebud.models.baseline import MostPopular
    from tastebud.models.ncf import NeuMF

    split, path = events
    params = dict(factors=8, epochs=4, batch_size=256, validation=0.0, device="cpu", random_state=0)
    local = NeuMF(**params).fit(split.train)
    sharded = fit_parquet(NeuMF(**params, engine="ray", workers=2), str(path))
    held = sharded._dist_info["held_events"]
    assert len(held) == 2 and sum(held) == len(split.train) and max(held) < 0.7 * len(split.train)
    n_local = evaluate_fitted(local, split, 10)["ndcg@10"]
    n_sharded = evaluate_fitted(sharded, split, 10)["ndcg@10"]
    n_pop = evaluate_fitted(MostPopular().fit(split.train), split, 10)["ndcg@10"]
    assert n_local > 1.05 * n_pop  # learned more than popularity
    assert n_sharded >= 0.9 * n_local  # each worker shuffles its own users: the same model in distribution
    assert (sharded.user_items_ != local.user_items_).nnz == 0


def _held_halves(model, n_events):
    held = model._dist_info["held_events"]
    assert len(held) == 2 and sum(held) == n_events  # each event held by exactly one worker
    assert max(held) < 0.6 * n_events  # ... and each worker about half of them


@pytest.mark.slow
def test_two_tower_from_parquet_shards_trains_to_the_single_process_quality(ray_local, featured):
    pytest.importorskip("torch")
    """Each worker: its users' events and features, the whole item catalogue; the rest is merged."""
    from tastebud.models.baseline import MostPopular
    from tastebud.models.two_tower import TwoTower

    split, src, _ = featured
    params = dict(factors=16, epochs=4, batch_size=128, validation=0.2, patience=None, device="cpu", random_state=0)
    local = TwoTower(**params).fit(split.train)  # one process, the same events and features in memory
    sharded = fit_parquet(TwoTower(**params, engine="ray", workers=2), src)
    _held_halves(sharded, len(split.train))
    # the per-user state assembled from the blocks equals the one-process fit's
    assert (sharded.user_items_ != local.user_items_).nnz == 0
    np.testing.assert_array_equal(sharded.recent_, local.recent_)
    np.testing.assert_array_equal(sharded.user_feat_idx_, local.user_feat_idx_)  # merged vocabularies
    np.testing.assert_array_equal(sharded.user_feat_val_, local.user_feat_val_)
    np.testing.assert_array_equal(sharded.item_feat_idx_, local.item_feat_idx_)
    assert sharded.user_factors_.shape == local.user_factors_.shape
    assert sharded.item_counts_.sum() == local.item_counts_.sum()  # per-block holdouts, summed
    n_local = evaluate_fitted(local, split, 10)["ndcg@10"]
    n_sharded = evaluate_fitted(sharded, split, 10)["ndcg@10"]
    n_pop = evaluate_fitted(MostPopular().fit(split.train), split, 10)["ndcg@10"]
    assert n_local > 1.2 * n_pop
    assert n_sharded >= 0.9 * n_local  # each worker shuffles its own users: the same model in distribution
    # a user's vector is the one the fitted towers give from that user's (block's) history
    users = np.arange(0, sharded.n_users, 37)
    again = sharded._user_vectors(sharded._net, _cpu(), users, sharded.user_items_, table=sharded.item_factors_)
    np.testing.assert_allclose(again, sharded.user_factors_[users], atol=1e-5)


@pytest.mark.slow
def test_sasrec_from_parquet_shards_trains_to_the_single_process_quality(ray_local, featured):
    pytest.importorskip("torch")
    from tastebud.models.sasrec import SASRec

    split, src, _ = featured
    params = dict(factors=16, epochs=4, batch_size=32, maxlen=20, device="cpu", random_state=0)
    local = SASRec(**params).fit(split.train)
    with pytest.raises(ConfigError, match="sasrec uses no item or user features"):
        fit_parquet(SASRec(**params, engine="ray", workers=2), src)
    events_only = dataclasses.replace(src, item_features=None, user_features=None)
    sharded = fit_parquet(SASRec(**params, engine="ray", workers=2), events_only)
    _held_halves(sharded, len(split.train))
    # complete sequences (a worker holds all events of its users), in time order, and the summed popularity
    np.testing.assert_array_equal(sharded.seq_indptr_, local.seq_indptr_)
    np.testing.assert_array_equal(sharded.seq_items_, local.seq_items_)
    np.testing.assert_array_equal(sharded.popularity_, local.popularity_)
    assert (sharded.user_items_ != local.user_items_).nnz == 0
    n_local = evaluate_fitted(local, split, 10)["ndcg@10"]
    n_sharded = evaluate_fitted(sharded, split, 10)["ndcg@10"]
    assert abs(n_sharded - n_local) <= 0.15 * n_local  # dropout masks differ: equal in distribution


def _cpu():
    import torch

    return torch.device("cpu")


def test_cli_picks_the_sharded_path_only_for_a_directory_on_ray(events, tmp_path):
    from tastebud.scale.commands import engine_params, sharded_source

    _, path = events
    ray_params = engine_params("ray")
    src = sharded_source("ials", ray_params, path, user="user", item="item", rating=None, time=None)
    assert isinstance(src, ParquetSource) and src.path == str(path) and src.rating is None
    assert sharded_source("ials", {}, path) is None  # local engine: the data are loaded as before
    assert sharded_source("ials", ray_params, None) is None
    with pytest.raises(ConfigError, match="Parquet directory"):
        sharded_source("svd", ray_params, path)
    pytest.importorskip("torch")
    for name in ("two_tower", "sasrec"):
        assert isinstance(sharded_source(name, ray_params, path, time="timestamp"), ParquetSource)


@pytest.mark.slow
def test_cli_trains_ials_from_a_parquet_directory_on_ray(ray_local, events, tmp_path):
    from typer.testing import CliRunner

    import tastebud as tb
    from tastebud.cli import app

    split, path = events
    out = tmp_path / "model"
    res = CliRunner().invoke(
        app,
        [
            "train",
            "ials",
            "--data",
            str(path),
            "--out",
            str(out),
            "--engine",
            "ray",
            "-p",
            "epochs=2",
            "-p",
            "factors=8",
        ],
    )
    assert res.exit_code == 0, res.output
    model = tb.load_model(str(out))
    assert model.n_users == split.train.n_users and model.user_items_.nnz == split.train.matrix.nnz
    assert "engine" not in model.get_params()  # where a model trained is not a hyper-parameter
