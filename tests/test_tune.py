"""tastebud.tune: a search that only sees training data, its outputs, and the `tune` command."""

from __future__ import annotations

import inspect
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

import tastebud as tb
from tastebud.cli import app
from tastebud.core.errors import ConfigError, DataError, TrainingError
from tastebud.data import splits
from tastebud.tune import load_params, parse_metric, tune, validation_split

pytest.importorskip("optuna")
pytest.importorskip("matplotlib")

runner = CliRunner()
FAST_IALS = {"threads": 1, "epochs": 4}


# ---------------------------------------------------------------------------- no test set
def test_the_api_cannot_receive_test_data(synth_implicit):
    split = splits.holdout(synth_implicit, random_state=1)
    for given in (split, (split.train, split.test), [split.train, split.test]):
        with pytest.raises(DataError, match="never sees a test set"):
            tune("ials", given, trials=1)
        with pytest.raises(DataError, match="never sees a test set"):
            validation_split(given, "ials")
    names = set(inspect.signature(tune).parameters)
    assert not {n for n in names if "test" in n or "split" in n or "eval" in n}, names


def test_the_carve_follows_the_metric_and_the_model(synth):
    top_n = validation_split(synth, "itemknn", "ndcg@10", random_state=3)
    assert top_n.name.startswith("holdout") and len(top_n.train) + len(top_n.test) == len(synth)
    ratings = validation_split(synth, "svd", "rmse", random_state=3)
    assert ratings.name == "fold1of5" and len(ratings.train) + len(ratings.test) == len(synth)
    # per-user holdout: every user validated on keeps training events; random ratings need not
    users_val = set(top_n.test.user_idx) - set(top_n.train.user_idx)
    assert not users_val
    pytest.importorskip("torch")
    last = validation_split(synth, "sasrec", "ndcg@10")
    assert last.name == "last1"
    assert len(last.test) == len(set(last.test.user_idx))  # one (the latest) item per user
    frame = synth.to_frame()
    for u, ts in zip(last.test.user_idx[:10], last.test.timestamps[:10], strict=True):
        assert ts == frame.loc[frame["user"] == synth.users.ids[u], "timestamp"].max()


def test_metric_parsing_and_mismatches(synth_implicit):
    assert parse_metric("NDCG@10").label == "ndcg@10" and parse_metric("recall").k == 10
    assert not parse_metric("rmse").maximize and parse_metric("map@5").maximize
    for bad in ("foo", "ndcg@0", "ndcg@x", "rmse@5"):
        with pytest.raises(ConfigError):
            parse_metric(bad)
    with pytest.raises(ConfigError, match="predicts no ratings"):
        tune("ials", synth_implicit, metric="rmse", trials=1)
    with pytest.raises(ConfigError, match="data is implicit"):
        tune("bias", synth_implicit, metric="rmse", trials=1)
    with pytest.raises(ConfigError, match="no hyper-parameter 'nope'"):
        tune("ials", synth_implicit, params={"nope": 1}, trials=1)
    with pytest.raises(ConfigError, match="trials or timeout"):
        tune("ials", synth_implicit, trials=None)


# ---------------------------------------------------------------------------- the search
def test_search_beats_a_deliberately_bad_start(synth_implicit):
    bad = {"factors": 1, "reg": 1e4}
    result = tune("ials", synth_implicit, trials=6, params=FAST_IALS, enqueue=[bad], random_state=0)
    first = result.trials.iloc[0]
    assert first["factors"] == 1 and first["reg"] == 1e4 and first["state"] == "COMPLETE"
    assert result.value > first["value"]
    assert result.params["factors"] != 1
    assert result.params["threads"] == 1 and result.params["epochs"] == 4  # fixed parameters are kept
    assert result.value == result.trials["value"].max()


def test_same_seed_same_search(synth_implicit):
    a = tune("ials", synth_implicit, trials=4, params=FAST_IALS, random_state=7)
    b = tune("ials", synth_implicit, trials=4, params=FAST_IALS, random_state=7)
    c = tune("ials", synth_implicit, trials=4, params=FAST_IALS, random_state=8)
    assert a.params == b.params and a.value == b.value
    pd.testing.assert_frame_equal(a.trials.drop(columns="seconds"), b.trials.drop(columns="seconds"))
    assert a.trials["factors"].tolist() != c.trials["factors"].tolist()


def test_rating_metric_is_minimised(synth):
    result = tune("bias", synth, metric="rmse", trials=4, random_state=0)
    assert not result.maximize and result.metric == "rmse"
    assert result.value == result.trials["value"].min()
    assert set(result.params) == {"reg_user_bias", "reg_item_bias"}


def test_a_diverging_trial_is_recorded_and_the_search_goes_on(synth):
    fixed = {"epochs": 5, "factors": 4}
    result = tune("svd", synth, metric="rmse", trials=3, params=fixed, enqueue=[{"learning_rate": 1000.0}])
    first = result.trials.iloc[0]
    assert first["state"] == "FAIL" and "lower learning_rate" in first["error"]
    assert (result.trials["state"].iloc[1:] == "COMPLETE").all() and result.params["learning_rate"] != 1000.0
    with pytest.raises(TrainingError, match="no trial completed .*lower learning_rate"):
        tune("svd", synth, metric="rmse", trials=2, params={**fixed, "learning_rate": 1000.0})


def test_nothing_to_search_is_one_fit(synth_implicit):
    result = tune("random", synth_implicit, trials=5)
    assert len(result.trials) == 1 and result.params == {"random_state": 0}


@pytest.mark.slow
def test_neural_trials_report_each_epoch_to_the_pruner(synth_implicit):
    pytest.importorskip("torch")
    fixed = {"epochs": 2, "validation": 0.3, "patience": None, "device": "cpu", "batch_size": 512}
    result = tune("gmf", synth_implicit, trials=2, params=fixed)
    assert (result.trials["epochs_reported"] == 2).all()
    assert all(len(t.intermediate_values) == 2 for t in result.study.trials)


def test_epoch_observer_hears_every_epoch_and_can_stop_training(synth_implicit):
    pytest.importorskip("torch")
    from tastebud.models._torch import epoch_observer

    model = tb.get_model("gmf")(factors=4, epochs=3, validation=0.3, patience=None, device="cpu", batch_size=512)
    heard: list[tuple[int, float]] = []
    with epoch_observer(lambda epoch, metric: heard.append((epoch, metric))):
        model.fit(synth_implicit)
    assert [e for e, _ in heard] == [1, 2, 3]
    assert [m for _, m in heard] == [row["metric"] for row in model.history_]

    class Stop(Exception):
        pass

    def stop(epoch: int, metric: float) -> None:
        heard.append((epoch, metric))
        raise Stop

    heard.clear()
    with pytest.raises(Stop), epoch_observer(stop):
        model.clone().fit(synth_implicit)
    assert len(heard) == 1
    model.clone().fit(synth_implicit)  # outside the block nobody listens
    assert len(heard) == 1


# ---------------------------------------------------------------------------- outputs
def test_save_writes_json_csv_png_and_load_params_reads_them(synth_implicit, tmp_path):
    result = tune("ials", synth_implicit, trials=3, params=FAST_IALS)
    paths = result.save(tmp_path / "out" / "best.json")
    assert load_params(paths["json"]) == result.params
    assert (
        tb.get_model("ials")(**json.loads(paths["json"].read_text())).get_params()["factors"]
        == result.params["factors"]
    )
    table = pd.read_csv(paths["csv"])
    assert len(table) == 3 and {"trial", "state", "value", "factors", "reg", "alpha"} <= set(table.columns)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["best.history.png", "best.json", "best.trials.csv"]
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="list.json: must hold a JSON object"):
        load_params(tmp_path / "list.json")
    with pytest.raises(DataError, match="no such parameter file"):
        load_params(tmp_path / "missing.json")


def _csv(data, path):
    data.to_frame().to_csv(path, index=False)
    return path


def test_cli_tune_then_train_with_the_best_parameters(synth_implicit, tmp_path):
    data = _csv(synth_implicit, tmp_path / "d.csv")
    best = tmp_path / "best.json"
    args = ["tune", "ials", "--data", str(data), "--trials", "3", "--random-state", "1", "--out", str(best)]
    res = runner.invoke(app, ["--quiet", *args, "-p", "threads=1", "-p", "epochs=3"])
    assert res.exit_code == 0, res.output
    assert "best validation ndcg@10" in res.output
    for name in ("best.json", "best.trials.csv", "best.history.png"):
        assert (tmp_path / name).is_file()
    params = json.loads(best.read_text())
    res = runner.invoke(
        app, ["train", "ials", "--data", str(data), "-p", f"@{best}", "-p", "cg_steps=2", "-o", str(tmp_path / "m")]
    )
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "m" / "manifest.json").read_text())["params"]
    assert {k: saved[k] for k in params} == params and saved["cg_steps"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tune", "nope"], "no model named 'nope'"),
        (["tune", "ials", "--metric", "foo@3"], "unknown metric 'foo@3'"),
        (["tune", "ials", "--data", "{tmp}/missing.csv"], "missing.csv: no such file"),
        (["tune", "ials", "--data", "{tmp}/d.csv", "--metric", "rmse"], "predicts no ratings"),
        (
            ["train", "ials", "--data", "{tmp}/d.csv", "-p", "@{tmp}/none.json", "-o", "{tmp}/m"],
            "none.json: no such parameter file",
        ),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(synth_implicit, tmp_path, args, message):
    _csv(synth_implicit, tmp_path / "d.csv")
    res = runner.invoke(app, [a.format(tmp=tmp_path) for a in args])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    # one error line (a file read as implicit adds its one-line note on stderr first)
    assert len([line for line in res.output.strip().splitlines() if not line.startswith("note:")]) == 1
