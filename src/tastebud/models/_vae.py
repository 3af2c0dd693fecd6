"""The networks and losses of the variational autoencoders (``models/vae.py`` holds the estimators).

Both encode a user's L2-normalised history, with input dropout, into a diagonal Gaussian
``q(z | x) = N(mu, diag(exp(logvar)))``; both decode ``z`` into logits over every item, whose
softmax is the multinomial ``pi(z)`` of the likelihood ``log p(x | z) = sum_i x_i log pi_i(z)``.
At scoring time ``z = mu`` (no sampling), so a history always gives the same scores.

PyTorch is imported when :func:`nets` is first called, so that importing tastebud never needs it.
"""

from __future__ import annotations

import math
from typing import Any

from tastebud.models._torch import require_torch

#: RecVAE's composite prior: weights of the standard normal, the previous encoder's posterior and
#: the wide normal, and the wide normal's log-variance (the authors' code: 3/20, 3/4, 1/10; 10).
PRIOR_WEIGHTS = (3 / 20, 3 / 4, 1 / 10)
WIDE_LOGVAR = 10.0
#: RecVAE's encoder: dense layers with layer norm (epsilon 0.1, as the authors') and skip connections.
RECVAE_LAYERS = 5

_NETS: dict[str, Any] = {}


def log_normal(x: Any, mu: Any, logvar: Any) -> Any:
    """Element-wise ``log N(x; mu, exp(logvar))``."""
    return -0.5 * (logvar + math.log(2 * math.pi) + (x - mu).pow(2) / logvar.exp())


def multinomial_ll(logits: Any, x: Any) -> Any:
    """Per-user multinomial log-likelihood ``sum_i x_i log softmax(logits)_i`` (its constant dropped)."""
    torch = require_torch()
    return (torch.log_softmax(logits, dim=-1) * x).sum(dim=-1)


def gaussian_kl(mu: Any, logvar: Any) -> Any:
    """Per-user ``KL(N(mu, exp(logvar)) || N(0, I))`` in closed form."""
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(dim=-1)


def nets() -> dict[str, Any]:
    """The module classes, built on first use."""
    if _NETS:
        return _NETS
    torch = require_torch()
    nn, F = torch.nn, torch.nn.functional

    def normalised(x: Any, dropout: float, training: bool) -> Any:
        # L2-normalise each history (an empty one stays zero), then drop inputs at random
        return F.dropout(F.normalize(x, p=2.0, dim=-1), p=dropout, training=training)

    def liang_init(layer: Any) -> Any:
        nn.init.xavier_uniform_(layer.weight)  # Glorot weights, tiny Gaussian biases (Liang's code)
        nn.init.trunc_normal_(layer.bias, std=0.001)
        return layer

    class MultVAENet(nn.Module):
        """Liang et al.'s [I -> hidden -> factors] encoder and [factors -> hidden -> I] decoder, tanh between."""

        def __init__(self, n_items: int, hidden: int, factors: int) -> None:
            super().__init__()
            self.factors = factors
            self.enc_hidden = liang_init(nn.Linear(n_items, hidden))
            self.enc_out = liang_init(nn.Linear(hidden, 2 * factors))  # mu and logvar
            self.dec_hidden = liang_init(nn.Linear(factors, hidden))
            self.dec_out = liang_init(nn.Linear(hidden, n_items))

        def encode(self, x: Any, dropout: float = 0.0) -> tuple[Any, Any]:
            h = torch.tanh(self.enc_hidden(normalised(x, dropout, self.training)))
            out = self.enc_out(h)
            return out[:, : self.factors], out[:, self.factors :]

        def decode(self, z: Any) -> Any:
            return self.dec_out(torch.tanh(self.dec_hidden(z)))

        def weights(self) -> list[Any]:
            """The weight matrices the paper's L2 penalty covers (not the biases)."""
            return [m.weight for m in (self.enc_hidden, self.enc_out, self.dec_hidden, self.dec_out)]

        def forward(self, x: Any) -> Any:
            """Scores: the decoder's logits at the posterior mean."""
            return self.decode(self.encode(x)[0])

        def scorer(self) -> Any:
            """The modules scoring needs (all of them)."""
            return self

    class RecVAEEncoder(nn.Module):
        """Shenbin et al.'s encoder: swish dense layers, each fed the sum of all earlier ones, layer-normed."""

        def __init__(self, n_items: int, hidden: int, factors: int) -> None:
            super().__init__()
            self.dense = nn.ModuleList(
                [nn.Linear(n_items, hidden)] + [nn.Linear(hidden, hidden) for _ in range(RECVAE_LAYERS - 1)]
            )
            self.norms = nn.ModuleList([nn.LayerNorm(hidden, eps=0.1) for _ in range(RECVAE_LAYERS)])
            self.mu = nn.Linear(hidden, factors)
            self.logvar = nn.Linear(hidden, factors)

        def forward(self, x: Any, dropout: float = 0.0) -> tuple[Any, Any]:
            h = normalised(x, dropout, self.training)
            skip = None
            for dense, norm in zip(self.dense, self.norms, strict=True):
                pre = dense(h) if skip is None else dense(h) + skip
                h = norm(F.silu(pre))  # swish
                skip = h if skip is None else skip + h
            return self.mu(h), self.logvar(h)

    class RecVAENet(nn.Module):
        """RecVAE: the encoder above, a linear decoder, and the composite prior's frozen old encoder."""

        def __init__(self, n_items: int, hidden: int, factors: int) -> None:
            super().__init__()
            self.encoder = RecVAEEncoder(n_items, hidden, factors)
            self.decoder = nn.Linear(factors, n_items)
            self.old_encoder = RecVAEEncoder(n_items, hidden, factors)
            self.old_encoder.requires_grad_(False)
            self.update_prior()

        @torch.no_grad()
        def update_prior(self) -> None:
            """The prior's posterior component becomes the current encoder (once per epoch)."""
            self.old_encoder.load_state_dict(self.encoder.state_dict())

        def log_prior(self, x: Any, z: Any) -> Any:
            """Element-wise ``log p(z | phi_old, x)`` under the three-component mixture."""
            with torch.no_grad():
                old_mu, old_logvar = self.old_encoder(x)
            zero = torch.zeros_like(z)
            parts = [
                log_normal(z, zero, zero),
                log_normal(z, old_mu, old_logvar),
                log_normal(z, zero, torch.full_like(z, WIDE_LOGVAR)),
            ]
            stacked = torch.stack([p + math.log(w) for p, w in zip(parts, PRIOR_WEIGHTS, strict=True)], dim=-1)
            return torch.logsumexp(stacked, dim=-1)

        def forward(self, x: Any) -> Any:
            """Scores: the decoder's logits at the posterior mean."""
            return self.decoder(self.encoder(x)[0])

        def scorer(self) -> Any:
            """The modules scoring needs (saved with the model; the prior's copy is not)."""
            return nn.ModuleDict({"encoder": self.encoder, "decoder": self.decoder})

    _NETS.update(mult_vae=MultVAENet, recvae=RecVAENet)
    return _NETS


def sample(mu: Any, logvar: Any) -> Any:
    """The reparameterised draw ``z = mu + eps * exp(logvar / 2)``, ``eps ~ N(0, I)`` (torch's seeded RNG)."""
    torch = require_torch()
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
