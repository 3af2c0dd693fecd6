"""Data-parallel training (tastebud.scale.ray_train): the split global batch equals the single-process batch.

Fast tests check the pieces in one process (the share cuts, the global in-batch softmax summed
over shares equals the whole batch's loss and gradient). The slow ones run the real thing
without Ray: two OS processes joined by a gloo process group, each fitting with
:func:`data_parallel_hooks`, must end with the single-process weights up to float rounding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from servers import free_port

torch = pytest.importorskip("torch")

from tastebud.core.errors import ConfigError  # noqa: E402
from tastebud.data.synthetic import generate  # noqa: E402
from tastebud.models.two_tower import sampled_softmax_loss, softmax_rows  # noqa: E402
from tastebud.scale.ray_train import Shares, split_batch  # noqa: E402


def _batch(n: int, d: int = 4, seed: int = 0, dup: bool = True):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, d, generator=g, requires_grad=True)
    v = torch.randn(n, d, generator=g, requires_grad=True)
    items = torch.randint(0, 5 if dup else 10_000, (n,), generator=g)  # duplicates on purpose
    logq = torch.rand(n, generator=g)
    neg_v = torch.randn(3, d, generator=g, requires_grad=True)
    neg_items = torch.tensor([1, 2, 7])
    logq_neg = torch.rand(3, generator=g)
    return u, v, items, logq, neg_v, neg_items, logq_neg


@pytest.mark.parametrize("world", [2, 3])
def test_softmax_over_shares_equals_the_whole_batch(world):
    """Weighted share losses against the gathered columns sum to the whole batch's loss and gradient."""
    u, v, items, logq, neg_v, neg_items, logq_neg = _batch(11)
    whole = sampled_softmax_loss(u, v, items, logq, 0.3, neg_v, neg_items, logq_neg)
    gu, gv, gn = torch.autograd.grad(whole, (u, v, neg_v))
    cuts = np.linspace(0, 11, world + 1).round().astype(int)
    total = 0
    for r in range(world):
        lo, hi = cuts[r], cuts[r + 1]
        part = softmax_rows(u[lo:hi], v, items[lo:hi], items, logq, int(lo), 0.3, neg_v, neg_items, logq_neg)
        total = total + part * (hi - lo) / 11
    assert torch.isfinite(whole) and abs(float(total.detach()) - float(whole.detach())) < 1e-6
    su, sv, sn = torch.autograd.grad(total, (u, v, neg_v))
    for a, b in ((gu, su), (gv, sv), (gn, sn)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # a wrong positive column (the local row index) would give a different loss: the test can fail
    wrong = softmax_rows(u[cuts[1] :], v, items[cuts[1] :], items, logq, 0, 0.3, neg_v, neg_items, logq_neg)
    right = softmax_rows(u[cuts[1] :], v, items[cuts[1] :], items, logq, int(cuts[1]), 0.3, neg_v, neg_items, logq_neg)
    assert abs(float(wrong.detach()) - float(right.detach())) > 1e-3


def test_two_tower_and_ncf_shares_cut_rows_and_keep_shared_negatives():
    batch = {"items": torch.arange(7), "hist": torch.arange(14).reshape(7, 2), "neg": torch.arange(7)}
    cut = split_batch("two_tower", {})
    parts = []
    for r in range(2):
        s = Shares(r, 2)
        parts.append(cut(batch, s))
        assert s.rows == s.counts == [4, 3] or s.rows == s.counts == [3, 4]
    assert torch.equal(torch.cat([p["items"] for p in parts]), batch["items"])
    assert torch.equal(torch.cat([p["hist"] for p in parts]), batch["hist"])
    assert all(torch.equal(p["neg"], batch["neg"]) for p in parts)  # the extra negatives go to every rank
    assert cut({"items": torch.arange(1)}, Shares(0, 2)) is None  # fewer rows than workers: skipped by all
    ncf = split_batch("neumf", {})
    s = Shares(1, 2)
    u, i, n = ncf((torch.arange(5), torch.arange(5) + 10, torch.zeros(5, 3)), s)
    assert u.tolist() == [3, 4] or u.tolist() == [2, 3, 4]
    assert s.weight == pytest.approx(len(u) / 5)
    with pytest.raises(ConfigError, match="itemknn"):
        split_batch("itemknn", {})


@pytest.mark.parametrize("loss", ["ce", "bce", "sampled_softmax"])
def test_sasrec_shares_own_their_positions(loss):
    """Targets (and bce negatives) are one per real position, so a block of rows owns a contiguous segment."""
    mask = torch.tensor([[0, 1, 1], [1, 1, 1], [0, 0, 1], [0, 1, 1], [1, 1, 1]], dtype=torch.bool)
    inp = torch.arange(15).reshape(5, 3) * mask
    tgt = inp[mask] + 100
    neg = tgt + 1000 if loss == "bce" else torch.tensor([5, 6])
    cut = split_batch("sasrec", {"loss": loss})
    got = []
    for r in range(2):
        s = Shares(r, 2)
        i, t, m, n = cut((inp, tgt, mask, neg), s)
        assert torch.equal(t, i[m] + 100)  # each share's targets are its own rows' positions
        if loss == "bce":
            assert torch.equal(n, t + 1000)
        else:
            assert torch.equal(n, neg)
        assert sum(s.counts) == int(mask.sum()) and s.counts[r] == len(t)
        got.append(t)
    assert torch.equal(torch.cat(got), tgt)


# ---------------------------------------------------------------------------------- two processes
WORKER = """
import json, os, sys
import torch, torch.distributed as dist
from tastebud.core.registry import get_model
from tastebud.data.synthetic import generate
from tastebud.scale.ray_train import data_parallel_hooks

name, params, out = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
torch.set_num_threads(1)
data = generate(n_users=150, n_items=60, n_interactions=3000, explicit=False, features=False, random_state=5)
model = get_model(name)(**params)
dist.init_process_group("gloo", rank=rank, world_size=world)
model.fit(data, hooks=data_parallel_hooks(rank, world))
if rank == 0:
    model.save(out)
"""




def _fit_two_ranks(tmp_path: Path, name: str, params: dict) -> object:
    import tastebud as tb

    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE="2")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), name, json.dumps(params), str(tmp_path / "model")],
            env=dict(env, RANK=str(r)),
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-2000:]
    return tb.load_model(str(tmp_path / "model"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("two_tower", {"factors": 8, "epochs": 2, "batch_size": 128, "validation": 0.0, "max_history": 10}),
        ("neumf", {"factors": 8, "epochs": 2, "batch_size": 128, "validation": 0.2, "patience": 2}),
        ("sasrec", {"factors": 8, "epochs": 2, "batch_size": 32, "dropout": 0.0, "maxlen": 20}),
    ],
)
def test_two_ranks_follow_the_single_process_trajectory(tmp_path, name, params):
    """Same global batch, summed weighted gradients: the weights after training equal one process's."""
    from tastebud.core.registry import get_model

    params = dict(params, device="cpu", random_state=0)
    data = generate(n_users=150, n_items=60, n_interactions=3000, explicit=False, features=False, random_state=5)
    torch.set_num_threads(1)
    local = get_model(name)(**params).fit(data)
    dist = _fit_two_ranks(tmp_path, name, params)
    users = np.arange(30)
    a, b = local._score(users, None), dist._score(users, None)
    assert np.abs(a).max() > 0.1  # learned something
    np.testing.assert_allclose(b, a, atol=1e-4 * np.abs(a).max())
    np.testing.assert_allclose([h["loss"] for h in dist.history_], [h["loss"] for h in local.history_], rtol=1e-5)
