"""Training on Ray from Parquet partitions, each worker holding only its share of the events.

:func:`fit_parquet` is ``model.fit`` for data that does not fit one process. The driver makes one
streaming pass over the files (:func:`tastebud.data.parquet.scan`): the id vocabularies and the
number of events per user and per item, never the events themselves. It cuts the users (and the
items) into ``W`` contiguous blocks with about equal events (:func:`~tastebud.scale.ray_ials.row_blocks`
on the counts), and every worker reads the files itself, keeping only the rows of its block as
each fragment streams by (``read_interactions(user_range=...)``). No process ever holds all
events; each holds about ``1/W`` of them (counted, see ``_dist_info["held_events"]``). The reads
are :class:`tastebud.data.parquet.ParquetSource`'s; this module holds the Ray orchestration.

* **iALS** (:func:`fit_ials_parquet`): ``W`` Ray actors each hold one user block (user x item
  CSR rows) and one item block (item x user rows), the same blocks the in-memory Ray fit
  (:mod:`tastebud.scale.ray_ials`) cuts from the whole matrix, and solve them with the same
  :func:`~tastebud.scale.ray_ials.solve_block`: the factors equal the in-memory fit's up to float
  rounding of the summed Gramians. The driver holds the factors (as in the in-memory Ray fit)
  and, once training is done, assembles the fitted model's seen-item matrix from the actors'
  blocks (the model needs it to exclude seen items; it is the saved model, not training data).
* **Neural models** (NCF: GMF, MLP, NeuMF; the two-tower; SASRec; :func:`fit_neural_parquet`):
  ``W`` Ray Train workers each read the events of their user block and train data-parallel
  (:func:`tastebud.scale.ray_train.data_parallel_hooks` in ``local_data`` mode, given to ``model.fit(share, hooks=...)``): every step each worker
  takes ``batch_size / W`` examples of its own shuffled share, the weighted gradients are
  summed, so the global batch is still about ``batch_size``; the two-tower's in-batch softmax
  all-gathers the whole global batch. Whatever needs all users is merged, not gathered:
  negatives (NCF, SASRec ``bce``) come from each user's own unseen items and SASRec sequences
  are complete, both exact because a worker holds all events of its users; the two-tower's
  logQ estimator streams over the item ids of every *global* batch (gathered in the loss);
  item features are catalogue data, read whole by every worker; user features are read per
  block with the encoder vocabularies united; item counts and popularity are summed;
  validation metrics are averaged across workers. The per-user state the saved model needs is
  computed by each block's worker and concatenated on rank 0.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from tastebud.core.errors import ConfigError, DataError
from tastebud.core.progress import progress_bar
from tastebud.data.parquet import ParquetSource, Scan, as_source
from tastebud.kernels import ials as K
from tastebud.scale.ray_ials import row_blocks, solve_block
from tastebud.scale.session import ray_session


def blocks(counts: np.ndarray, n_blocks: int) -> list[tuple[int, int]]:
    """Contiguous index ranges with about equal events (the in-memory Ray fit's cut)."""
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return row_blocks(indptr, n_blocks)


def fit_parquet(
    model: Any, source: ParquetSource | str | Path, workers: int | None = None, address: str | None = None
) -> Any:
    """Fit ``model`` on Ray from Parquet files without any process holding all events; returns the model.

    Supported: every model whose ``scale_out`` includes ``"parquet"`` (iALS, GMF, MLP, NeuMF, the
    two-tower, SASRec). ``workers`` (default 2) / ``address`` (default: start Ray here) fall back
    to the model's deprecated hyper-parameters of the same names when given.
    """
    from tastebud.models._torch import TorchModel
    from tastebud.scale.engine import check_scale_out

    check_scale_out(model, "parquet")
    if isinstance(model, TorchModel):
        return fit_neural_parquet(model, source, workers, address)
    return fit_ials_parquet(model, source, workers, address)


def _prepare(model: Any, source: Any, workers: int | None, address: str | None) -> tuple[ParquetSource, Scan, int, Any]:
    model._check_params()
    src = as_source(source)
    legacy = model.legacy_engine()  # the deprecated engine / workers / address hyper-parameters
    workers = int(workers if workers is not None else getattr(legacy, "workers", 2))
    if workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    address = address if address is not None else getattr(legacy, "address", None)
    plan = src.scan()
    if plan.events == 0:
        raise DataError(f"{src.path}: the Parquet files hold no interactions")
    return src, plan, workers, address


def _finish(model: Any, plan: Scan, seen: sp.csr_matrix, src: ParquetSource, started: float) -> None:
    """What ``Recommender.fit`` records besides the learned state (:meth:`~tastebud.Recommender.record_fit`)."""
    scale = tuple(plan.rating_scale) if (plan.rating_scale and src.rating is not None) else None
    model.record_fit(plan.users, plan.items, seen, plan.fingerprint(), scale, seconds=time.perf_counter() - started)


# ------------------------------------------------------------------------------------ iALS
class IALSShard:
    """A Ray actor's state: one user block and one item block of the confidence matrix, read from Parquet."""

    def __init__(
        self,
        source: ParquetSource,
        plan: Scan,
        user_range: tuple[int, int] | None,
        item_range: tuple[int, int] | None,
        params: dict[str, Any],
    ) -> None:
        from tastebud.models._common import check_values
        from tastebud.models.ials import ImplicitALS

        model = ImplicitALS(**params)
        self.cg_steps = int(model.cg_steps)
        self.threads = int(model.threads) or 1
        self.held = {"user_events": 0, "item_events": 0}
        self.user_range, self.item_range = user_range, item_range
        self.user_block: tuple[np.ndarray, ...] | None = None
        self.item_block: tuple[np.ndarray, ...] | None = None
        self.seen: sp.csr_matrix | None = None
        n_users, n_items = len(plan.users), len(plan.items)
        if user_range is not None:
            share = source.read(plan, user_range=user_range)
            self.held["user_events"] = len(share)
            check_values(share.values, "interaction values")
            lo, hi = user_range
            self.seen = share.matrix[lo:hi]
            self.user_block = _block(model, self.seen, n_items)
            del share
        if item_range is not None:
            share = source.read(plan, item_range=item_range)
            self.held["item_events"] = len(share)
            check_values(share.values, "interaction values")
            lo, hi = item_range
            # the item x user rows exactly as the in-memory fit gets them (conf(M)^T = conf(M^T))
            self.item_block = _block(model, share.matrix.T.tocsr()[lo:hi], n_users)
            del share
        self.user_x: np.ndarray | None = None
        self.item_x: np.ndarray | None = None

    def start(self, user_x: np.ndarray | None, item_x: np.ndarray | None) -> dict[str, int]:
        self.user_x, self.item_x = user_x, item_x
        return self.held

    def solve(self, side: str, Y: np.ndarray, A0: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Re-solve this actor's ``side`` block ("users" or "items") given the other side's factors."""
        block = self.user_block if side == "users" else self.item_block
        X = self.user_x if side == "users" else self.item_x
        if block is None or X is None:
            return None
        X, gram = solve_block(block, X, Y, A0, self.cg_steps, self.threads)  # type: ignore[arg-type]
        if side == "users":
            self.user_x = X
        else:
            self.item_x = X
        return X, gram

    def seen_rows(self) -> sp.csr_matrix | None:
        return self.seen


def _block(model: Any, rows: sp.csr_matrix, n_cols: int) -> tuple[np.ndarray, ...]:
    conf = model._conf_matrix(rows)
    conf.sort_indices()
    extra = model._row_reg(conf, n_cols)
    return conf.indptr, conf.indices, conf.data, np.ascontiguousarray(extra)


def fit_ials_parquet(
    model: Any, source: ParquetSource | str | Path, workers: int | None = None, address: str | None = None
) -> Any:
    """iALS on Ray from Parquet: each of ``workers`` actors reads and holds one user block and one item block.

    The factors equal an in-memory fit's (local or Ray) for the same seed and epochs up to float
    rounding: the same blocks, the same kernels, the same random start.
    """
    started = time.perf_counter()
    src, plan, workers, address = _prepare(model, source, workers, address)
    n_users, n_items = len(plan.users), len(plan.items)
    k, reg = int(model.factors), float(model.reg)
    user_ranges = blocks(plan.user_events, workers)
    item_ranges = blocks(plan.item_events, workers)
    n_actors = max(len(user_ranges), len(item_ranges))
    rng = np.random.default_rng(model.random_state)  # the local fit's start, drawn in the same order
    user_factors = (rng.random((n_users, k), dtype=np.float32) * 0.01).astype(np.float32)
    item_factors = (rng.random((n_items, k), dtype=np.float32) * 0.01).astype(np.float32)
    params = model.get_params()

    with ray_session(address, workers) as ray:
        Actor = ray.remote(num_cpus=1)(IALSShard)
        ur = [user_ranges[b] if b < len(user_ranges) else None for b in range(n_actors)]
        ir = [item_ranges[b] if b < len(item_ranges) else None for b in range(n_actors)]
        plan_ref = ray.put(plan)
        shards = [Actor.remote(src, plan_ref, ur[b], ir[b], params) for b in range(n_actors)]
        held = ray.get(
            [
                s.start.remote(
                    None if ur[b] is None else user_factors[ur[b][0] : ur[b][1]],
                    None if ir[b] is None else item_factors[ir[b][0] : ir[b][1]],
                )
                for b, s in enumerate(shards)
            ]
        )

        def sweep(side: str, Y: np.ndarray, gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            y_ref, a_ref = ray.put(Y), ray.put(gram + reg * np.eye(k))
            out = [r for r in ray.get([s.solve.remote(side, y_ref, a_ref) for s in shards]) if r is not None]
            return np.concatenate([x for x, _ in out], axis=0), np.sum([g for _, g in out], axis=0)

        gram_users = K.gramian(user_factors, 0.0)
        epoch_seconds = []
        with progress_bar(int(model.epochs), f"{model.name} (ray)", "epoch") as bar:
            for epoch in range(int(model.epochs)):
                t0 = time.perf_counter()
                item_factors, gram_items = sweep("items", user_factors, gram_users)
                user_factors, gram_users = sweep("users", item_factors, gram_items)
                model.user_factors_, model.item_factors_ = user_factors, item_factors
                model._check_finite(epoch)
                epoch_seconds.append(time.perf_counter() - t0)
                bar.update(1)
        seen = sp.vstack([m for m in ray.get([s.seen_rows.remote() for s in shards]) if m is not None], format="csr")
        user_factors = np.array(user_factors, copy=True)
        item_factors = np.array(item_factors, copy=True)

    model.user_factors_ = user_factors
    model.item_factors_ = item_factors
    _finish(model, plan, seen, src, started)
    model._dist_info = {
        "engine": "ray",
        "source": "parquet",
        "workers": workers,
        "events": plan.events,
        "held_events": held,
        "epoch_seconds": [round(s, 4) for s in epoch_seconds],
    }
    return model


# ------------------------------------------------------------------------------------ neural
def _gather(obj: Any, rank: int, world: int) -> list[Any] | None:
    """``obj`` of every rank on rank 0 (None elsewhere)."""
    import torch.distributed as dist

    out: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out


def _all_gather(obj: Any, world: int) -> list[Any]:
    """``obj`` of every rank, on every rank."""
    import torch.distributed as dist

    every: list[Any] = [None] * world
    dist.all_gather_object(every, obj)
    return every


def _sum(values: np.ndarray) -> np.ndarray:
    """Element-wise sum over the ranks (every rank gets it)."""
    import torch
    import torch.distributed as dist

    t = torch.as_tensor(np.ascontiguousarray(values))
    dist.all_reduce(t)
    return t.numpy().astype(values.dtype)


def _neural_worker(config: dict[str, Any]) -> None:
    """Ray Train worker: read this rank's user block, train data-parallel on local data, merge the state."""

    import ray
    import ray.train

    from tastebud.core.registry import get_model
    from tastebud.scale.ray_train import data_parallel_hooks, report

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    cls = get_model(config["name"])
    params = dict(config["params"])
    if rank != 0:
        params.update(checkpoint_dir=None, progress=False)
    src: ParquetSource = config["source"]
    plan: Scan = ray.get(config["plan"][0])
    lo, hi = config["ranges"][rank]
    share = src.read(plan, user_range=(lo, hi))
    held = len(share)
    if cls.uses_features:
        share.item_features, share.user_features = src.read_features(plan, user_range=(lo, hi))
    # each rank's batches are its own: batch_size / W examples a step, so the global batch stays about batch_size
    batch_size = int(params["batch_size"])
    params["batch_size"] = max(1, -(-batch_size // world))
    seed = int(params.get("random_state", 0))
    # each rank shuffles and samples its own data with its own stream: with one seed everywhere the
    # ranks' batches would be drawn in lockstep (the same relative positions, the same history
    # lengths, the same dropout masks); the weights are rank 0's all the same (broadcast at the start)
    params["random_state"] = seed + 1_000_003 * rank
    model = cls(**params)
    # the in-batch softmax's logQ over the global batches, as one process estimates it (two-tower)
    frequency = model.softmax_frequency(len(plan.items), batch_size, seed)

    def finish(fitted: Any) -> None:
        # what the saved model (rank 0's) says, for the serving-time state computed now
        fitted.random_state = seed
        fitted.merge_user_blocks(lo, hi, lambda obj: _gather(obj, rank, world), _sum)

    hooks = dataclasses.replace(
        data_parallel_hooks(rank, world, local_data=True, frequency=frequency),
        features=lambda mine: _all_gather(mine, world),  # unite the user-feature vocabularies
        finish=finish,
    )
    model.fit(share, hooks=hooks)
    del share
    everyone = _all_gather(held, world)
    history = getattr(model, "history_", None) or []
    report(model, rank, {"rank": rank, "held_events": everyone, "epochs": len(history)})


def fit_neural_parquet(
    model: Any, source: ParquetSource | str | Path, workers: int | None = None, address: str | None = None
) -> Any:
    """Two-tower, SASRec, GMF / MLP / NeuMF on Ray Train from Parquet: each worker reads and trains on its own user block.

    Users are cut into ``W`` contiguous blocks with about equal training examples: events for the
    two-tower and NCF, sequences (users with two or more events) for SASRec. Every step each
    worker takes ``batch_size / W`` examples of its own shuffled block (``data_parallel_hooks`` in
    ``local_data`` mode); the two-tower's in-batch softmax all-gathers the item vectors of the
    whole global batch. State over all users is merged, not gathered: the two-tower's logQ
    estimator (Yi et al. 2019) streams over the item ids of every global batch, all-gathered in
    the loss with the item vectors, so it sees what the single-process estimator sees; item
    counts and popularity are summed; the user-feature vocabularies are united; validation
    metrics are averaged across workers. Item features are catalogue data and every worker reads them whole; user features
    are read per block. SASRec sequences are complete because a worker holds all events of
    its users (give ``ParquetSource(time=...)`` so they are in time order).

    The weights come from rank 0 (all ranks hold the same weights). The per-user state the saved
    model needs (seen-item rows; the two-tower's user vectors, recency order and user features;
    SASRec's last ``maxlen`` items) is computed on each block's own rank and concatenated on
    rank 0: no process reads all events.
    """
    from tastebud.scale.ray_train import adopt, run_trainer

    started = time.perf_counter()
    src, plan, workers, address = _prepare(model, source, workers, address)
    if model.sequential:  # a next-item model's example is one user's sequence (two or more events)
        ranges = blocks((plan.user_events >= 2).astype(np.int64), workers)
    else:
        ranges = blocks(plan.user_events, workers)
    if len(ranges) < workers:
        raise ConfigError(f"workers={workers} but only {len(ranges)} user(s) to share out; use fewer workers")
    if not model.uses_features and (src.item_features is not None or src.user_features is not None):
        raise ConfigError(f"{model.name} uses no item or user features; leave ParquetSource's feature tables out")
    params = model.get_params()
    with ray_session(address, workers) as ray:
        config = {
            "name": model.name,
            "params": params,
            "source": src,
            "plan": [ray.put(plan)],
            "ranges": ranges,
        }
        fitted, metrics = run_trainer(_neural_worker, config, workers, use_gpu=False)
    adopt(model, fitted)
    _finish(model, plan, fitted.user_items_, src, started)
    model._dist_info = {
        "engine": "ray",
        "source": "parquet",
        "workers": workers,
        "events": plan.events,
        "user_blocks": ranges,
        "held_events": metrics.get("held_events"),
    }
    return model


__all__ = [
    "IALSShard",
    "blocks",
    "fit_ials_parquet",
    "fit_neural_parquet",
    "fit_parquet",
]
