"""Variational autoencoders for collaborative filtering: Mult-VAE and RecVAE.

* **Mult-VAE** -- Liang, Krishnan, Hoffman, Jebara. "Variational Autoencoders for Collaborative
  Filtering." WWW 2018. A user's history ``x_u`` is encoded into ``q(z_u | x_u)`` and decoded
  into a softmax ``pi(z_u)`` over items; training maximises the beta-weighted ELBO
  ``E_q[log Mult(x_u | pi(z_u))] - beta KL(q(z_u | x_u) || N(0, I))``, with ``beta`` annealed
  from 0 by ``1 / anneal_steps`` per update up to ``anneal_cap`` (0.2 in the paper).
* **RecVAE** -- Shenbin, Alekseev, Tutubalina, Malykh, Nikolenko. "RecVAE: a New Variational
  Autoencoder for Top-N Recommendations with Implicit Feedback." WSDM 2020. A deeper encoder
  (dense skip connections, layer norm, swish), a composite prior (a mixture of N(0, I), the
  posterior under the previous epoch's encoder and a wide normal), a KL weight of
  ``gamma * |x_u|`` per user, and alternating updates: ``encoder_epochs`` passes for the encoder
  (with input dropout), then one for the decoder (without).

Both hold out a ``validation`` share of the training users (Liang's protocol: 80% of each one's
items folded in, the rest scored) and keep the epoch with the best NDCG@100 on them. A history
is scored exactly as the papers score held-out users: encoded to the posterior mean, decoded to
logits, so ``recommend_for_history`` needs no refit. docs/vae.md has the math.

PyTorch is needed (``pip install tastebud[neural]``); it is imported when a model is fitted or loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import Recommender, non_negative, positive
from tastebud.core.errors import ConfigError, DataError, ModelFormatError
from tastebud.core.ranking import topk
from tastebud.core.registry import register
from tastebud.core.space import Dist, Float, Int, LogFloat
from tastebud.data import splits
from tastebud.data.interactions import Interactions
from tastebud.eval.metrics import ndcg_at_k
from tastebud.models import _vae
from tastebud.models._torch import (
    TrainLoop,
    adam,
    module_from_bytes,
    module_to_bytes,
    pick_device,
    require_torch,
    seed_everything,
)

WEIGHTS = "weights.safetensors"
#: The validation metric each epoch: NDCG at this depth on the held-out validation users (the papers').
VALIDATION_K = 100
# Histories encoded at once when scoring.
SCORE_ROWS = 1024


class _VAE(Recommender):
    """What both autoencoders share: the validation users, the batches, scoring and persistence."""

    supports_history = True
    requires: ClassVar[tuple[tuple[str, str], ...]] = (("torch", "neural"),)
    heavy = True  # minutes of training at the paper's settings on a CPU
    kind: ClassVar[str] = ""

    # ------------------------------------------------------------------ checks
    def _validate_params(self) -> None:
        name = type(self).__name__
        positive(
            name,
            factors=self.factors,
            hidden=self.hidden,
            epochs=self.epochs,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
        )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{name}: dropout must be in [0, 1), got {self.dropout!r}")
        if not 0.0 <= self.validation < 1.0:
            raise ConfigError(f"{name}: validation must be in [0, 1), got {self.validation!r}")
        if self.patience is not None:
            positive(name, patience=self.patience)
        if self.resume and self.checkpoint_dir is None:
            raise ConfigError(f"{name}: resume=True needs checkpoint_dir")
        pick_device(self.device)

    # ------------------------------------------------------------------ fit
    def _build(self) -> Any:
        return _vae.nets()[self.kind](self.n_items, int(self.hidden), int(self.factors))

    def _split(self, data: Interactions) -> tuple[sp.csr_matrix, tuple[sp.csr_matrix, sp.csr_matrix] | None]:
        """Training rows, and the validation users' (fold-in, target) rows when ``validation`` > 0."""
        if self.validation == 0:
            return self.user_items_, None
        try:
            split = splits.strong_generalization(
                data, heldout_users=float(self.validation), validation=False, random_state=int(self.random_state)
            )
        except DataError as exc:
            raise DataError(
                f"{type(self).__name__}: cannot hold out validation users ({exc}); or set validation=0"
            ) from None
        users = split.test.users
        fold_in = split.test.fold_in.matrix[users].astype(np.float32)
        target = split.test.target.matrix[users]
        return split.train.matrix.astype(np.float32), (fold_in, target)

    def _fit(self, data: Interactions) -> None:
        torch = require_torch()
        if (self.user_items_.data < 0).any():
            raise DataError(
                f"{data.summary.source}: {self.name} reads interaction values as counts of a multinomial; "
                "they must be >= 0 (drop or shift the negative ones)"
            )
        seed_everything(int(self.random_state))
        device = pick_device(self.device)
        train, val = self._split(data)
        rows = np.nonzero(np.diff(train.indptr) > 0)[0]  # held-out users' rows are empty
        net = self._build().to(device)
        bs = int(self.batch_size)
        n_batches = -(-len(rows) // bs)

        def epoch_rows(epoch: int, phase: int = 0) -> Any:
            """Shuffled dense batches of training histories, drawn from the epoch (exact on resume)."""
            order = rows[np.random.default_rng([int(self.random_state), epoch, phase]).permutation(len(rows))]
            for s in range(0, len(order), bs):
                yield torch.as_tensor(train[order[s : s + bs]].toarray(), device=device)

        validate = None
        if val is not None and val[0].shape[0]:
            fold_in, target = val

            def validate() -> float:
                scores = self._logits(net, fold_in, device)
                scores[fold_in.nonzero()] = -np.inf
                idx, _ = topk(scores, VALIDATION_K)
                return float(np.mean(ndcg_at_k(idx, target, VALIDATION_K)))

        loop = TrainLoop(
            int(self.epochs),
            patience=self.patience,
            checkpoint_dir=None if self.checkpoint_dir is None else Path(self.checkpoint_dir),
            progress=bool(self.progress),
            name=self.name,
            resume=bool(self.resume),
        )
        self.history_: list[dict[str, Any]] = self._train(net, loop, epoch_rows, n_batches, validate)
        self.best_epoch_ = loop.best_epoch
        self.validation_users_ = 0 if val is None else int(val[0].shape[0])
        self._net = net.cpu().eval()

    def _train(self, net: Any, loop: TrainLoop, epoch_rows: Any, n_batches: int, validate: Any) -> list[dict[str, Any]]:
        raise NotImplementedError

    # ------------------------------------------------------------------ scoring
    @staticmethod
    def _logits(net: Any, histories: sp.csr_matrix, device: Any = "cpu") -> np.ndarray:
        """Scores of every item for each history row: logits at the posterior mean (no sampling)."""
        torch = require_torch()
        out = []
        with torch.no_grad():
            for s in range(0, histories.shape[0], SCORE_ROWS):
                x = torch.as_tensor(histories[s : s + SCORE_ROWS].toarray().astype(np.float32), device=device)
                out.append(net(x).float().cpu().numpy())
        return np.vstack(out) if out else np.empty((0, histories.shape[1]), np.float32)

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        scores = self._logits(self._net, self.user_items_[np.asarray(user_idx, np.int64)])
        return scores if item_idx is None else scores[:, item_idx]

    def _score_history(self, item_idx: np.ndarray, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, np.float32)
        if (values < 0).any():
            raise DataError(f"{self.name}: history values are counts of a multinomial and must be >= 0")
        row = sp.csr_matrix((values, (np.zeros(len(item_idx), np.int64), item_idx)), shape=(1, self.n_items))
        row.sum_duplicates()
        return self._logits(self._net, row)[0]

    # ------------------------------------------------------------------ persistence
    def _extra_files(self) -> dict[str, bytes]:
        return {WEIGHTS: module_to_bytes(self._net.scorer())}

    def _load_extra(self, files: dict[str, bytes]) -> None:
        if WEIGHTS not in files:
            raise ModelFormatError(f"{self.name}: saved model has no {WEIGHTS}")
        net = self._build()
        module_from_bytes(net.scorer(), files[WEIGHTS])
        self._net = net.eval()


@register("mult_vae")
class MultVAE(_VAE):
    """Mult-VAE (Liang et al., WWW 2018): multinomial likelihood, KL annealing, [I -> 600 -> 200 -> 600 -> I].

    ``factors`` is the latent size, ``hidden`` the width of the tanh layer on each side,
    ``dropout`` the input dropout; ``beta`` grows by ``1 / anneal_steps`` per update up to
    ``anneal_cap`` (``anneal_steps=0``: ``anneal_cap`` from the start). ``reg`` is the paper's
    lambda, ``reg * sum ||W||^2`` over the weight matrices. Adam; the epoch with the best
    validation NDCG@100 is kept.
    """

    kind = "mult_vae"
    fast_params: ClassVar[dict[str, Any]] = {
        "factors": 8,
        "hidden": 16,
        "epochs": 2,
        "batch_size": 32,
        "validation": 0.0,
        "device": "cpu",
    }
    # ``epochs`` is a cap: the validation users pick the epoch.
    search_space: ClassVar[dict[str, Dist]] = {
        "factors": Int(32, 400, log=True),
        "hidden": Int(100, 1000, log=True),
        "dropout": Float(0.0, 0.8),
        "anneal_cap": Float(0.0, 1.0),
        "anneal_steps": Int(100, 200_000, log=True),
        "learning_rate": LogFloat(1e-4, 1e-2),
    }

    def __init__(
        self,
        factors: int = 200,
        hidden: int = 600,
        dropout: float = 0.5,
        anneal_cap: float = 0.2,
        anneal_steps: int = 200_000,
        reg: float = 0.0,
        epochs: int = 200,
        learning_rate: float = 0.001,
        batch_size: int = 500,
        validation: float = 0.1,
        patience: int | None = 20,
        checkpoint_dir: str | None = None,
        resume: bool = False,
        progress: bool = False,
        device: str = "auto",
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.hidden = hidden
        self.dropout = dropout
        self.anneal_cap = anneal_cap
        self.anneal_steps = anneal_steps
        self.reg = reg
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.validation = validation
        self.patience = patience
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.progress = progress
        self.device = device
        self.random_state = random_state

    def _validate_params(self) -> None:
        super()._validate_params()
        non_negative("MultVAE", anneal_cap=self.anneal_cap, anneal_steps=self.anneal_steps, reg=self.reg)

    def beta(self, update: int) -> float:
        """The KL weight at the ``update``-th (0-based) optimiser step: ``min(cap, update / anneal_steps)``."""
        if self.anneal_steps == 0:
            return float(self.anneal_cap)
        return float(min(self.anneal_cap, update / self.anneal_steps))

    def _train(self, net: Any, loop: TrainLoop, epoch_rows: Any, n_batches: int, validate: Any) -> list[dict[str, Any]]:
        require_torch()
        dropout, reg = float(self.dropout), float(self.reg)

        def batches(epoch: int) -> Any:
            for b, x in enumerate(epoch_rows(epoch)):
                yield x, self.beta(epoch * n_batches + b)  # the update count, from the epoch (resume-exact)

        def step(batch: Any) -> Any:
            x, beta = batch
            mu, logvar = net.encode(x, dropout)
            logits = net.decode(_vae.sample(mu, logvar))
            loss = (beta * _vae.gaussian_kl(mu, logvar) - _vae.multinomial_ll(logits, x)).mean()
            if reg:
                loss = loss + reg * sum(w.pow(2).sum() for w in net.weights())
            return loss

        optimizer = adam(net.parameters(), lr=float(self.learning_rate))
        return loop.run(
            net, optimizer, batches, step, validate, examples_per_batch=lambda b: len(b[0]), steps_per_epoch=n_batches
        )


@register("recvae")
class RecVAE(_VAE):
    """RecVAE (Shenbin et al., WSDM 2020): composite prior, KL weight ``gamma * |x_u|``, alternating updates.

    Each epoch runs ``encoder_epochs`` passes that update the encoder (input ``dropout`` on),
    then makes the current encoder the prior's posterior component, then one pass that updates
    the decoder (dropout off). ``factors`` is the latent size, ``hidden`` the width of the five
    encoder layers. Adam for both halves; the epoch with the best validation NDCG@100 is kept.
    """

    kind = "recvae"
    fast_params: ClassVar[dict[str, Any]] = {
        "factors": 8,
        "hidden": 16,
        "epochs": 2,
        "encoder_epochs": 1,
        "batch_size": 32,
        "validation": 0.0,
        "device": "cpu",
    }
    # ``epochs`` is a cap: the validation users pick the epoch.
    search_space: ClassVar[dict[str, Dist]] = {
        "factors": Int(32, 400, log=True),
        "hidden": Int(100, 1000, log=True),
        "dropout": Float(0.2, 0.8),
        "gamma": LogFloat(1e-4, 5e-2),
        "encoder_epochs": Int(1, 5),
        "learning_rate": LogFloat(1e-4, 5e-3),
    }

    def __init__(
        self,
        factors: int = 200,
        hidden: int = 600,
        dropout: float = 0.5,
        gamma: float = 0.005,
        encoder_epochs: int = 3,
        epochs: int = 50,
        learning_rate: float = 0.0005,
        batch_size: int = 500,
        validation: float = 0.1,
        patience: int | None = 20,
        checkpoint_dir: str | None = None,
        resume: bool = False,
        progress: bool = False,
        device: str = "auto",
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.hidden = hidden
        self.dropout = dropout
        self.gamma = gamma
        self.encoder_epochs = encoder_epochs
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.validation = validation
        self.patience = patience
        self.checkpoint_dir = checkpoint_dir
        self.resume = resume
        self.progress = progress
        self.device = device
        self.random_state = random_state

    def _validate_params(self) -> None:
        super()._validate_params()
        positive("RecVAE", encoder_epochs=self.encoder_epochs)
        non_negative("RecVAE", gamma=self.gamma)

    def _train(self, net: Any, loop: TrainLoop, epoch_rows: Any, n_batches: int, validate: Any) -> list[dict[str, Any]]:
        torch = require_torch()
        dropout, gamma, enc_passes = float(self.dropout), float(self.gamma), int(self.encoder_epochs)

        def batches(epoch: int) -> Any:
            # one Adam over both halves: a half that does not require grad has no gradient, and Adam
            # skips it, so each half keeps its own moments exactly as with two optimisers
            net.encoder.requires_grad_(True)
            net.decoder.requires_grad_(False)
            for p in range(enc_passes):
                for x in epoch_rows(epoch, p):
                    yield "encoder", x
            net.update_prior()
            net.encoder.requires_grad_(False)
            net.decoder.requires_grad_(True)
            for x in epoch_rows(epoch, enc_passes):
                yield "decoder", x
            net.encoder.requires_grad_(True)

        def step(batch: Any) -> Any:
            phase, x = batch
            if phase == "decoder":
                with torch.no_grad():
                    z = _vae.sample(*net.encoder(x))
                return -_vae.multinomial_ll(net.decoder(z), x).mean()
            mu, logvar = net.encoder(x, dropout)
            z = _vae.sample(mu, logvar)
            kl = (_vae.log_normal(z, mu, logvar) - net.log_prior(x, z)).sum(dim=-1) * (gamma * x.sum(dim=-1))
            return (kl - _vae.multinomial_ll(net.decoder(z), x)).mean()

        params = [p for name, p in net.named_parameters() if not name.startswith("old_encoder.")]
        optimizer = torch.optim.Adam(params, lr=float(self.learning_rate))
        return loop.run(
            net,
            optimizer,
            batches,
            step,
            validate,
            examples_per_batch=lambda b: len(b[1]),
            steps_per_epoch=n_batches * (enc_passes + 1),
        )


__all__ = ["MultVAE", "RecVAE"]
