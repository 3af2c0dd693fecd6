"""Long work shows progress with a total (so an ETA) on stderr when asked, and nothing otherwise."""

from __future__ import annotations

import contextvars
import re
import threading

import pytest
from typer.testing import CliRunner

import tastebud as tb
from tastebud.cli import app
from tastebud.core.progress import enabled, progress_bar, progress_enabled, set_progress
from tastebud.data.synthetic import generate

# a bar with a known total prints "n/total [": the issue's bars without one printed "1917batch ["
TOTAL = re.compile(r"(\d+)/(\d+) \[")

# every model with an iterative fit, small enough to fit in well under a second once compiled
ITERATIVE = {
    "svd": {"factors": 4, "epochs": 3},
    "svdpp": {"factors": 4, "epochs": 3},
    "als": {"factors": 4, "epochs": 3, "threads": 1},
    "bayesmf": {"factors": 2, "epochs": 3, "burn_in": 1, "threads": 1},
    "ials": {"factors": 4, "epochs": 3, "threads": 1},
    "bpr": {"factors": 4, "epochs": 3, "threads": 1},
}


@pytest.fixture(scope="module")
def ratings():
    return generate(n_users=40, n_items=30, n_interactions=400, features=False, random_state=0)


def totals(text: str) -> set[int]:
    return {int(total) for _, total in TOTAL.findall(text)}


@pytest.mark.parametrize("name", sorted(ITERATIVE))
def test_enabled_fit_shows_a_bar_with_its_epoch_total(name, ratings, capsys):
    with enabled():
        tb.get_model(name)(**ITERATIVE[name]).fit(ratings)
    out = capsys.readouterr()
    assert out.out == ""  # stdout stays for results
    assert name in out.err and totals(out.err) == {3}, out.err
    assert ("sweep" if name == "bayesmf" else "epoch") in out.err


@pytest.mark.parametrize("name", sorted(ITERATIVE))
def test_fit_is_silent_by_default_and_when_disabled(name, ratings, capfd):
    assert not progress_enabled()  # the library's default
    tb.get_model(name)(**ITERATIVE[name]).fit(ratings)
    with enabled(False):
        tb.get_model(name)(**ITERATIVE[name]).fit(ratings)
    out = capfd.readouterr()
    assert out.err == "" and out.out == ""


def test_enabled_restores_and_does_not_leak_into_other_threads():
    seen = {}
    with enabled():
        assert progress_enabled()
        with enabled(False):
            assert not progress_enabled()
        assert progress_enabled()
        worker = threading.Thread(target=lambda: seen.update(inner=progress_enabled()))
        worker.start()
        worker.join()
    assert not progress_enabled() and seen == {"inner": False}


def test_set_progress_holds_for_the_current_context(capsys):
    def body() -> tuple[bool, bool]:
        set_progress(True)
        with progress_bar(4, "x") as bar:
            return progress_enabled(), bar.disable

    on, disabled = contextvars.copy_context().run(body)  # a copy: the test's own context stays off
    assert on and not disabled and not progress_enabled()
    assert "0/4 [" in capsys.readouterr().err


# ---------------------------------------------------------------------- torch models
torch_cases = {
    "gmf": {"factors": 4, "layers": 1, "epochs": 2, "batch_size": 256, "validation": 0.0, "device": "cpu"},
    "sasrec": {"factors": 8, "blocks": 1, "maxlen": 8, "epochs": 2, "batch_size": 16, "device": "cpu"},
    "two_tower": {"factors": 8, "epochs": 2, "batch_size": 128, "validation": 0.0, "device": "cpu", "max_history": 8},
}


@pytest.mark.parametrize("name", sorted(torch_cases))
def test_torch_bar_has_a_total_over_every_epoch(name, ratings, capsys):
    pytest.importorskip("torch")
    with enabled():
        tb.get_model(name)(**torch_cases[name]).fit(ratings)
    err = capsys.readouterr().err
    assert f"{name} epoch 1/2" in err and f"{name} epoch 2/2: loss" in err, err
    (total,) = totals(err)  # one bar: batches per epoch x epochs, known from the start
    assert total % 2 == 0 and total >= 2
    assert f"0/{total} [" in err  # the total shows from the first draw, before any batch ran


def test_torch_bar_is_sized_after_the_first_epoch_when_the_model_does_not_say(capsys):
    torch = pytest.importorskip("torch")
    from tastebud.models._torch import TrainLoop

    net = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    x = torch.ones(8, 2)

    def batches(epoch):
        return (x[s : s + 2] for s in range(0, 8, 2))  # 4 batches per epoch

    with enabled():
        TrainLoop(epochs=3, name="tiny").run(net, opt, batches, lambda b: net(b).pow(2).mean())
    assert 12 in totals(capsys.readouterr().err)


def test_model_progress_param_still_forces_bars(ratings, capsys):
    pytest.importorskip("torch")
    tb.get_model("gmf")(**torch_cases["gmf"], progress=True).fit(ratings)
    assert "gmf epoch 2/2: loss" in capsys.readouterr().err


# ---------------------------------------------------------------------- the CLI
runner = CliRunner()


@pytest.fixture()
def ratings_csv(tmp_path, ratings):
    path = tmp_path / "r.csv"
    ratings.to_frame().rename(columns={"value": "rating"}).to_csv(path, index=False)
    return path


def _train(args, tmp_path, csv):
    cmd = [*args, "train", "svd", "--data", str(csv), "--rating-col", "rating", "-o", str(tmp_path / "m")]
    return runner.invoke(app, [*cmd, "-p", "epochs=3", "-p", "factors=4"])


def test_cli_train_shows_progress_by_default(tmp_path, ratings_csv):
    res = _train([], tmp_path, ratings_csv)
    assert res.exit_code == 0, res.output
    assert "fitting svd on" in res.stderr and totals(res.stderr) == {3}, res.stderr
    assert "fitted svd" in res.stdout and "/3" not in res.stdout
    assert not progress_enabled()  # the CLI's setting ends with the command


def test_cli_quiet_silences_progress(tmp_path, ratings_csv):
    res = _train(["--quiet"], tmp_path, ratings_csv)
    assert res.exit_code == 0, res.output
    assert res.stderr == "" and "fitted svd" in res.stdout
