"""Bayesian Personalised Ranking (Rendle, Freudenthaler, Gantner & Schmidt-Thieme, UAI 2009).

BPR-Opt maximises ``sum_(u,i,j) ln sigma(x_ui - x_uj) - reg |theta|^2`` over triples of a user,
an item they had and one they did not, with ``x_ui = b_i + w_u . h_i`` (matrix factorisation
plus an item bias). LearnBPR draws the triples uniformly (bootstrap sampling) and takes one SGD
step per triple; here the steps run in parallel, Hogwild style (see :mod:`tastebud.kernels.bpr`).

Determinism: the sample stream depends only on ``random_state`` (fixed chunks, each with its
own seeded generator), so ``threads=1`` reproduces a fit exactly; with more threads concurrent
updates to the same item may interleave differently from run to run.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from tastebud.core.base import Recommender, non_negative, positive
from tastebud.core.errors import TrainingError
from tastebud.core.progress import progress_bar
from tastebud.core.registry import register
from tastebud.core.results import Explanation
from tastebud.core.space import Dist, Int, LogFloat
from tastebud.data.interactions import Interactions
from tastebud.kernels import bpr as K
from tastebud.models._common import check_values, cosine_rows, numba_threads

# samples of an epoch are cut into this many chunks whatever the thread count (reproducibility)
_CHUNKS = 256


@register("bpr")
class BPR(Recommender):
    """Matrix factorisation trained for pairwise ranking by SGD on sampled (u, i, j) triples.

    ``epochs`` passes, each of as many samples as there are training entries;
    ``learning_rate`` and ``reg`` as in LearnBPR; ``threads``: 1 (default) for bit-for-bit
    reproducible fits, 0 for every core (Hogwild, faster, not reproducible). ``train_auc_`` keeps, per epoch, the share of sampled triples
    ranked correctly before the step (a cheap estimate of training AUC).
    """

    history_preference: ClassVar[int | None] = 6
    demo_params: ClassVar[dict[str, Any] | None] = {}
    lab_default: ClassVar[bool] = True

    fast_params: ClassVar[dict[str, Any]] = {"factors": 8, "epochs": 5, "learning_rate": 0.05, "threads": 1}
    search_space: ClassVar[dict[str, Dist]] = {
        "factors": Int(8, 256, log=True),
        "learning_rate": LogFloat(1e-3, 0.2),
        "reg": LogFloat(1e-5, 0.1),
        "epochs": Int(10, 200, log=True),
    }

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.01832,
        reg: float = 0.007257,
        epochs: int = 50,
        threads: int = 1,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.reg = reg
        self.epochs = epochs
        self.threads = threads
        self.random_state = random_state

    def _validate_params(self) -> None:
        positive("BPR", factors=self.factors, epochs=self.epochs, learning_rate=self.learning_rate)
        non_negative("BPR", reg=self.reg, threads=self.threads)

    def _fit(self, data: Interactions) -> None:
        check_values(self.user_items_.data, "interaction values")
        # every stored entry with a value > 0 is a positive (BPR ranks, it does not weigh)
        m = self._positives(self.user_items_)
        k = int(self.factors)
        rng = np.random.default_rng(self.random_state)
        # Rendle et al. initialise from a zero-mean normal with small variance
        self.user_factors_ = (rng.standard_normal((data.n_users, k)) * 0.1).astype(np.float32)
        self.item_factors_ = (rng.standard_normal((data.n_items, k)) * 0.1).astype(np.float32)
        self.item_bias_ = np.zeros(data.n_items, np.float32)
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int32), np.diff(m.indptr))
        indptr = m.indptr.astype(np.int64)
        n_samples = int(m.nnz)
        auc = []
        seed = int(self.random_state) & 0x7FFFFFFF
        if n_samples:
            with numba_threads(self.threads), progress_bar(int(self.epochs), self.name, "epoch") as bar:
                for epoch in range(int(self.epochs)):
                    logl, correct, skipped = K.bpr_epoch(
                        rows, indptr, m.indices, self.user_factors_, self.item_factors_, self.item_bias_,
                        np.float32(self.learning_rate), np.float32(self.reg), n_samples, _CHUNKS, seed, epoch,
                    )  # fmt: skip
                    if not np.isfinite(logl) or not np.isfinite(self.item_factors_).all():
                        raise TrainingError(
                            f"BPR diverged in epoch {epoch + 1} (non-finite loss): lower learning_rate "
                            f"(now {self.learning_rate}) or raise reg (now {self.reg})"
                        )
                    auc.append(float(correct) / max(1, n_samples - int(skipped)))
                    bar.set_postfix(auc=f"{auc[-1]:.4f}", refresh=False)
                    bar.update(1)
        self.train_auc_ = np.asarray(auc, np.float64)

    @staticmethod
    def _positives(matrix: sp.csr_matrix) -> sp.csr_matrix:
        m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
        m.data = (m.data > 0).astype(np.float32)
        m.eliminate_zeros()
        m.sort_indices()
        return m

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        if item_idx is None:
            return self.user_factors_[user_idx] @ self.item_factors_.T + self.item_bias_[None, :]
        return self.user_factors_[user_idx] @ self.item_factors_[item_idx].T + self.item_bias_[item_idx][None, :]

    def _similar(self, item_idx: np.ndarray) -> np.ndarray:
        return cosine_rows(self.item_factors_, item_idx)

    def _explain(self, user_idx: int, item_idx: np.ndarray, history: sp.csr_matrix) -> list[Explanation]:
        """The history items whose factors are closest (cosine) to the recommended item's."""
        hist = sp.csr_matrix(history).indices
        out = []
        sims = cosine_rows(self.item_factors_, np.asarray(item_idx, np.int64)) if len(hist) else None
        for row, i in enumerate(item_idx):
            if sims is None:
                out.append(
                    Explanation(f"item bias {self.item_bias_[i]:+.2f}", [("item_bias", float(self.item_bias_[i]))])
                )
                continue
            s = sims[row, hist]
            top = np.argsort(-s, kind="stable")[:5]
            ids = self.items_.to_ids(hist[top])
            out.append(
                Explanation(
                    f"like {', '.join(map(str, ids[:3]))} in your history",
                    [(x, float(w)) for x, w in zip(ids, s[top], strict=False)],
                )
            )
        return out


__all__ = ["BPR"]
