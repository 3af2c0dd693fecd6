"""The neural models (two-tower, NCF, SASRec) on Ray Train: synchronous data parallelism.

Each of ``workers`` Ray Train workers builds the same model from the same hyper-parameters and
seed and runs the model's own training loop (:class:`tastebud.models._torch.TrainLoop`), with
two changes installed for the duration of the fit (:func:`data_parallel`), the algorithm of
PyTorch DDP (Li et al. 2020, "PyTorch Distributed: Experiences on Accelerating Data Parallel
Training"):

* at the start, every parameter is broadcast from rank 0, so all replicas start identical;
* each epoch's batches are dealt out round-robin (rank ``r`` takes batches ``r, r + W, ...``;
  a last incomplete round is dropped so every rank takes the same number of steps), and before
  every optimizer step the gradients are averaged across workers with one all-reduce of a flat
  buffer (``torch.distributed``: gloo on CPU, nccl on GPU).

The replicas therefore stay bit-identical, validation and early stopping agree on every rank,
and rank 0's weights are the result: it saves the model with tastebud's own format into a Ray
Train checkpoint, which the driver loads into the caller's model. The global batch is
``W x batch_size`` with ``1/W`` of the steps per epoch, the usual DDP recipe.

The models are used as they are: the loop is not rewritten, only wrapped, so a model that
trains locally trains the same way here.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tastebud.core.errors import ConfigError
from tastebud.dist.session import ray_session


def _round_robin(batches: Any, rank: int, world: int) -> Iterator[Any]:
    it = iter(batches)
    while True:
        group = list(itertools.islice(it, world))
        if len(group) < world:
            return  # every rank sees the same stream, so every rank stops here
        yield group[rank]


def _all_reduce_grads(params: list[Any], world: int) -> None:
    """Average gradients over workers with one all-reduce (params without a gradient anywhere stay None)."""
    import torch
    import torch.distributed as dist

    if not params:
        return
    device = params[0].device
    sizes = [p.numel() for p in params]
    flat = torch.zeros(sum(sizes) + len(params), dtype=torch.float32, device=device)
    offset = 0
    for j, p in enumerate(params):
        g = p.grad
        if g is not None:
            if g.is_sparse:
                g = g.to_dense()
            flat[offset : offset + sizes[j]] = g.reshape(-1).to(torch.float32)
            flat[sum(sizes) + j] = 1.0
        offset += sizes[j]
    dist.all_reduce(flat)
    offset = 0
    for j, p in enumerate(params):
        if flat[sum(sizes) + j] > 0:
            p.grad = (flat[offset : offset + sizes[j]] / world).reshape(p.shape).to(p.dtype)
        offset += sizes[j]


@contextmanager
def data_parallel(rank: int, world: int) -> Iterator[None]:
    """Within this block, every :class:`TrainLoop` run is one replica of a data-parallel job.

    Needs an initialised ``torch.distributed`` process group (Ray Train sets it up).
    """
    import torch.distributed as dist

    from tastebud.models import _torch

    original = _torch.TrainLoop.run

    def run(self: Any, module: Any, optimizer: Any, batches: Any, step: Any, *args: Any, **kwargs: Any) -> Any:
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)
        params = [p for group in optimizer.param_groups for p in group["params"]]

        def pre_step(opt: Any, a: Any, kw: Any) -> None:
            _all_reduce_grads(params, world)

        handle = optimizer.register_step_pre_hook(pre_step)
        try:
            return original(
                self, module, optimizer, lambda epoch: _round_robin(batches(epoch), rank, world), step, *args, **kwargs
            )
        finally:
            handle.remove()

    _torch.TrainLoop.run = run  # type: ignore[method-assign]
    try:
        yield
    finally:
        _torch.TrainLoop.run = original  # type: ignore[method-assign]


def _worker_loop(config: dict[str, Any]) -> None:
    """Body of each Ray Train worker: fit a local replica, rank 0 reports the saved model."""
    import ray
    import ray.train

    from tastebud.core.registry import get_model

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    params = dict(config["params"])
    if rank != 0:
        for key, quiet in (("checkpoint_dir", None), ("progress", False)):
            if key in params:
                params[key] = quiet
    model = get_model(config["name"])(**params)
    data = ray.get(config["data"][0])
    with data_parallel(rank, world):
        model.fit(data)
    history = getattr(model, "history_", None) or []
    metrics = {"rank": rank, "epochs": len(history), "loss": float(history[-1]["loss"]) if history else float("nan")}
    if rank == 0:
        with tempfile.TemporaryDirectory() as tmp:
            model.save(f"{tmp}/model")
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report(metrics)


def fit_torch_ray(
    model: Any, data: Any, workers: int | None = None, address: str | None = None, use_gpu: bool | None = None
) -> None:
    """Fit a neural ``model`` with ``workers`` Ray Train workers; its learned state is set in place.

    Called from a model's ``_fit`` when ``engine="ray"`` (the base ``fit`` has already checked
    the data and set the vocabularies). ``use_gpu`` None: one GPU per worker when the cluster has
    enough, else CPU.
    """
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from tastebud.core.base import Recommender

    workers = int(workers if workers is not None else getattr(model, "workers", 2))
    address = address if address is not None else getattr(model, "address", None)
    params = model.get_params()
    if "engine" in params:
        params["engine"] = "local"
    with ray_session(address, workers) as ray:
        if use_gpu is None:
            use_gpu = ray.cluster_resources().get("GPU", 0) >= workers
        if use_gpu and params.get("device") == "cpu":
            use_gpu = False
        with tempfile.TemporaryDirectory() as storage:
            trainer = TorchTrainer(
                _worker_loop,
                train_loop_config={"name": model.name, "params": params, "data": [ray.put(data)]},
                scaling_config=ScalingConfig(num_workers=workers, use_gpu=bool(use_gpu)),
                torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
                run_config=RunConfig(storage_path=storage, name="tastebud"),
            )
            result = trainer.fit()
            if result.error is not None:  # pragma: no cover - fit() raises first in current Ray
                raise result.error
            if result.checkpoint is None:
                raise ConfigError("Ray Train finished without a checkpoint from rank 0")
            with result.checkpoint.as_directory() as path:
                fitted = Recommender.load(f"{path}/model")
    names = set(model._param_names())
    for key, value in vars(fitted).items():
        if key not in names:
            setattr(model, key, value)
    model._dist_info = {"engine": "ray", "workers": workers, "backend": "nccl" if use_gpu else "gloo"}


__all__ = ["data_parallel", "fit_torch_ray"]
