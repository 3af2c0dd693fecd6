"""Loading lives in the persistence layer (``core/persist.py``): one function reads a model folder,
picks the class from the registry and restores it, for ``tastebud.load_model``, ``Recommender.load``
and the members a composite stores inside its own folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import tastebud as tb
from tastebud.core import persist
from tastebud.core.errors import ConfigError, ModelFormatError
from tastebud.core.members import load_members, member_files


def _data() -> tb.Interactions:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"user": rng.integers(0, 30, 400), "item": rng.integers(0, 20, 400), "rating": rng.integers(1, 6, 400)}
    )
    return tb.Interactions.from_frame(frame, rating="rating")


def test_every_way_of_loading_is_the_one_function():
    assert tb.load_model is persist.load_model


def test_a_class_loads_only_its_own_models(tmp_path):
    """``SomeClass.load`` refuses a folder saved by another class; ``Recommender.load`` takes any."""
    data = _data()
    folder = tb.get_model("itemknn")().fit(data).save(tmp_path / "knn")
    with pytest.raises(ModelFormatError, match="holds a 'itemknn' model, not Bias"):
        tb.get_model("bias").load(folder)
    loaded = tb.get_model("itemknn").load(folder)
    assert type(loaded) is tb.get_model("itemknn")
    assert type(tb.Recommender.load(folder)) is type(loaded)
    assert type(persist.load_model(folder, expected=tb.RatingModel)) is type(loaded)  # itemknn predicts ratings
    with pytest.raises(ModelFormatError, match="not Bias"):
        persist.load_model(folder, expected=tb.get_model("bias"))


def test_a_broken_manifest_is_a_format_error(tmp_path):
    folder = tb.get_model("bias")().fit(_data()).save(tmp_path / "m")
    manifest = json.loads((folder / "manifest.json").read_text())
    for change, message in (
        ({"model": None}, "manifest names no model"),
        ({"params": [1]}, "'params' must be a JSON object"),
        ({"params": {"nope": 1}}, "hyper-parameters do not match 'bias'"),
    ):
        (folder / "manifest.json").write_text(json.dumps({**manifest, **change}))
        with pytest.raises(ModelFormatError, match=message):
            tb.load_model(folder)


def test_members_are_restored_by_the_same_function(tmp_path):
    """A hybrid's members come back through ``restore_model``: the same classes, state and lists."""
    data = _data()
    hybrid = tb.get_model("hybrid")(models=["popular", "itemknn"]).fit(data)
    loaded = tb.load_model(hybrid.save(tmp_path / "h"))
    assert [type(m) for m in loaded._members] == [type(m) for m in hybrid._members]
    users = list(data.users.ids[:5])
    np.testing.assert_array_equal(loaded.recommend(users, k=5).items, hybrid.recommend(users, k=5).items)
    files = member_files(hybrid._members)
    again = load_members(hybrid, list(hybrid.models), files)[1]
    assert again.users_ is hybrid.users_ and again.user_items_ is hybrid.user_items_
    meta = json.loads(files["member1.json"])
    files["member1.json"] = json.dumps({**meta, "model": "nope"}).encode()
    with pytest.raises(ModelFormatError, match="member 1 is 'nope', expected 'itemknn'"):
        load_members(hybrid, list(hybrid.models), files)
    with pytest.raises(ModelFormatError, match="hybrid member 1: no model named 'nope'"):
        load_members(hybrid, ["popular", "nope"], files)
    files["member1.json"] = json.dumps({**meta, "params": {"nope": 1}}).encode()
    with pytest.raises(ModelFormatError, match="hybrid member 1: hyper-parameters do not match 'itemknn'"):
        load_members(hybrid, list(hybrid.models), files)


def test_fit_takes_an_engine_object_not_a_name():
    with pytest.raises(ConfigError, match=r"engine must be an engine object such as tastebud.scale.RayEngine"):
        tb.get_model("popular")().fit(_data(), engine="ray")
