"""Training from Parquet partitions with each worker holding only its share (tastebud.dist.sharded).

Fast tests need no Ray: the driver's scan keeps no events, a worker's share is exactly its
block of the in-memory matrix, and each share holds about 1/W of the events. The Ray tests fit
iALS and NeuMF from the files and compare with the in-memory fits.
"""

from __future__ import annotations

import numpy as np
import pytest

from tastebud.core.errors import DataError, NotSupportedError
from tastebud.data.splits import Split, holdout
from tastebud.data.synthetic import generate
from tastebud.dist.parquet import read_interactions, write_interactions
from tastebud.dist.ray_ials import _slice_csr, row_blocks
from tastebud.dist.sharded import IALSShard, ParquetSource, blocks, fit_parquet
from tastebud.eval.evaluate import evaluate_fitted
from tastebud.models.als import ImplicitALS


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


# ---------------------------------------------------------------------------------- on Ray
@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ials_from_parquet_shards_equals_the_in_memory_fit(ray_local, events):
    split, path = events
    params = {"factors": 8, "epochs": 4, "reg": 0.1, "alpha": 4.0, "random_state": 7}
    local = ImplicitALS(**params).fit(split.train)  # the same events, read into memory
    sharded = fit_parquet(ImplicitALS(**params, engine="ray", workers=2), str(path))
    info = sharded._dist_info
    assert info["source"] == "parquet" and info["events"] == len(split.train)
    for h in info["held_events"]:  # each actor: about half the events in each orientation
        assert 0.3 * len(split.train) < h["user_events"] < 0.7 * len(split.train)
        assert 0.3 * len(split.train) < h["item_events"] < 0.7 * len(split.train)
    assert list(sharded.users_.ids) == list(local.users_.ids)
    assert np.abs(sharded.user_factors_ - local.user_factors_).max() < 1e-4
    assert np.abs(sharded.item_factors_ - local.item_factors_).max() < 1e-4
    assert (sharded.user_items_ != local.user_items_).nnz == 0  # the model excludes the same seen items
    n_local = evaluate_fitted(local, split, 10)["ndcg@10"]
    assert abs(evaluate_fitted(sharded, split, 10)["ndcg@10"] - n_local) <= 0.005 * n_local
    users = list(split.train.users.ids[:5])
    assert sharded.recommend(users, k=5).items.tolist() == local.recommend(users, k=5).items.tolist()


@pytest.mark.slow
def test_neumf_from_parquet_shards_trains_to_the_single_process_quality(ray_local, events):
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


def test_cli_picks_the_sharded_path_only_for_a_directory_on_ray(events, tmp_path):
    from tastebud.core.errors import ConfigError
    from tastebud.dist.commands import engine_params, sharded_source

    _, path = events
    ray_params = engine_params("ray")
    src = sharded_source("ials", ray_params, path, user="user", item="item", rating=None, time=None)
    assert isinstance(src, ParquetSource) and src.path == str(path) and src.rating is None
    assert sharded_source("ials", {}, path) is None  # local engine: the data are loaded as before
    assert sharded_source("ials", ray_params, None) is None
    with pytest.raises(ConfigError, match="Parquet directory"):
        sharded_source("sasrec", ray_params, path)


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
    assert model.get_params()["engine"] == "ray"
