"""Distributed training and batch scoring on Ray (tastebud.scale).

Fast tests check the pieces without Ray (row blocks, one block's solve against the local sweep,
Parquet partitions, CLI options); the Ray tests share one local 2-CPU instance and are marked
slow (Ray needs several seconds to start, more on a loaded machine).
"""

from __future__ import annotations

import numpy as np
import pytest

from tastebud.core.errors import ConfigError, DataError
from tastebud.data.parquet import fragments, read_interactions, write_interactions
from tastebud.data.splits import holdout
from tastebud.data.synthetic import generate
from tastebud.eval.evaluate import evaluate_fitted
from tastebud.kernels import ials as K
from tastebud.models.ials import ImplicitALS
from tastebud.scale.commands import check_supported, engine_params
from tastebud.scale.ray_ials import _slice_csr, row_blocks, solve_block


@pytest.fixture(scope="module")
def implicit_data():
    return generate(n_users=300, n_items=120, n_interactions=6000, explicit=False, features=False, random_state=3)


# ---------------------------------------------------------------------------------- no Ray
def test_row_blocks_cover_rows_and_balance_nonzeros():
    indptr = np.array([0, 10, 10, 11, 30, 31, 32, 40])  # 7 rows, 40 non-zeros
    blocks = row_blocks(indptr, 3)
    assert blocks[0][0] == 0 and blocks[-1][1] == 7
    assert all(lo < hi for lo, hi in blocks)
    assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:], strict=False))
    nnz = [indptr[hi] - indptr[lo] for lo, hi in blocks]
    assert sorted(nnz) == [10, 11, 19]  # cuts at the row boundaries nearest 40/3 and 80/3
    assert row_blocks(indptr, 100) == [(i, i + 1) for i in range(7)]  # never more blocks than rows


@pytest.mark.parametrize("cg_steps", [3, 0])
def test_block_solves_equal_the_local_sweep(implicit_data, cg_steps):
    """Solving two row blocks separately is the local sweep, bit for bit (rows are independent)."""
    m = ImplicitALS(factors=6)
    cui = m._conf_matrix(implicit_data.matrix)
    rng = np.random.default_rng(1)
    X = rng.random((cui.shape[0], 6), dtype=np.float32) * 0.1
    Y = rng.random((cui.shape[1], 6), dtype=np.float32)
    A0 = K.gramian(Y, 0.1)
    none = np.empty(0, np.float32)
    local = X.copy()
    if cg_steps:
        K.cg_rows(cui.indptr, cui.indices, cui.data, local, Y, A0.astype(np.float32), cg_steps, none)
    else:
        out = np.zeros_like(X)
        K.exact_rows(cui.indptr, cui.indices, cui.data, np.arange(len(X), dtype=np.int64), out, Y, A0, none)
        local = out
    parts, grams = [], []
    for lo, hi in row_blocks(cui.indptr, 2):
        ro = [a.copy() for a in (*_slice_csr(cui, lo, hi), none)]
        for a in ro:
            a.flags.writeable = False  # as the object store hands them out
        Yro = Y.copy()
        Yro.flags.writeable = False
        x, g = solve_block(tuple(ro), X[lo:hi], Yro, A0, cg_steps, 1)
        parts.append(x)
        grams.append(g)
    np.testing.assert_array_equal(np.vstack(parts), local)
    np.testing.assert_allclose(sum(grams), local.astype(np.float64).T @ local.astype(np.float64), rtol=1e-10)


def test_parquet_partitions_round_trip(tmp_path, implicit_data):
    files = write_interactions(implicit_data, tmp_path / "events", partitions=3)
    assert len(files) == 3 and len(fragments(tmp_path / "events")) == 3
    back = read_interactions(tmp_path / "events", rating="value", time="timestamp")
    assert len(back) == len(implicit_data)
    a = implicit_data.to_frame().sort_values(["user", "item"]).reset_index(drop=True)
    b = back.to_frame().sort_values(["user", "item"]).reset_index(drop=True)
    assert list(a["user"].astype(str)) == list(b["user"].astype(str))
    assert list(a["item"].astype(str)) == list(b["item"].astype(str))
    np.testing.assert_allclose(
        b["rating" if "rating" in b else b.columns[2]], a["rating" if "rating" in a else a.columns[2]]
    )
    # implicit reading: one per event, the same matrix pattern
    imp = read_interactions(tmp_path / "events")
    assert not imp.explicit and imp.matrix.nnz == implicit_data.matrix.nnz
    # shards partition the events; a fixed vocabulary keeps indices aligned across shards
    shards = [read_interactions(tmp_path / "events", shard=(i, 2), users=imp.users, items=imp.items) for i in range(2)]
    assert sum(len(s) for s in shards) == len(implicit_data)
    assert (shards[0].matrix + shards[1].matrix).nnz == imp.matrix.nnz


def test_parquet_through_a_pyarrow_filesystem(tmp_path, implicit_data):
    """Any pyarrow FileSystem works (S3 or GCS in production; a sub-tree of the local disk here)."""
    from pyarrow import fs

    remote = fs.SubTreeFileSystem(str(tmp_path), fs.LocalFileSystem())
    write_interactions(implicit_data, "bucket/events", partitions=2, filesystem=remote)
    assert sorted(p.name for p in (tmp_path / "bucket" / "events").iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    back = read_interactions("bucket/events", filesystem=remote)
    assert back.matrix.nnz == implicit_data.matrix.nnz


def test_parquet_errors_name_the_problem(tmp_path, implicit_data):
    write_interactions(implicit_data, tmp_path / "ev", partitions=1)
    with pytest.raises(DataError, match="missing column"):
        read_interactions(tmp_path / "ev", user="customer")
    with pytest.raises(DataError, match="no Parquet files|cannot open"):
        read_interactions(tmp_path / "nothing-here")
    with pytest.raises(DataError, match="shard"):
        read_interactions(tmp_path / "ev", shard=(2, 2))


def test_engine_params_for_the_cli():
    assert engine_params("local") == {}
    assert engine_params("ray") == {"engine": "ray", "workers": 2, "address": None}
    assert engine_params("ray", "ray://head:10001", 8) == {"engine": "ray", "workers": 8, "address": "ray://head:10001"}
    with pytest.raises(ConfigError, match="--engine ray"):
        engine_params("local", workers=4)
    with pytest.raises(ConfigError, match="workers"):
        engine_params("ray", workers=0)
    with pytest.raises(ConfigError, match="engine"):
        engine_params("spark")
    with pytest.raises(ConfigError, match="no Ray engine"):
        check_supported("itemknn", {"engine": "ray"})
    check_supported("ials", {"engine": "ray"})


# ---------------------------------------------------------------------------------- on Ray
@pytest.mark.slow
def test_ray_ials_equals_single_process(ray_local, implicit_data):
    """Exact row solves (``cg_steps=0``) give the very same factors on Ray as in one process; the
    default conjugate-gradient sweeps, which start from the previous vectors, agree to the
    quality and the top of each list (their last bits differ between processes)."""
    split = holdout(implicit_data, fraction=0.2, random_state=0)
    params = {"factors": 8, "epochs": 4, "reg": 0.1, "alpha": 4.0, "random_state": 7}
    exact = {**params, "cg_steps": 0}
    local = ImplicitALS(**exact).fit(split.train)
    dist = ImplicitALS(**exact, engine="ray", workers=2).fit(split.train)
    assert dist._dist_info["user_blocks"] == 2
    assert np.abs(dist.user_factors_ - local.user_factors_).max() < 1e-4
    assert np.abs(dist.item_factors_ - local.item_factors_).max() < 1e-4
    local = ImplicitALS(**params).fit(split.train)
    dist = ImplicitALS(**params, engine="ray", workers=2).fit(split.train)
    assert np.abs(dist.user_factors_ - local.user_factors_).max() < 0.05
    n_local = evaluate_fitted(local, split, 10)["ndcg@10"]
    n_dist = evaluate_fitted(dist, split, 10)["ndcg@10"]
    assert n_local > 0.05  # learned something
    assert abs(n_dist - n_local) <= 0.02 * n_local
    users = list(split.train.users.ids[:5])
    top = [r[:3].tolist() for r in local.recommend(users, k=3).items]
    assert (
        sum(a == b for a, b in zip(top, [r[:3].tolist() for r in dist.recommend(users, k=3).items], strict=True)) >= 4
    )


@pytest.mark.slow
def test_batch_scoring_equals_recommend_and_index_from_exported_vectors(ray_local, implicit_data, tmp_path):
    from tastebud.scale.batch import build_index, export_item_vectors, read_topk, recommend_all

    model = ImplicitALS(factors=8, epochs=4).fit(implicit_data)
    summary = recommend_all(model, tmp_path / "topk", k=7, batch_size=64, workers=2)
    assert summary["users"] == model.n_users and summary["files"] >= 2
    out = read_topk(tmp_path / "topk")
    assert summary["rows"] == len(out) == model.n_users * 7
    rng = np.random.default_rng(0)
    sample = list(rng.choice(model.users_.ids, 25, replace=False))
    ref = model.recommend(sample, k=7)
    for user, items, scores in zip(sample, ref.items, ref.scores, strict=True):
        rows = out[out["user"].astype(str) == str(user)].sort_values("rank")
        assert rows["rank"].tolist() == list(range(1, 8))
        assert rows["item"].astype(str).tolist() == [str(i) for i in items]
        np.testing.assert_allclose(rows["score"].to_numpy(), scores, rtol=1e-5)
    info = export_item_vectors(model, tmp_path / "vectors", batch_size=50, workers=2)
    assert info["items"] == model.n_items and info["files"] >= 2
    index, ids = build_index(tmp_path / "vectors", "exact", metric="ip")
    pos = {str(i): j for j, i in enumerate(ids)}
    order = np.array([pos[str(i)] for i in model.items_.ids])
    np.testing.assert_array_equal(
        index.search(model.user_factors_[:3], 5, exclude=None)[0],
        order[np.argsort(-(model.user_factors_[:3] @ model.item_factors_.T), axis=1, kind="stable")[:, :5]],
    )


@pytest.mark.slow
def test_two_tower_on_two_ray_workers_trains_and_evaluates(ray_local):
    pytest.importorskip("torch")
    from tastebud.models.two_tower import TwoTower

    data = generate(n_users=200, n_items=80, n_interactions=4000, explicit=False, features=False, random_state=5)
    split = holdout(data, fraction=0.2, random_state=0)
    params = dict(TwoTower.fast_params, epochs=3, random_state=0, device="cpu")
    dist = TwoTower(**params, engine="ray", workers=2)
    dist.fit(split.train)
    assert dist._dist_info == {"engine": "ray", "workers": 2, "backend": "gloo"}
    local = TwoTower(**params).fit(split.train)
    n_dist = evaluate_fitted(dist, split, 10)["ndcg@10"]
    n_local = evaluate_fitted(local, split, 10)["ndcg@10"]
    assert np.isfinite(n_dist) and n_local > 0.05
    # the same global batch (each worker half of it, in-batch negatives gathered from both) and
    # summed gradients: the single-process trajectory up to float rounding, so the same quality
    assert abs(n_dist - n_local) <= 0.01 * n_local
    scale = np.abs(local.item_factors_).max()
    np.testing.assert_allclose(dist.item_factors_, local.item_factors_, atol=1e-3 * scale)
    recs = dist.recommend(list(split.train.users.ids[:3]), k=5)
    assert all(len([i for i in row if i is not None]) == 5 for row in recs.items)


def test_engine_hyper_parameters_are_deprecated_checked_and_not_saved():
    """engine / workers / address: still accepted for one release with a DeprecationWarning naming
    the new way, validated like every hyper-parameter, but no longer hyper-parameters: get_params
    (and so the saved manifest) leaves them out, and fit uses the engine they name."""
    import json

    from tastebud.core.base import _jsonable_params
    from tastebud.core.registry import get_model
    from tastebud.scale.engine import RayEngine

    pytest.importorskip("torch")
    for name in ("ials", "two_tower", "neumf", "sasrec"):
        cls = get_model(name)
        with pytest.warns(DeprecationWarning, match="engine=tastebud.scale.RayEngine"):
            bad = cls(engine="spark")
        with pytest.raises(ConfigError, match="engine"):
            bad._check_params()
        with pytest.warns(DeprecationWarning):
            few = cls(engine="ray", workers=0)
        with pytest.raises(ConfigError, match="workers"):
            few._check_params()
        with pytest.warns(DeprecationWarning, match="'address' is deprecated"):
            model = cls(engine="ray", workers=4, address="ray://head:10001")
        params = model.get_params()
        assert not {"engine", "workers", "address"} & set(json.loads(json.dumps(_jsonable_params(params))))
        assert model.legacy_engine() == RayEngine(workers=4, address="ray://head:10001")
        assert cls().legacy_engine() is None and "engine" not in cls().get_params()
        with pytest.warns(DeprecationWarning):
            assert cls().set_params(engine="ray").legacy_engine() == RayEngine(workers=2)
        # a manifest written before the change still loads, silently
        assert "engine" not in cls._from_saved_params({"engine": "ray", "workers": 2}).get_params()
    with pytest.raises(ConfigError, match="workers"):
        RayEngine(workers=0)
