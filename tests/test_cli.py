"""The CLI, run in-process as a user would: exit codes and one-line errors for bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest
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
    res = runner.invoke(
        app, ["train", "bias", "--data", str(data), "--rating-col", "rating", "--out", str(out), "-p", "epochs=5"]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["recommend", "--model", str(out), "--user", "a", "--k", "2", "--json"])
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    assert payload["results"][0]["user"] == "a"
    assert [e["item"] for e in payload["results"][0]["items"]] == ["z"]
    res = runner.invoke(app, ["recommend", "--model", str(out), "--history", "x,nope", "--json"])
    assert res.exit_code == 0
    assert "nope" in json.loads(res.output)["warnings"][0]


def test_recommend_for_a_history_has_no_user_column(tmp_path):
    # a new person has no id: the table shows item, score, rank, not a user column reading "None"
    data = _csv(tmp_path, "user,item\na,x\na,y\nb,x\nb,z\nc,y\nc,z\n")
    out = tmp_path / "model"
    assert runner.invoke(app, ["train", "popular", "--data", str(data), "--out", str(out)]).exit_code == 0
    res = runner.invoke(app, ["recommend", "--model", str(out), "--history", "x", "--k", "2"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    header = next(line for line in res.output.splitlines() if "item" in line)
    assert "user" not in header and "None" not in res.output, res.output
    res = runner.invoke(app, ["recommend", "--model", str(out), "--user", "a"], env={"COLUMNS": "200"})
    assert "user" in next(line for line in res.output.splitlines() if "item" in line), res.output


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


# ---------------------------------------------------------------------------- a newcomer's first hour (#20)
SEED_CSV = "user,item,rating\nAmit,Inception,5\nAmit,Arrival,4\nBeth,Inception,4\nBeth,Up,2\nCarl,Up,5\nCarl,WALL-E,5\n"


def _subprocess_cli(*args, columns=80):
    import os
    import subprocess
    import sys

    env = dict(os.environ, COLUMNS=str(columns), PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run(
        [sys.executable, "-m", "tastebud", *args], capture_output=True, text=True, env=env, timeout=300
    )


def _synth_csv(tmp_path, users=60, items=40, interactions=1200):
    out = tmp_path / "syn.csv"
    res = runner.invoke(
        app,
        [
            "data",
            "synth",
            "--out",
            str(out),
            "--users",
            str(users),
            "--items",
            str(items),
            "--interactions",
            str(interactions),
        ],
    )
    assert res.exit_code == 0, res.output
    return out


def test_evaluate_takes_a_file_and_fits_80_columns(tmp_path):
    data = _synth_csv(tmp_path)
    out = tmp_path / "r.csv"
    proc = _subprocess_cli(
        "evaluate", "--data", str(data), "--models", "popular,bias", "--folds", "2", "--seed", "1", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    header = next(line for line in lines if "model" in line)
    for name in ("ndcg@10", "recall@10", "rmse", "fit s"):
        assert name in header, header
    assert "…" not in proc.stdout and max(map(len, lines)) <= 80, proc.stdout
    assert "±" in proc.stdout and "2 folds" in proc.stdout
    frame = pd.read_csv(out).set_index("model")
    # everything goes to --out: every metric, its mean and its spread over the folds
    for col in ("ndcg@10", "ndcg@10_std", "precision@10", "map@10", "mrr@10", "coverage", "mae", "rmse_std"):
        assert col in frame.columns, col
    assert set(frame.index) == {"popular", "bias"} and frame.loc["popular", "ndcg@10_std"] >= 0


def test_evaluate_with_no_test_users_says_so_in_one_line(tmp_path):
    data = _csv(tmp_path, SEED_CSV)
    res = runner.invoke(app, ["evaluate", "--data", str(data), "--models", "popular"])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no test users" in errors[0] and "fewer than 5" in errors[0]
    assert "nan" not in res.output and "RuntimeWarning" not in res.output and "Traceback" not in res.output


def test_version():
    import tastebud as tb

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"tastebud {tb.__version__}"


def test_help_shows_no_type_tag_on_flags():
    for command in ([], ["recommend"], ["evaluate"], ["data", "synth"], ["serve"]):
        res = runner.invoke(app, [*command, "--help"])
        assert res.exit_code == 0, res.output
        assert "--help" in res.output and "<bool>" not in res.output, (command, res.output)
    assert "<path>" in runner.invoke(app, ["recommend", "--help"]).output  # options that take a value keep theirs


def test_models_lists_a_description_and_an_existing_docs_page():
    from pathlib import Path

    import tastebud as tb

    res = runner.invoke(app, ["models"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "Items ranked by how many people interacted with them." in res.output
    assert "docs/conventions.md" in res.output and "docs/ials.md" in res.output
    root = Path(__file__).resolve().parents[1]
    for name in tb.list_models():
        try:
            cls = tb.get_model(name)
        except tb.UnknownModelError:
            continue
        assert (root / cls.docs_path()).is_file(), (name, cls.docs_path())


def test_recommend_shows_titles(tmp_path, data_root):
    model = tmp_path / "pop"
    res = runner.invoke(
        app, ["train", "popular", "--dataset", "ml-100k", "--path", str(data_root), "--out", str(model)]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["recommend", "--model", str(model), "--history", "1", "--k", "3"], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "Star Wars (1977)" in res.output, res.output
    # a file from `data synth` carries its titles too (features beside it); JSON gets them as well
    data = _synth_csv(tmp_path)
    res = runner.invoke(app, ["train", "popular", "--data", str(data), "--out", str(model)])
    assert res.exit_code == 0, res.output
    payload = json.loads(runner.invoke(app, ["recommend", "--model", str(model), "--user", "u1", "--json"]).stdout)
    entries = payload["results"][0]["items"]
    features = pd.read_parquet(tmp_path / "syn.items.parquet").set_index("item")
    assert entries and all(e["title"] == features.loc[e["item"], "title"] for e in entries)


def test_usage_errors_are_one_line_and_exit_2(tmp_path):
    for args, words in (
        (["recommend", "--model", "x", "--user", "a", "--k", "-3"], "'--k'"),
        (["recommend", "--user", "a"], "Missing option '--model'"),
        (["evaluate", "--folds", "zero"], "'--folds'"),
        (["nope"], "No such command"),
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, (args, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], (args, res.output)


def test_serve_refuses_a_busy_port_before_announcing(tmp_path, monkeypatch):
    import socket

    pytest.importorskip("uvicorn")
    import tastebud as tb

    data = tb.Interactions.from_frame(pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"]}))
    tb.get_model("popular")().fit(data).save(tmp_path / "pop")
    calls = []
    monkeypatch.setattr("uvicorn.run", lambda application, **kw: calls.append(kw))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = runner.invoke(app, ["serve", "--model", str(tmp_path / "pop"), "--port", str(port), "--token", "t" * 16])
    assert res.exit_code == 2 and not calls, res.output
    assert f"port {port}" in res.output and "in use" in res.output and "serving" not in res.output


def test_train_needs_data_named(tmp_path):
    res = runner.invoke(app, ["train", "popular", "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "--data FILE or --dataset NAME" in res.output
    assert not (tmp_path / "m").exists()
    res = runner.invoke(app, ["train", "popular", "--dataset", "synthetic", "--out", str(tmp_path / "m")])
    assert res.exit_code == 0 and (tmp_path / "m" / "manifest.json").is_file(), res.output


def test_a_rating_column_is_found_and_said(tmp_path):
    import tastebud as tb

    rated = _csv(tmp_path, SEED_CSV.replace("rating", "Score"))
    res = runner.invoke(app, ["data", "info", "--data", str(rated)])
    assert res.exit_code == 0 and "reading column 'Score'" in res.output and "explicit" in res.output, res.output
    res = runner.invoke(app, ["data", "info", "--data", str(rated), "--rating-col", "none"])
    assert res.exit_code == 0 and "implicit" in res.output and "reading column" not in res.output, res.output
    plain = _csv(tmp_path, "user,item\na,x\nb,y\n", "plain.csv")
    res = runner.invoke(app, ["data", "info", "--data", str(plain)])
    assert res.exit_code == 0 and "implicit interaction" in res.output and "--rating-col" in res.output
    # every command that reads --data does the same: train keeps the scale of the ratings it found
    res = runner.invoke(app, ["train", "bias", "--data", str(rated), "--out", str(tmp_path / "m")])
    assert res.exit_code == 0 and "reading column 'Score'" in res.output, res.output
    assert tb.load_model(str(tmp_path / "m")).rating_scale_ == (2.0, 5.0)


def test_data_synth_writes_the_item_features_it_promises(tmp_path):
    from tastebud.data.io import item_features_path, read_item_features

    data = _synth_csv(tmp_path)
    features = read_item_features(item_features_path(data))
    assert item_features_path(data) == tmp_path / "syn.items.parquet"
    assert len(features) == 40 and {"title", "year", "genres"} <= set(features.columns)
    assert list(features["genres"].iloc[0])  # lists stay lists
    res = runner.invoke(app, ["data", "info", "--data", str(data)])
    assert res.exit_code == 0 and "item_features" in res.output and "'title'" in res.output, res.output


def test_recommend_clips_predicted_ratings_to_the_scale(tmp_path):
    rows = "a,y,5\na,z,5\nb,x,5\nc,x,5\nd,x,5\nb,w,1\nc,w,1\nd,w,1\nb,y,3\nc,z,3\n"
    data = _csv(tmp_path, "user,item,rating\n" + rows)
    out = tmp_path / "bias"
    res = runner.invoke(
        app, ["train", "bias", "--data", str(data), "--out", str(out), "-p", "reg_user_bias=0", "-p", "reg_item_bias=0"]
    )
    assert res.exit_code == 0, res.output
    import tastebud as tb

    raw = tb.load_model(str(out)).recommend(["a"], k=2)
    assert raw.scores[0][0] > 5  # the model's own score runs past the scale
    res = runner.invoke(app, ["recommend", "--model", str(out), "--user", "a", "--k", "2", "--json"])
    items = json.loads(res.stdout)["results"][0]["items"]
    assert [e["item"] for e in items] == list(raw.items[0]) and max(e["score"] for e in items) == 5.0


def test_train_tune_evaluate_and_data_info_share_one_set_of_data_options(tmp_path):
    """The data options are declared once (``cli.DataOptions``): every command that reads data shows
    the same ones, with the same help (``--dataset`` aside), and they reach the reader."""
    import inspect

    from tastebud import cli

    fields = ["dataset", "data", "path", "user_col", "item_col", "rating_col", "time_col"]
    helps = []
    for command in (cli.train, cli.tune_cmd, cli.evaluate, cli.data_info):
        params = inspect.signature(command).parameters
        assert "source" not in params and [n for n in params if n in fields] == fields, command.__name__
        helps.append([params[n].default.help for n in fields[1:]])
    assert all(h == helps[0] for h in helps)
    data = _csv(tmp_path, "u,i,stars\na,x,5\nb,y,3\n")
    res = runner.invoke(
        app, ["data", "info", "--data", str(data), "--user-col", "u", "--item-col", "i", "--rating-col", "stars"]
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["data", "info", "--data", str(data)])
    assert res.exit_code == 2 and "'user'" in res.output
