"""The CLI, run in-process as a user would: exit codes and one-line errors for bad input."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from tastebud.cli import app

runner = CliRunner()


def _csv(tmp_path, text, name="r.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_train_and_recommend_round_trip(tmp_path):
    data = _csv(tmp_path, "user,item,rating\na,x,5\na,y,3\nb,x,4\nb,z,2\nc,y,5\nc,z,1\n")
    out = tmp_path / "model"
    res = runner.invoke(app, ["train", "bias", "--data", str(data), "--rating-col", "rating", "--out", str(out), "-p", "epochs=5"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["recommend", "--model", str(out), "--user", "a", "--k", "2", "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert payload["results"][0]["user"] == "a"
    assert [e["item"] for e in payload["results"][0]["items"]] == ["z"]
    res = runner.invoke(app, ["recommend", "--model", str(out), "--history", "x,nope", "--json"])
    assert res.exit_code == 0
    assert "nope" in json.loads(res.output)["warnings"][0]


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    bad = _csv(tmp_path, "user,item,rating\na,x,5\nb,y,abc\n")
    res = runner.invoke(app, ["data", "info", "--data", str(bad), "--rating-col", "rating"])
    assert res.exit_code == 2
    assert "line 3" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["data", "info", "--data", str(tmp_path / "missing.csv")])
    assert res.exit_code == 2 and "no such file" in res.output
    res = runner.invoke(app, ["train", "nope", "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "no model named 'nope'" in res.output
    good = _csv(tmp_path, "user,item\na,x\n", "g.csv")
    res = runner.invoke(app, ["train", "bias", "--data", str(good), "--out", str(tmp_path / "m"), "-p", "epochs=-1"])
    assert res.exit_code == 2 and "epochs must be > 0" in res.output
    res = runner.invoke(app, ["recommend", "--model", str(tmp_path / "nothing"), "--user", "a"])
    assert res.exit_code == 2 and "not a tastebud model folder" in res.output


def test_models_lists_registry():
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0 and "popular" in res.output.split()


def test_evaluate_writes_tables(tmp_path, data_root):
    outs = [tmp_path / "r.csv", tmp_path / "r.json", tmp_path / "r.md"]
    args = ["evaluate", "--dataset", "ml-100k-fixed", "--models", "popular,random", "--path", str(data_root)]
    for o in outs:
        args += ["--out", str(o)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(outs[0])
    assert set(frame.model) == {"popular", "random"}
    assert frame.set_index("model").loc["popular", "ndcg@10"] > frame.set_index("model").loc["random", "ndcg@10"]
    assert json.loads(outs[1].read_text())[0]["model"] in {"popular", "random"}
    assert outs[2].read_text().startswith("| model |")
