"""tastebud.tune.choose_fusion: a hybrid's members, fusion and weights chosen on a carve from training."""

from __future__ import annotations

import inspect
import json
from typing import ClassVar

import numpy as np
import pytest
from typer.testing import CliRunner

import tastebud as tb
from tastebud.cli import app
from tastebud.core import registry
from tastebud.core.base import Recommender
from tastebud.core.errors import ConfigError, DataError
from tastebud.data import splits
from tastebud.data.sources import load_file
from tastebud.data.synthetic import generate
from tastebud.eval.evaluate import evaluate_fitted
from tastebud.models.hybrid import Hybrid
from tastebud.tune import choose_fusion, load_params, validation_split

runner = CliRunner()
# iALS at its plain-penalty setting: the tests below were written for it on this small set
MEMBERS = {
    "ials": {"threads": 1, "epochs": 4, "factors": 8, "reg": 0.1, "alpha": 4.0, "reg_exponent": 0.0},
    "itemknn": {},
    "popular": {},
}


@pytest.fixture(scope="module")
def data():
    return generate(n_users=120, n_items=60, n_interactions=3600, explicit=False, random_state=0)


@pytest.fixture(scope="module")
def chosen(data):
    # pool >= the catalogue: every list is ranked over all unseen items, exactly as the hybrid ranks
    return choose_fusion(data, MEMBERS, pool=60, refit=True, random_state=0)


def _carve_value(data, params, random_state=0):
    """What evaluation says of a configuration fitted on the carve (the search's own numbers, recomputed)."""
    split = validation_split(data, "hybrid", "ndcg@10", random_state=random_state)
    fitted = [tb.get_model(name)(**params["params"][name]).fit(split.train) for name in params["models"]]
    blend = Hybrid.from_fitted(
        fitted, weights=params["weights"], method=params["method"], rrf_k=params.get("rrf_k", 60)
    )
    return evaluate_fitted(blend, split, k=10, metrics=("ndcg",))["ndcg@10"]


def test_the_choice_is_no_worse_than_any_member_alone(chosen):
    assert set(chosen.member_values) == set(MEMBERS)
    assert all(chosen.value >= v for v in chosen.member_values.values())
    assert chosen.value == chosen.trials["value"].max()
    # every subset of at most three, both fusions and several weightings were tried
    assert set(chosen.trials["method"]) == {"score", "rrf"} and set(chosen.trials["size"]) == {1, 2, 3}
    assert chosen.single == (len(chosen.params["models"]) == 1)


def test_the_search_value_is_what_evaluation_gives_the_fitted_blend(data, chosen):
    assert _carve_value(data, chosen.params) == pytest.approx(chosen.value, abs=1e-12)
    # a member alone scores what its own ranking scores
    alone = {"models": ["itemknn"], "weights": [1.0], "method": "score", "params": {"itemknn": {"random_state": 0}}}
    assert _carve_value(data, alone) == pytest.approx(chosen.member_values["itemknn"], abs=1e-12)


def test_a_single_member_can_win_and_says_so(data):
    # blending ials with random noise only hurts: every blend trails ials alone
    result = choose_fusion(data, {"ials": MEMBERS["ials"], "random": {}}, pool=60)
    assert result.single and result.params["models"] == ["ials"]
    assert result.value == result.member_values["ials"] > result.member_values["random"]
    assert (result.trials.loc[result.trials["size"] == 2, "value"] < result.value).all()
    one = choose_fusion(data, ["popular"], pool=10)
    assert one.single and one.params["models"] == ["popular"] and len(one.trials) == 1


def test_deterministic_under_a_seed(data, chosen):
    again = choose_fusion(data, MEMBERS, pool=60, random_state=0)
    assert again.params == chosen.params and again.value == chosen.value
    assert again.trials.equals(chosen.trials)
    other = choose_fusion(data, MEMBERS, pool=60, random_state=1)
    assert other.validation["split"] == chosen.validation["split"]
    assert not other.trials["value"].equals(chosen.trials["value"])  # another carve, other numbers


def test_the_api_cannot_receive_test_data(data):
    split = splits.holdout(data, random_state=1)
    for given in (split, (split.train, split.test)):
        with pytest.raises(DataError, match="never sees a test set"):
            choose_fusion(given, ["popular"])
    names = set(inspect.signature(choose_fusion).parameters)
    assert not {n for n in names if "test" in n or "split" in n or "eval" in n}, names


class Spy(Recommender):
    """Popularity that writes down the (user, item) pairs of every fit."""

    log: ClassVar[list[set[tuple[int, int]]]] = []

    def __init__(self) -> None:
        pass

    def _fit(self, data: tb.Interactions) -> None:
        Spy.log.append(set(zip(data.user_idx.tolist(), data.item_idx.tolist(), strict=True)))
        self.counts_ = np.bincount(data.item_idx, minlength=data.n_items).astype(np.float32)

    def _score(self, user_idx, item_idx):
        row = self.counts_ if item_idx is None else self.counts_[item_idx]
        return np.tile(row, (len(user_idx), 1))


@pytest.fixture
def spy(monkeypatch):
    Spy.name = "spy"
    monkeypatch.setitem(registry._REGISTRY, "spy", Spy)
    Spy.log.clear()
    yield Spy
    Spy.log.clear()


def test_members_are_fitted_on_the_carve_then_on_all_the_data(data, spy):
    result = choose_fusion(data, ["spy", "random"], pool=60, refit=True)
    split = validation_split(data, "hybrid", "ndcg@10", random_state=0)
    pairs = lambda d: set(zip(d.user_idx.tolist(), d.item_idx.tolist(), strict=True))  # noqa: E731
    assert result.params["models"] == ["spy"] and result.model is not None  # popularity beats noise
    carve, everything = spy.log  # one fit on the carve for the search, one refit on everything
    assert carve == pairs(split.train) and not carve & pairs(split.test)
    assert everything == pairs(data)


def test_bad_arguments(data):
    with pytest.raises(ConfigError, match="predicts no ratings"):
        choose_fusion(generate(n_users=40, n_items=30, n_interactions=600, random_state=0), ["bias"], metric="rmse")
    with pytest.raises(ConfigError, match="cannot contain 'hybrid'"):
        choose_fusion(data, ["hybrid", "popular"])
    with pytest.raises(ConfigError, match="duplicate"):
        choose_fusion(data, ["popular", "popular"])
    with pytest.raises(ConfigError, match="nope"):
        choose_fusion(data, {"popular": {"nope": 1}})
    with pytest.raises(ConfigError, match="methods"):
        choose_fusion(data, ["popular"], methods=["sum"])
    with pytest.raises(ConfigError, match="pool"):
        choose_fusion(data, ["popular"], pool=0)


def test_the_refitted_hybrid_saves_and_loads_to_identical_lists(data, chosen, tmp_path):
    model = chosen.model
    assert model is not None and model.get_params()["models"] == chosen.params["models"]
    model.save(tmp_path / "m")
    loaded = tb.load_model(tmp_path / "m")
    users = data.users.ids[:20]
    a, b = model.recommend(users, k=10), loaded.recommend(users, k=10)
    np.testing.assert_array_equal(np.vstack(a.items), np.vstack(b.items))
    np.testing.assert_array_equal(np.vstack(a.scores), np.vstack(b.scores))
    # the same configuration fitted from its parameters recommends the same
    again = Hybrid(**chosen.params).fit(data).recommend(users, k=10)
    np.testing.assert_array_equal(np.vstack(again.items), np.vstack(a.items))


def test_cli_tune_hybrid_then_train_with_best_json(data, tmp_path):
    csv = tmp_path / "d.csv"
    data.to_frame().to_csv(csv, index=False)
    read = load_file(csv)  # what the command reads (its own id order)
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "ials.json").write_text(json.dumps(MEMBERS["ials"]))
    best = tmp_path / "best.json"
    args = ["--quiet", "tune", "hybrid", "--data", str(csv), "--members", "ials,itemknn,popular", "--pool", "60"]
    res = runner.invoke(app, [*args, "--member-params", f"@{tmp_path / 'params'}", "--out", str(best)])
    assert res.exit_code == 0, res.output
    assert "best validation ndcg@10" in res.output and "each member alone" in res.output
    library = choose_fusion(read, MEMBERS, pool=60, refit=True)
    params = load_params(best)
    assert params == json.loads(json.dumps(library.params))  # the same carve and search as the library's
    assert (tmp_path / "best.trials.csv").is_file()
    train = ["--quiet", "train", "hybrid", "--data", str(csv), "-p", f"@{best}", "-o", str(tmp_path / "m")]
    res = runner.invoke(app, train)
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "m" / "manifest.json").read_text())["params"]
    assert {k: saved[k] for k in params} == params
    users = read.users.ids[:10]
    served = tb.load_model(tmp_path / "m").recommend(users, k=10)
    np.testing.assert_array_equal(np.vstack(served.items), np.vstack(library.model.recommend(users, k=10).items))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--members", "ials,ials"], "names a model twice"),
        (["--members", "ials", "--member-params", "ease=@x.json"], "not in --members"),
        (["--members", "ials", "--member-params", "ials"], "expects NAME=@file.json"),
        (["--members", "ials", "--trials", "3"], "drop --param, --trials"),
        (["--member-params", "ials=@x.json"], "needs --members"),
    ],
)
def test_cli_bad_fusion_input_is_one_line_and_exit_2(data, tmp_path, extra, message):
    csv = tmp_path / "d.csv"
    data.to_frame().to_csv(csv, index=False)
    res = runner.invoke(app, ["tune", "hybrid", "--data", str(csv), *extra])
    assert res.exit_code == 2, res.output
    assert message in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["tune", "ials", "--data", str(csv), "--members", "ials"])
    assert res.exit_code == 2 and "tune hybrid --members" in res.output
