"""Shared PyTorch plumbing for the neural models (NCF, two-tower, SASRec).

One training experience for every neural model: a progress bar with the loss and examples per
second, a validation metric each epoch, early stopping that restores the best weights, an atomic
checkpoint each epoch and ``resume=True`` to continue a killed run, and a clear error when the
loss diverges. Weights are stored as safetensors (never ``torch.save`` / pickle).

PyTorch is optional (``pip install tastebud[neural]``); this module imports it lazily so that
``import tastebud`` never needs it.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import ENGINE_PARAMS, FitEngine, Recommender, positive
from tastebud.core.errors import ConfigError, ModelFormatError, TrainingError
from tastebud.core.persist import atomic_write_bytes
from tastebud.core.progress import note, progress_bar
from tastebud.data.interactions import Interactions
from tastebud.models._openmp import sleeping_waits

if TYPE_CHECKING:  # pragma: no cover
    import torch

CHECKPOINT_VERSION = 1

# Who hears each epoch's validation metric (see ``epoch_observer``); None outside such a block.
_EPOCH_OBSERVER: ContextVar[Callable[[int, float], None] | None] = ContextVar("tastebud_epoch_observer", default=None)


@contextmanager
def epoch_observer(callback: Callable[[int, float], None]) -> Iterator[None]:
    """Within this block every :class:`TrainLoop` calls ``callback(epoch, metric)`` after each
    validated epoch (1-based epoch; the metric is higher-is-better), once its checkpoint is written.

    The callback may raise to stop training: a hyper-parameter search prunes a hopeless trial
    this way (:mod:`tastebud.tune`). Models need not know: the loop they already run reports.
    """
    token = _EPOCH_OBSERVER.set(callback)
    try:
        yield
    finally:
        _EPOCH_OBSERVER.reset(token)


def require_torch() -> Any:
    """The ``torch`` module, or a ConfigError that says how to install it.

    When this is the first import of torch in the process, its OpenMP runtime loads with sleeping
    waits (:func:`tastebud.models._openmp.sleeping_waits`): a training step is dozens of small ops,
    and spinning threads made a 2-thread NeuMF epoch 5-19 times slower on a busy machine."""
    try:
        if "torch" in sys.modules:
            import torch
        else:
            with sleeping_waits():
                import torch
    except ImportError:  # pragma: no cover - torch is installed in the test environment
        raise ConfigError("this model needs PyTorch: pip install tastebud[neural]") from None
    return torch


def pick_device(device: str | None) -> torch.device:
    """``"auto"``/None: CUDA when present, else CPU; ``"cpu"``; ``"cuda"`` or ``"cuda:N"``."""
    torch = require_torch()
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str):
        raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} but CUDA is not available here; use device='auto' or 'cpu'")
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ConfigError(f"device={device!r} is not a valid CUDA device name") from None
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return dev
    raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (initialisation, dropout) and return a private torch Generator.

    On CPU the kernels these models use are deterministic for a given thread count, so a fixed
    seed gives bit-identical training (the tests check it). cuDNN is put in deterministic mode for
    CUDA runs. (``torch.use_deterministic_algorithms`` is not called: it imports the compiler stack,
    which costs seconds per fit.) Sampling in numpy should use ``np.random.default_rng([seed,
    epoch])`` per epoch, so a resumed run draws the same samples as an uninterrupted one without
    having to store the sampler's state.
    """
    torch = require_torch()
    seed = int(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    gen = torch.Generator()
    gen.manual_seed(seed)
    return gen


def adam(params: Iterable[Any], lr: float, **options: Any) -> torch.optim.Adam:
    """Adam (Kingma and Ba 2015) with torch's fused kernel: one pass per tensor instead of about
    eight ops each step, the same update up to rounding (a sixth of a NeuMF step on CPU)."""
    torch = require_torch()
    return torch.optim.Adam(params, lr=lr, fused=True, **options)


# ---------------------------------------------------------------------- safetensors bytes
def _detached(state: Mapping[str, Any]) -> dict[str, Any]:
    # clone: tied / shared tensors would otherwise be refused by safetensors
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def module_to_bytes(module: torch.nn.Module) -> bytes:
    """The module's state dict as safetensors bytes (for ``_extra_files``)."""
    require_torch()
    from safetensors.torch import save

    return save(_detached(module.state_dict()))


def module_from_bytes(module: torch.nn.Module, payload: bytes) -> torch.nn.Module:
    """Load safetensors bytes written by :func:`module_to_bytes` into ``module`` (strict)."""
    require_torch()
    from safetensors.torch import load

    try:
        state = load(payload)
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFormatError(f"weights cannot be read as safetensors ({exc})") from None
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelFormatError(f"saved weights do not match the model's shape: {first}") from None
    return module


# ---------------------------------------------------------------------- optimizer state
def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split an optimizer state dict into tensors (for safetensors) and JSON."""
    torch = require_torch()
    sd = optimizer.state_dict()
    tensors: dict[str, Any] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{pid}/{key}"] = value.detach().to("cpu").contiguous().clone()
            else:
                scalars.setdefault(str(pid), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _unflatten_optimizer(optimizer: torch.optim.Optimizer, tensors: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if not name.startswith("optim/"):
            continue
        _, pid, key = name.split("/", 2)
        state.setdefault(int(pid), {})[key] = value
    for pid, entry in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(entry)
    current = optimizer.state_dict()["param_groups"]
    groups = []
    for saved, now in zip(meta["param_groups"], current, strict=True):
        groups.append(
            {k: (tuple(v) if isinstance(now.get(k), tuple) and isinstance(v, list) else v) for k, v in saved.items()}
        )
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ---------------------------------------------------------------------- RNG state
def _rng_tensors() -> dict[str, Any]:
    torch = require_torch()
    out = {"rng/torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, st in enumerate(torch.cuda.get_rng_state_all()):
            out[f"rng/cuda/{i}"] = st
    return out


def _restore_rng(tensors: Mapping[str, Any]) -> None:
    torch = require_torch()
    if "rng/torch_cpu" in tensors:
        torch.set_rng_state(tensors["rng/torch_cpu"])
    cuda = sorted((int(k.rsplit("/", 1)[1]), v) for k, v in tensors.items() if k.startswith("rng/cuda/"))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([v for _, v in cuda])


def _gen_state(gen: Any) -> tuple[str, Any]:
    torch = require_torch()
    if isinstance(gen, np.random.Generator):
        return "numpy", gen.bit_generator.state
    if isinstance(gen, torch.Generator):
        return "torch", None
    raise ConfigError(f"rngs values must be numpy or torch Generators, got {type(gen).__name__}")


# ---------------------------------------------------------------------- settings and hooks
@dataclass(frozen=True)
class TrainConfig:
    """The training settings every torch model shares, each with its meaning, default and check
    written once. Models keep them as plain hyper-parameters (what users set and ``get_params``
    shows) and build this from them (:meth:`TorchModel.train_config`).

    ``epochs``: passes over the data (a ceiling when early stopping is on); ``batch_size``:
    examples per optimizer step; ``validation``: share of users with one interaction held out for
    the per-epoch metric (0: none); ``patience``: epochs without gain before stopping (None: never);
    ``checkpoint_dir``: folder for a checkpoint after every epoch; ``resume``: continue from it;
    ``progress``: progress bars for this model even when the run has them off; ``device``:
    ``"auto"``, ``"cpu"`` or ``"cuda[:N]"``; ``random_state``: the seed of every draw.
    """

    epochs: int = 20
    batch_size: int = 256
    validation: float = 0.2
    patience: int | None = 3
    checkpoint_dir: str | None = None
    resume: bool = False
    progress: bool = False
    device: str = "auto"
    random_state: int = 0

    def check(self, owner: str) -> None:
        """Raise a ConfigError naming ``owner`` and the setting for a value out of range."""
        positive(owner, epochs=self.epochs, batch_size=self.batch_size)
        if not 0.0 <= self.validation < 1.0:
            raise ConfigError(f"{owner}: validation must be in [0, 1), got {self.validation!r}")
        if self.patience is not None:
            positive(owner, patience=self.patience)
        if self.resume and not self.checkpoint_dir:
            raise ConfigError(f"{owner}: resume=True needs checkpoint_dir")
        pick_device(self.device)


class BatchLayout:
    """How a model's training batch divides into contiguous blocks of rows, so that a data-parallel
    rank can take its share (:attr:`TrainHooks.split`). This default: a tuple of tensors with one
    row per example and one loss term per row (NCF's batches)."""

    def rows(self, batch: Any) -> int:
        """Examples (rows) in ``batch``."""
        return len(batch[0])

    def terms(self, batch: Any, cuts: np.ndarray) -> list[int]:
        """Loss terms in each block ``cuts[r]:cuts[r + 1]`` of rows: the weight of each share's mean loss."""
        return [int(b - a) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]

    def take(self, batch: Any, lo: int, hi: int) -> Any:
        """Rows ``lo:hi`` of ``batch``, with everything the loss needs for them."""
        return tuple(t[lo:hi] for t in batch)


@dataclass
class TrainHooks:
    """The injection points of a torch model's training, for running it as one rank of several.

    Every field left None does the single-process thing, so ``TrainHooks()`` is a plain fit. The
    scale layer fills them in (:func:`tastebud.scale.ray_train.data_parallel_hooks`) and passes them
    to ``model.fit(data, hooks=...)``; the model hands them to its :class:`TrainLoop` and calls the
    model-level ones itself, so the model file shows every place where they act.

    * ``start(module)``: once before training (data parallelism: broadcast rank 0's weights);
    * ``split(batches, layout)``: the batch splitter: this rank's share of every batch
      (``layout`` says how the model's batches divide);
    * ``loss(loss)``: the loss wrapper: weight a share's loss; the value to report;
    * ``sync(params)``: gradient synchronisation after ``backward``, before clipping and the step;
    * ``validate(fn)``: wraps the validation function (average the ranks' metrics);
    * ``softmax_loss``: the in-batch sampled softmax for models that have one (two-tower), with the
      signature of :func:`tastebud.models.two_tower.sampled_softmax_loss` (all-gathered columns);
    * ``features(mine)``: the feature hook: this rank's feature vocabularies in, every rank's out
      (so that all ranks build the same network from their own blocks of users);
    * ``finish(model)``: the finish hook: called at the end of fit instead of computing the
      per-user serving state of every user (each rank computes and merges its own block's).
    """

    start: Callable[[Any], None] | None = None
    split: Callable[[Iterable[Any], BatchLayout], Iterable[Any]] | None = None
    loss: Callable[[Any], Any] | None = None
    sync: Callable[[list[Any]], None] | None = None
    validate: Callable[[Callable[[], float] | None], Callable[[], float] | None] | None = None
    softmax_loss: Callable[..., Any] | None = None
    features: Callable[[Any], list[Any]] | None = None
    finish: Callable[[Any], None] | None = None


class TorchModel(Recommender):
    """What the torch models (NCF, two-tower, SASRec) share: their training settings
    (:class:`TrainConfig`), the hooks their training takes (:class:`TrainHooks`) and their
    capabilities."""

    heavy: ClassVar[bool] = True
    history_preference: ClassVar[int | None] = 100
    scale_out: ClassVar[frozenset[str]] = frozenset({"ray", "parquet"})
    deprecated_params: ClassVar[dict[str, str]] = ENGINE_PARAMS

    def train_config(self) -> TrainConfig:
        """The shared training settings, from this model's hyper-parameters of the same names
        (a model without ``validation`` holds none out that way: 0)."""
        return TrainConfig(
            epochs=self.epochs,  # type: ignore[attr-defined]
            batch_size=self.batch_size,  # type: ignore[attr-defined]
            validation=getattr(self, "validation", 0.0),
            patience=self.patience,  # type: ignore[attr-defined]
            checkpoint_dir=self.checkpoint_dir,  # type: ignore[attr-defined]
            resume=self.resume,  # type: ignore[attr-defined]
            progress=self.progress,  # type: ignore[attr-defined]
            device=self.device,  # type: ignore[attr-defined]
            random_state=self.random_state,  # type: ignore[attr-defined]
        )

    def _validate_params(self) -> None:
        self.train_config().check(type(self).__name__)

    def batch_layout(self) -> BatchLayout:
        """How this model's training batches divide into shares of rows (see :class:`BatchLayout`)."""
        return BatchLayout()

    def fit(
        self, data: Interactions, *, engine: FitEngine | None = None, hooks: TrainHooks | None = None
    ) -> TorchModel:
        """Learn from ``data``. ``engine``: see :meth:`Recommender.fit`; ``hooks``: the injection
        points of training (the scale layer's; None: a plain single-process fit)."""
        self._hooks = hooks if hooks is not None else TrainHooks()
        try:
            super().fit(data, engine=engine)
        finally:
            del self._hooks
        return self

    def merge_user_blocks(
        self, lo: int, hi: int, gather: Callable[[Any], list[Any] | None], total: Callable[[np.ndarray], np.ndarray]
    ) -> None:
        """One rank of a sharded fit (:mod:`tastebud.scale.sharded`) trained on users ``lo:hi``:
        assemble on rank 0 the per-user state the saved model needs. ``gather(obj)``: every rank's
        ``obj`` on rank 0 (None elsewhere); ``total(array)``: its element-wise sum over the ranks.
        This default gathers the seen-item rows (NCF: the rest of its learned state is its weights)."""
        every = gather(self.user_items_[lo:hi])
        if every is not None:
            self.user_items_ = sp.vstack(every, format="csr")

    def softmax_frequency(self, n_items: int, batch_size: int, seed: int) -> Any:
        """The item-frequency estimator that the in-batch softmax corrects with, when the ranks of a
        sharded fit must share one over the global batches, seeded with ``seed`` (None: this model has none)."""
        return None

    def _train_loop(self, name: str, **overrides: Any) -> TrainLoop:
        """The training loop these settings and hooks describe (``overrides``: e.g. ``epochs``)."""
        cfg = self.train_config()
        return TrainLoop(
            int(overrides.get("epochs", cfg.epochs)),
            patience=cfg.patience,
            checkpoint_dir=None if cfg.checkpoint_dir is None else Path(cfg.checkpoint_dir),
            progress=bool(cfg.progress),
            name=name,
            resume=bool(cfg.resume),
            hooks=self._hooks,
        )


# ---------------------------------------------------------------------- the loop
class TrainLoop:
    """Epochs with progress, validation, early stopping, checkpoints and resume.

    ``run`` calls ``batches(epoch)`` for an iterable of batches and ``step(batch)`` for each
    (it returns the loss tensor; the loop does ``zero_grad``, ``backward`` and ``optimizer.step``).
    ``validate()`` (optional) returns a metric where higher is better; the loop switches the
    module to eval mode and turns off autograd around it. With ``validate`` the best epoch's
    weights are restored at the end and ``patience`` epochs without improvement stop training;
    without it the last weights are kept.

    Progress (:mod:`tastebud.core.progress`): one bar over every batch of every epoch on stderr,
    the running loss, examples per second and the last validation metric in its postfix, and a
    line per epoch. It shows when progress is enabled for the run (the CLI's default) or when
    ``progress=True`` (the models' own switch).

    With ``checkpoint_dir`` a checkpoint is written atomically after every epoch:
    ``{name}.json`` (epoch, best metric, history, optimizer scalars, numpy RNG states) pointing at
    ``{name}-e{epoch}.safetensors`` (module weights, best weights, optimizer tensors, torch RNG
    states). The JSON is renamed into place only after the weights it names are on disk, so a kill
    at any moment leaves a consistent checkpoint. ``resume=True`` continues from it; for an exact
    replay, ``batches(epoch)`` must draw its randomness from the epoch number (or from generators
    passed in ``rngs``, whose states are checkpointed too).
    """

    def __init__(
        self,
        epochs: int,
        patience: int | None = None,
        checkpoint_dir: str | Path | None = None,
        progress: bool = False,
        name: str = "model",
        resume: bool = False,
        clip_grad_norm: float | None = None,
        hooks: TrainHooks | None = None,
    ) -> None:
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
            raise ConfigError(f"epochs must be a positive integer, got {epochs!r}")
        if patience is not None and (
            isinstance(patience, bool) or not isinstance(patience, (int, np.integer)) or patience < 1
        ):
            raise ConfigError(f"patience must be a positive integer or None, got {patience!r}")
        if resume and checkpoint_dir is None:
            raise ConfigError("resume=True needs a checkpoint_dir to resume from")
        if not name or any(c in name for c in "/\\") or name.startswith("."):
            raise ConfigError(f"name must be a plain file name, got {name!r}")
        self.epochs = int(epochs)
        self.patience = None if patience is None else int(patience)
        self.checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
        self.progress = bool(progress)
        self.name = name
        self.resume = bool(resume)
        self.clip_grad_norm = clip_grad_norm
        self.hooks = hooks if hooks is not None else TrainHooks()
        self.best_epoch: int | None = None
        self.best_metric: float | None = None
        self.stopped_early = False
        self.resumed_from: int | None = None

    # ------------------------------------------------------------------ checkpoints
    @property
    def _json_path(self) -> Path:
        assert self.checkpoint_dir is not None
        return self.checkpoint_dir / f"{self.name}.json"

    def _save(
        self,
        module: Any,
        optimizer: Any,
        best_state: dict[str, Any] | None,
        meta: dict[str, Any],
        rngs: Mapping[str, Any],
    ) -> None:
        from safetensors.torch import save

        assert self.checkpoint_dir is not None
        tensors: dict[str, Any] = {f"module/{k}": v for k, v in _detached(module.state_dict()).items()}
        if best_state is not None:
            tensors.update({f"best/{k}": v for k, v in best_state.items()})
        opt_tensors, opt_meta = _flatten_optimizer(optimizer)
        tensors.update(opt_tensors)
        tensors.update(_rng_tensors())
        gen_meta: dict[str, Any] = {}
        for key, gen in rngs.items():
            kind, state = _gen_state(gen)
            if kind == "numpy":
                gen_meta[key] = state
            else:
                tensors[f"rng/gen/{key}"] = gen.get_state()
        payload = save(tensors)
        weights = f"{self.name}-e{meta['epoch']:04d}.safetensors"
        atomic_write_bytes(self.checkpoint_dir / weights, payload)
        doc = dict(
            meta,
            version=CHECKPOINT_VERSION,
            weights=weights,
            sha256=hashlib.sha256(payload).hexdigest(),
            optimizer=opt_meta,
            numpy_rngs=gen_meta,
            has_best=best_state is not None,
        )
        previous = self._read_json()
        atomic_write_bytes(self._json_path, json.dumps(doc, indent=1, default=_json_default).encode())
        if previous and previous.get("weights") != weights:
            (self.checkpoint_dir / str(previous["weights"])).unlink(missing_ok=True)

    def _read_json(self) -> dict[str, Any] | None:
        if self.checkpoint_dir is None or not self._json_path.is_file():
            return None
        try:
            doc = json.loads(self._json_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelFormatError(f"{self._json_path}: checkpoint is not valid JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("version") != CHECKPOINT_VERSION or "weights" not in doc:
            raise ModelFormatError(f"{self._json_path}: not a tastebud checkpoint of version {CHECKPOINT_VERSION}")
        return doc

    def _load(
        self, module: Any, optimizer: Any, rngs: Mapping[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
        from safetensors.torch import load

        doc = self._read_json()
        if doc is None:
            return None
        assert self.checkpoint_dir is not None
        path = self.checkpoint_dir / str(doc["weights"])
        if not path.is_file():
            raise ModelFormatError(
                f"{path}: checkpoint weights are missing; delete {self._json_path} or pass resume=False"
            )
        payload = path.read_bytes()
        if hashlib.sha256(payload).hexdigest() != doc.get("sha256"):
            raise ModelFormatError(f"{path}: SHA-256 mismatch; the checkpoint is corrupt")
        tensors = load(payload)
        state = {k[len("module/") :]: v for k, v in tensors.items() if k.startswith("module/")}
        best = (
            {k[len("best/") :]: v for k, v in tensors.items() if k.startswith("best/")} if doc.get("has_best") else None
        )
        try:
            module.load_state_dict(state, strict=True)
            _unflatten_optimizer(optimizer, tensors, doc["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(
                f"the checkpoint in {self.checkpoint_dir} does not match this model ({first}); "
                "delete it or pass resume=False"
            ) from None
        _restore_rng(tensors)
        for key, gen in rngs.items():
            if isinstance(gen, np.random.Generator) and key in doc.get("numpy_rngs", {}):
                gen.bit_generator.state = doc["numpy_rngs"][key]
            elif f"rng/gen/{key}" in tensors:
                gen.set_state(tensors[f"rng/gen/{key}"])
        return doc, best

    # ------------------------------------------------------------------ run
    def run(
        self,
        module: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        batches: Callable[[int], Iterable[Any]],
        step: Callable[[Any], torch.Tensor],
        validate: Callable[[], float] | None = None,
        examples_per_batch: int | Callable[[Any], int] = 1,
        rngs: Mapping[str, Any] | None = None,
        steps_per_epoch: int | None = None,
        layout: BatchLayout | None = None,
    ) -> list[dict[str, Any]]:
        """Train; returns the history, one dict per epoch: epoch, loss, metric, examples_per_s, seconds.

        ``steps_per_epoch`` (batches per epoch) gives the progress bar its total from the start;
        without it the bar is sized after the first epoch. ``layout``: how a batch divides into
        shares of rows, for a batch splitter in ``hooks`` (default: :class:`BatchLayout`).
        """
        torch = require_torch()
        hooks = self.hooks
        if hooks.start is not None:
            hooks.start(module)
        if hooks.validate is not None:
            validate = hooks.validate(validate)
        split, layout = hooks.split, layout if layout is not None else BatchLayout()
        trained = [p for group in optimizer.param_groups for p in group["params"]]

        rngs = dict(rngs or {})
        history: list[dict[str, Any]] = []
        best_state: dict[str, Any] | None = None
        best_metric = -math.inf
        best_epoch: int | None = None
        bad_epochs = 0
        start_epoch = 0
        finished = False
        if self.resume:
            loaded = self._load(module, optimizer, rngs)
            if loaded is not None:
                doc, best_state = loaded
                history = list(doc.get("history", []))
                start_epoch = int(doc["epoch"]) + 1
                self.resumed_from = int(doc["epoch"])
                if doc.get("best_metric") is not None:
                    best_metric = float(doc["best_metric"])
                best_epoch = doc.get("best_epoch")
                bad_epochs = int(doc.get("bad_epochs", 0))
                # an early-stopped run is over; one that ran out of epochs continues if more are asked
                finished = bool(doc.get("stopped_early", False))
                self.stopped_early = finished

        # one bar over every batch of every epoch, so it has a total and an ETA for the whole fit
        steps = None if steps_per_epoch is None else max(1, int(steps_per_epoch))
        bar = progress_bar(
            None if steps is None else self.epochs * steps,
            f"{self.name} epoch {start_epoch + 1}/{self.epochs}",
            unit="batch",
            initial=0 if steps is None else start_epoch * steps,
            force=self.progress,
        )
        shown: dict[str, str] = {} if best_epoch is None else {"best": f"{best_metric:.4f}"}
        with bar:
            for epoch in range(start_epoch, self.epochs):
                if finished:
                    break
                module.train()
                started = time.perf_counter()
                total, n_batches, n_examples = 0.0, 0, 0
                bar.set_description(f"{self.name} epoch {epoch + 1}/{self.epochs}", refresh=False)
                for batch in batches(epoch) if split is None else split(batches(epoch), layout):
                    optimizer.zero_grad(set_to_none=True)
                    loss = step(batch)
                    if hooks.loss is not None:
                        loss = hooks.loss(loss)
                    value = float(loss.detach())
                    if not math.isfinite(value):
                        lr = optimizer.param_groups[0].get("lr")
                        raise TrainingError(
                            f"{self.name}: the loss became {value} in epoch {epoch + 1} (batch {n_batches + 1}); "
                            f"training diverged: lower learning_rate (now {lr})"
                        )
                    loss.backward()
                    if hooks.sync is not None:
                        hooks.sync(trained)
                    if self.clip_grad_norm is not None:
                        torch.nn.utils.clip_grad_norm_(module.parameters(), self.clip_grad_norm)
                    optimizer.step()
                    total += value
                    n_batches += 1
                    n_examples += int(examples_per_batch(batch) if callable(examples_per_batch) else examples_per_batch)
                    if not bar.disable:
                        elapsed = max(time.perf_counter() - started, 1e-9)
                        shown.update(loss=f"{total / n_batches:.4f}", ex_s=f"{n_examples / elapsed:.0f}")
                        bar.set_postfix(shown, refresh=False)
                        bar.update(1)
                if steps is None and n_batches and not bar.disable:
                    # sized from the first epoch run when the model did not say (and as if resumed)
                    steps = n_batches
                    bar.total = self.epochs * steps
                    bar.n += start_epoch * steps
                    bar.initial += start_epoch * steps
                    bar.refresh()
                seconds = time.perf_counter() - started
                metric: float | None = None
                if validate is not None:
                    module.eval()
                    with torch.no_grad():
                        metric = float(validate())
                    module.train()
                    if math.isnan(metric):
                        raise TrainingError(
                            f"{self.name}: the validation metric is NaN in epoch {epoch + 1}; lower learning_rate"
                        )
                    if metric > best_metric:
                        best_metric, best_epoch, bad_epochs = metric, epoch, 0
                        best_state = _detached(module.state_dict())
                    else:
                        bad_epochs += 1
                    shown.update(metric=f"{metric:.4f}", best=f"{best_metric:.4f}")
                row = {
                    "epoch": epoch + 1,
                    "loss": total / max(n_batches, 1),
                    "metric": metric,
                    "examples_per_s": n_examples / max(seconds, 1e-9),
                    "seconds": seconds,
                }
                history.append(row)
                summary = "" if metric is None else f" metric {metric:.4f}"
                note(
                    bar,
                    f"{self.name} epoch {epoch + 1}/{self.epochs}: loss {row['loss']:.4f}{summary} "
                    f"({row['examples_per_s']:.0f} ex/s)",
                )
                stop = self.patience is not None and validate is not None and bad_epochs >= self.patience
                if self.checkpoint_dir is not None:
                    meta = {
                        "epoch": epoch,
                        "best_metric": None if best_epoch is None else best_metric,
                        "best_epoch": best_epoch,
                        "bad_epochs": bad_epochs,
                        "history": history,
                        "finished": stop or epoch + 1 == self.epochs,
                        "stopped_early": stop,
                    }
                    self._save(module, optimizer, best_state, meta, rngs)
                observer = _EPOCH_OBSERVER.get()
                if observer is not None and metric is not None:
                    observer(epoch + 1, metric)
                if stop:
                    self.stopped_early = True
                    best = "" if best_epoch is None else f"; best epoch {best_epoch + 1} (metric {best_metric:.4f})"
                    note(bar, f"{self.name}: stopped early after epoch {epoch + 1}/{self.epochs}{best}")
                    break

        if best_state is not None:
            module.load_state_dict(best_state)
        self.best_epoch = None if best_epoch is None else int(best_epoch) + 1
        self.best_metric = None if best_epoch is None else best_metric
        module.eval()
        return history


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")
