"""The shared training loop: resume equals an uninterrupted run, divergence is named, best is kept."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tastebud.core.errors import ConfigError, ModelFormatError, TrainingError  # noqa: E402
from tastebud.models._torch import (  # noqa: E402
    TrainLoop,
    adam,
    module_from_bytes,
    module_to_bytes,
    pick_device,
    require_torch,
    seed_everything,
)

X = np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32)
Y = (X @ np.arange(1, 6, dtype=np.float32) + 0.5).astype(np.float32)


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hidden = torch.nn.Linear(5, 8)
        self.drop = torch.nn.Dropout(0.3)  # consumes the global RNG: resume must restore it
        self.out = torch.nn.Linear(8, 1)

    def forward(self, x):
        return self.out(self.drop(torch.relu(self.hidden(x)))).squeeze(-1)


def make(seed: int = 0):
    seed_everything(seed)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    return net, opt


def batches(epoch: int):
    order = np.random.default_rng([7, epoch]).permutation(len(X))  # epoch-seeded sampling
    for s in range(0, len(X), 16):
        idx = order[s : s + 16]
        yield torch.from_numpy(X[idx]), torch.from_numpy(Y[idx])


def step_of(net):
    def step(batch):
        x, y = batch
        return torch.mean((net(x) - y) ** 2)

    return step


def weights(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def test_resume_after_kill_equals_uninterrupted(tmp_path):
    net, opt = make()
    full = TrainLoop(epochs=5, checkpoint_dir=tmp_path / "a", name="net").run(net, opt, batches, step_of(net))
    expected = weights(net)

    net2, opt2 = make()
    calls = {"n": 0}
    inner = step_of(net2)

    def dying(batch):
        calls["n"] += 1
        if calls["n"] == 2 * 4 + 3:  # third batch of the third epoch: the process "dies"
            raise KeyboardInterrupt
        return inner(batch)

    with pytest.raises(KeyboardInterrupt):
        TrainLoop(epochs=5, checkpoint_dir=tmp_path / "b", name="net").run(net2, opt2, batches, dying)
    doc = json.loads((tmp_path / "b" / "net.json").read_text())
    assert doc["epoch"] == 1 and not doc["finished"]
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == ["net-e0001.safetensors", "net.json"]

    net3, opt3 = make(seed=123)  # a fresh process: different initial weights, global RNG elsewhere
    torch.rand(17)
    loop = TrainLoop(epochs=5, checkpoint_dir=tmp_path / "b", name="net", resume=True)
    resumed = loop.run(net3, opt3, batches, step_of(net3))
    assert loop.resumed_from == 1
    got = weights(net3)
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    assert [h["epoch"] for h in resumed] == [1, 2, 3, 4, 5]
    assert [h["loss"] for h in resumed] == [h["loss"] for h in full]


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    net, opt = make()
    TrainLoop(epochs=2, checkpoint_dir=tmp_path, name="n").run(net, opt, batches, step_of(net))
    before = weights(net)
    net2, opt2 = make(seed=5)
    hist = TrainLoop(epochs=2, checkpoint_dir=tmp_path, name="n", resume=True).run(net2, opt2, batches, step_of(net2))
    assert len(hist) == 2
    for key, value in weights(net2).items():
        assert torch.equal(value, before[key])


def test_resume_with_more_epochs_continues(tmp_path):
    net, opt = make()
    TrainLoop(epochs=4).run(net, opt, batches, step_of(net))
    expected = weights(net)
    net2, opt2 = make()
    TrainLoop(epochs=2, checkpoint_dir=tmp_path, name="n").run(net2, opt2, batches, step_of(net2))
    net3, opt3 = make(seed=3)
    hist = TrainLoop(epochs=4, checkpoint_dir=tmp_path, name="n", resume=True).run(net3, opt3, batches, step_of(net3))
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    for key, value in weights(net3).items():
        assert torch.equal(value, expected[key]), key


def test_nan_loss_names_learning_rate():
    seed_everything(0)
    net = Net()
    opt = torch.optim.SGD(net.parameters(), lr=1e6)
    with pytest.raises(TrainingError, match="learning_rate"):
        TrainLoop(epochs=20).run(net, opt, batches, step_of(net))


def test_early_stopping_restores_best():
    net, opt = make()
    script = iter([0.1, 0.5, 0.3, 0.2, 0.9, 1.0])
    snapshots = []

    def validate():
        snapshots.append(weights(net))
        return next(script)

    loop = TrainLoop(epochs=6, patience=2)
    hist = loop.run(net, opt, batches, step_of(net), validate=validate, examples_per_batch=lambda b: len(b[0]))
    assert [h["metric"] for h in hist] == [0.1, 0.5, 0.3, 0.2]  # stopped after 2 epochs without gain
    assert loop.stopped_early and loop.best_epoch == 2 and loop.best_metric == 0.5
    for key, value in weights(net).items():
        assert torch.equal(value, snapshots[1][key])
    assert not net.training
    assert all(h["examples_per_s"] > 0 for h in hist)


def test_training_actually_learns():
    net, opt = make()
    hist = TrainLoop(epochs=30).run(net, opt, batches, step_of(net))
    assert hist[-1]["loss"] < 0.4 * hist[0]["loss"]


def test_bytes_round_trip_and_bad_payload():
    net, _ = make()
    other, _ = make(seed=9)
    module_from_bytes(other, module_to_bytes(net))
    for key, value in weights(net).items():
        assert torch.equal(value, other.state_dict()[key])
    with pytest.raises(ModelFormatError):
        module_from_bytes(other, b"not safetensors")
    wrong = torch.nn.Linear(3, 3)
    with pytest.raises(ModelFormatError, match="shape"):
        module_from_bytes(wrong, module_to_bytes(net))


def test_corrupt_or_mismatched_checkpoint(tmp_path):
    net, opt = make()
    TrainLoop(epochs=1, checkpoint_dir=tmp_path, name="n").run(net, opt, batches, step_of(net))
    wrong = torch.nn.Linear(3, 3)
    with pytest.raises(ConfigError, match="does not match"):
        TrainLoop(epochs=2, checkpoint_dir=tmp_path, name="n", resume=True).run(
            wrong, torch.optim.Adam(wrong.parameters()), batches, step_of(wrong)
        )
    path = tmp_path / "n-e0000.safetensors"
    path.write_bytes(path.read_bytes()[:-3] + b"xyz")
    with pytest.raises(ModelFormatError, match="SHA-256"):
        TrainLoop(epochs=2, checkpoint_dir=tmp_path, name="n", resume=True).run(net, opt, batches, step_of(net))


def test_config_errors():
    assert require_torch() is torch
    assert pick_device("cpu").type == "cpu"
    assert pick_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("auto") == pick_device(None)
    with pytest.raises(ConfigError, match="device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            pick_device("cuda")
    with pytest.raises(ConfigError, match="epochs"):
        TrainLoop(epochs=0)
    with pytest.raises(ConfigError, match="patience"):
        TrainLoop(epochs=3, patience=0)
    with pytest.raises(ConfigError, match="checkpoint_dir"):
        TrainLoop(epochs=3, resume=True)


def test_progress_reports_loss_and_speed(capsys):
    net, opt = make()
    TrainLoop(epochs=2, progress=True, name="tiny").run(
        net, opt, batches, step_of(net), validate=lambda: 0.5, examples_per_batch=16, steps_per_epoch=4
    )
    out = capsys.readouterr()
    text = out.out + out.err
    assert "tiny epoch 2/2: loss" in text and "metric 0.5000" in text and "ex/s" in text


def test_openmp_runtimes_load_with_sleeping_waits_unless_the_user_chose(monkeypatch):
    import os

    from tastebud.models._openmp import sleeping_waits

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    with sleeping_waits():
        assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "OMP_WAIT_POLICY" not in os.environ  # only for the moment a runtime loads
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    with sleeping_waits():
        assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_adam_is_the_fused_kernel_with_the_same_update():
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    ref = torch.nn.Parameter(w.detach().clone())
    fused, plain = adam([w], lr=0.1, weight_decay=0.01), torch.optim.Adam([ref], lr=0.1, weight_decay=0.01)
    assert fused.param_groups[0]["fused"]
    for _ in range(5):
        for p, opt in ((w, fused), (ref, plain)):
            opt.zero_grad()
            (p**2).sum().backward()
            opt.step()
    torch.testing.assert_close(w.detach(), ref.detach())
    assert not torch.equal(w.detach(), torch.tensor([1.0, -2.0, 3.0]))
