"""The blend: the probe protocol (no member sees the probe before the blender is learned), the
blenders on synthetic member predictions with known answers, clipping, explanations, persistence."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

import tastebud as tb
from tastebud.core import registry
from tastebud.core.base import RatingModel
from tastebud.core.errors import ConfigError, DataError
from tastebud.models.blend import Blend, _ridge, _rmse

FAST = {"bias": {}, "svd": {"factors": 4, "epochs": 8, "random_state": 0}}


class Spy(RatingModel):
    """A bias model that writes down every (user, item) pair it is fitted on and asked to predict."""

    log: ClassVar[list[tuple[str, set[tuple[int, int]]]]] = []

    def __init__(self) -> None:
        pass

    def _fit(self, data: tb.Interactions) -> None:
        Spy.log.append(("fit", set(zip(data.user_idx.tolist(), data.item_idx.tolist(), strict=True))))
        self.mean_ = float(data.values.mean())

    def _predict_pairs(self, user_idx: np.ndarray, item_idx: np.ndarray) -> np.ndarray:
        Spy.log.append(("predict", set(zip(user_idx.tolist(), item_idx.tolist(), strict=True))))
        return np.full(len(user_idx), self.mean_)

    def _score(self, user_idx: np.ndarray, item_idx: np.ndarray | None) -> np.ndarray:
        return np.full((len(user_idx), self.n_items if item_idx is None else len(item_idx)), self.mean_)


@pytest.fixture
def spy(monkeypatch):
    Spy.name = "spy"
    monkeypatch.setitem(registry._REGISTRY, "spy", Spy)
    Spy.log.clear()
    yield Spy
    Spy.log.clear()


@pytest.mark.parametrize("probe_by", ["random", "latest"])
def test_no_member_sees_the_probe_before_the_blender_is_learned(synth, spy, probe_by):
    blend = Blend(members={"spy": {}, "bias": {}}, blender="ridge", probe_by=probe_by, random_state=3).fit(synth)
    kinds = [kind for kind, _ in spy.log]
    assert kinds == ["fit", "predict", "fit"]  # fit on the base, predict the probe, refit on everything
    (_, base), (_, probe), (_, full) = spy.log
    everything = set(zip(synth.user_idx.tolist(), synth.item_idx.tolist(), strict=True))
    assert probe and not base & probe  # the probe rows were never in the first fit
    assert base | probe == everything and full == everything
    assert 0.05 < len(probe) / len(everything) < 0.15
    assert blend.blender_ == "ridge"
    if probe_by == "latest":  # each user's probe ratings are later than their base ratings
        frame = synth.to_frame()
        frame["pair"] = list(zip(synth.user_idx.tolist(), synth.item_idx.tolist(), strict=True))
        frame["probe"] = frame["pair"].isin(probe)
        by_user = frame.groupby("user")
        for _, rows in by_user:
            if rows["probe"].any() and (~rows["probe"]).any():
                assert rows.loc[rows["probe"], "timestamp"].min() >= rows.loc[~rows["probe"], "timestamp"].max()


def test_ridge_recovers_known_weights():
    rng = np.random.default_rng(0)
    x = rng.normal(3.5, 0.8, (5000, 3))
    y = 0.4 + 0.5 * x[:, 0] + 0.2 * x[:, 1] + 0.25 * x[:, 2] + rng.normal(0, 0.01, 5000)
    np.testing.assert_allclose(_ridge(x, y, 1e-8), [0.4, 0.5, 0.2, 0.25], atol=0.01)
    # the chooser sees the same answer through the blend's own path
    blend = Blend(blender="ridge")
    blend.meta_mean_, blend.meta_std_ = np.zeros(1), np.ones(1)
    blend._learn_blender(x, np.zeros((5000, 1)), y)
    np.testing.assert_allclose(blend.blend_weights_, [0.4, 0.5, 0.2, 0.25], atol=0.01)
    assert blend.reg_ <= 1e-3  # the least penalised fits best


def synthetic_case(n: int = 6000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two members: one accurate for well-supported users, the other for the rest (a meta-feature tells which)."""
    rng = np.random.default_rng(seed)
    support = rng.uniform(0, 5, n)
    truth = rng.normal(3.5, 1.0, n)
    heavy = support > 2.5
    a = truth + rng.normal(0, np.where(heavy, 0.2, 1.2))
    b = truth + rng.normal(0, np.where(heavy, 1.2, 0.2))
    return np.column_stack([a, b]), support[:, None], truth


@pytest.mark.parametrize("kind", ["fwls", "lgbm"])
def test_fwls_and_lightgbm_beat_the_worst_member_and_ridge(kind):
    if kind == "lgbm":
        pytest.importorskip("lightgbm")
    x, meta, y = synthetic_case()
    xt, mt, yt = synthetic_case(seed=1)
    blends = {}
    for name in ("ridge", kind):
        blend = Blend(blender=name)
        blend.meta_mean_, blend.meta_std_ = meta.mean(axis=0), meta.std(axis=0)
        blend._learn_blender(x, meta, y)
        blends[name] = _rmse(blend._blend(xt, mt), yt)
    worst = max(_rmse(xt[:, j], yt) for j in range(2))
    assert blends[kind] < worst
    assert blends[kind] < blends["ridge"] - 0.05  # the weights that move with the meta-feature pay


def test_auto_picks_on_the_inner_fold():
    pytest.importorskip("lightgbm")
    x, meta, y = synthetic_case()
    blend = Blend(blender="auto")
    blend.meta_mean_, blend.meta_std_ = meta.mean(axis=0), meta.std(axis=0)
    blend._learn_blender(x, meta, y)
    assert {k.split()[0] for k in blend.inner_rmse_} == {"ridge", "fwls", "lgbm"}
    assert blend.blender_ in ("fwls", "lgbm")


@pytest.fixture(scope="module", params=["ridge", "fwls", "lgbm"])
def fitted(request, synth):
    if request.param == "lgbm":
        pytest.importorskip("lightgbm")
    return Blend(members=FAST, blender=request.param).fit(synth)


def test_predictions_are_clipped(fitted, synth):
    users = synth.users.to_ids(synth.user_idx[:40]).tolist()
    items = synth.items.to_ids(synth.item_idx[:40]).tolist()
    lo, hi = synth.rating_scale
    pred = fitted.predict(users, items)
    assert lo <= pred.min() and pred.max() <= hi
    shifted = Blend(**fitted.get_params())
    shifted.__dict__.update({k: v for k, v in fitted.__dict__.items()})
    if fitted.blender_ == "lgbm":
        shifted.blender_ = "ridge"
    shifted.blend_weights_ = np.concatenate([[100.0], np.zeros(len(fitted.member_names_))])
    if fitted.blender_ == "fwls":
        shifted.blender_ = "ridge"
    assert (shifted.predict(users, items) == hi).all()  # a blend far above the scale is clipped to its top


def test_explain_shows_every_member_and_adds_up(fitted, synth):
    user = synth.users.ids[0].item()
    recs = fitted.recommend([user], k=3, explain=True)
    for exp in recs.explanations[0]:
        assert fitted.blender_ in exp.text and all(name in exp.text for name in fitted.member_names_)
    items = recs.items_of(0)
    rows = fitted.contributions([user] * len(items), items)
    u, i = fitted.users_.index([user] * len(items), "user"), fitted.items_.index(items, "item")
    raw = fitted._predict_pairs(u, i)
    for row, value in zip(rows, raw, strict=True):
        assert [name for name, *_ in row] == [*fitted.member_names_, "(base)"]
        assert sum(c for *_, c in row) == pytest.approx(value, abs=1e-6)


def test_save_load_round_trip(fitted, synth, tmp_path):
    fitted.save(tmp_path / "b")
    loaded = tb.load_model(tmp_path / "b")
    users = synth.users.to_ids(synth.user_idx[:50]).tolist()
    items = synth.items.to_ids(synth.item_idx[:50]).tolist()
    times = synth.timestamps[:50].tolist()
    np.testing.assert_allclose(loaded.predict(users, items, times), fitted.predict(users, items, times), rtol=1e-6)
    assert loaded.blender_ == fitted.blender_ and loaded.member_names_ == fitted.member_names_
    assert not list((tmp_path / "b").glob("*.pkl"))


def test_default_members_follow_the_data():
    with_time = Blend()._member_specs(timestamps=True)
    without = Blend()._member_specs(timestamps=False)
    assert [n for n, _ in with_time] == ["bias", "itemknn", "userknn", "svd", "svdpp", "bayesmf", "timesvdpp"]
    assert "timesvdpp" not in [n for n, _ in without]
    assert dict(with_time)["itemknn"]["prediction"] == "baseline"


def test_bad_configurations_are_named():
    with pytest.raises(ConfigError, match="duplicate"):
        Blend(members=["svd", "svd"])._check_params()
    with pytest.raises(ConfigError, match="no model named"):
        Blend(members=["nope"])._check_params()
    with pytest.raises(ConfigError, match="does not predict ratings"):
        Blend(members=["ials"])._check_params()
    with pytest.raises(ConfigError, match=r"members\['svd'\].*factors"):
        Blend(members={"svd": {"factors": 0}})._check_params()
    with pytest.raises(ConfigError, match="probe"):
        Blend(probe=1.5)._check_params()


def test_time_member_without_timestamps_names_the_column():
    frame = pd.DataFrame({"user": np.repeat(np.arange(20), 6), "item": np.tile(np.arange(6), 20)})
    frame["rating"] = (frame["user"] + frame["item"]) % 5 + 1.0
    data = tb.Interactions.from_frame(frame, "user", "item", "rating", scale=(1.0, 5.0))
    with pytest.raises(DataError, match="time column"):
        Blend(members={"bias": {}, "timesvdpp": {"factors": 2, "epochs": 2}}, blender="ridge", probe=0.3).fit(data)
    with pytest.raises(DataError, match="time column"):
        Blend(members=["bias"], probe_by="latest").fit(data)


# ---------------------------------------------------------------------- cross-fitting (probe_by="folds")
def test_cross_fitting_predicts_every_rating_once_from_members_that_never_saw_it(synth, spy):
    Blend(members={"spy": {}, "bias": {}}, blender="ridge", probe_by="folds", folds=4, random_state=3).fit(synth)
    kinds = [kind for kind, _ in spy.log]
    assert kinds == ["fit", "predict"] * 4 + ["fit"]  # K rounds of fit-and-predict, then the refit
    everything = set(zip(synth.user_idx.tolist(), synth.item_idx.tolist(), strict=True))
    assert len(everything) == len(synth)  # one rating per pair, so pairs stand for ratings
    held = [rows for kind, rows in spy.log[:-1] if kind == "predict"]
    seen = [rows for kind, rows in spy.log[:-1] if kind == "fit"]
    assert sum(len(h) for h in held) == len(everything) and set().union(*held) == everything  # exactly once each
    for fitted_on, predicted in zip(seen, held, strict=True):
        assert fitted_on == everything - predicted  # the member saw every other fold and not this one
        assert 0.15 < len(predicted) / len(everything) < 0.35
    assert spy.log[-1] == ("fit", everything)


def test_cross_fitted_blender_learns_on_every_training_rating(synth, monkeypatch):
    rows: list[np.ndarray] = []
    learn = Blend._learn_blender

    def recording(self, x, meta, y):  # type: ignore[no-untyped-def]
        rows.append(y)
        assert x.shape == (len(y), len(self.member_names_)) and len(meta) == len(y)
        return learn(self, x, meta, y)

    monkeypatch.setattr(Blend, "_learn_blender", recording)
    Blend(members=FAST, blender="ridge", probe_by="folds", folds=3).fit(synth)
    (y,) = rows
    np.testing.assert_array_equal(np.sort(y), np.sort(synth.values.astype(np.float64)))
    Blend(members=FAST, blender="ridge", probe_by="random", probe=0.1).fit(synth)
    assert len(rows[1]) < 0.2 * len(synth)  # one probe: a tenth of the rows


def test_cross_fitting_is_deterministic_under_random_state(synth, spy):
    def folds(seed: int) -> list[set]:
        spy.log.clear()
        Blend(members={"spy": {}}, blender="ridge", probe_by="folds", folds=3, random_state=seed).fit(synth)
        return [rows for kind, rows in spy.log if kind == "predict"][:3]

    assert folds(0) == folds(0) and folds(0) != folds(1)
    users = synth.users.to_ids(synth.user_idx[:60]).tolist()
    items = synth.items.to_ids(synth.item_idx[:60]).tolist()
    a, b = (Blend(members=FAST, blender="fwls", probe_by="folds", folds=3).fit(synth) for _ in range(2))
    np.testing.assert_array_equal(a.predict(users, items), b.predict(users, items))
    np.testing.assert_array_equal(a.blend_weights_, b.blend_weights_)


def test_cross_fitted_blend_saves_and_loads(synth, tmp_path):
    blend = Blend(members=FAST, blender="ridge", probe_by="folds", folds=3).fit(synth)
    blend.save(tmp_path / "b")
    loaded = tb.load_model(tmp_path / "b")
    assert loaded.get_params() == blend.get_params() and loaded.folds == 3
    users = synth.users.to_ids(synth.user_idx[:50]).tolist()
    items = synth.items.to_ids(synth.item_idx[:50]).tolist()
    np.testing.assert_allclose(loaded.predict(users, items), blend.predict(users, items), rtol=1e-6)
    assert not list((tmp_path / "b").glob("*.pkl"))


def test_cross_fitting_shows_every_member_fit(synth, capsys):
    from tastebud.core.progress import enabled

    with enabled():
        Blend(members=FAST, blender="ridge", probe_by="folds", folds=3).fit(synth)
    err = capsys.readouterr().err
    assert "blend" in err and "/9 [" in err and "member fit" in err  # (3 folds + the refit) x 2 members + blender


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"folds": 1}, "folds must be an integer >= 2"),
        ({"folds": 2.5}, "folds must be an integer"),
        ({"folds": True}, "folds must be an integer"),
        ({"probe_by": "kfold"}, "probe_by must be one of"),
    ],
)
def test_bad_cross_fitting_values_are_one_line_errors(params, match):
    with pytest.raises(ConfigError, match=match) as info:
        Blend(**params)._check_params()
    assert "\n" not in str(info.value)


def test_too_many_folds_for_the_data_is_a_data_error():
    frame = pd.DataFrame({"user": np.repeat(np.arange(4), 4), "item": np.tile(np.arange(4), 4)})
    frame["rating"] = (frame["user"] + frame["item"]) % 5 + 1.0
    data = tb.Interactions.from_frame(frame, "user", "item", "rating", scale=(1.0, 5.0))
    with pytest.raises(DataError, match="16 ratings for 10 folds; cross-fitting needs at least 20"):
        Blend(members=["bias"], probe_by="folds", folds=10).fit(data)
    with pytest.raises(DataError, match="needs at least 10"):
        Blend(members=["bias"], probe_by="folds", folds=3).fit(data.subset(np.arange(len(data)) < 9))
    # at the floor every rating is a blender row; a handful still gives the blender an inner fold
    fitted = Blend(members=["bias", "svd"], blender="ridge", probe_by="folds", folds=5).fit(data)
    assert np.isfinite(fitted.blend_weights_).all() and fitted.blender_ == "ridge"
