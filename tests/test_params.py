"""One name per hyper-parameter: unknown names, renamed (deprecated) names, and saved models that use old names."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import tastebud as tb
from tastebud.cli import app
from tastebud.core import persist
from tastebud.core.errors import ConfigError, ModelFormatError


def _available() -> list[str]:
    names = []
    for name in tb.list_models():
        try:
            tb.get_model(name)
        except tb.UnknownModelError:
            continue  # optional extra not installed
        names.append(name)
    return names


MODELS = _available()
RENAMES = [(name, old) for name in MODELS for old in tb.get_model(name).renamed_params]


def _targets(cls, old):
    new = cls.renamed_params[old]
    return (new,) if isinstance(new, str) else tuple(new)


def test_the_renames_of_the_conventions_page_are_declared():
    """The table in docs/conventions.md, as the models declare it (a model losing a rename fails here)."""
    got = {f"{n}.{old}": tb.get_model(n).renamed_params[old] for n, old in RENAMES}
    expect = {
        "bias.reg_user": "reg_user_bias",
        "bias.reg_item": "reg_item_bias",
        "svd.reg_bu": "reg_user_bias",
        "svd.reg_bi": "reg_item_bias",
        "svd.reg_pu": "reg_user_factors",
        "svd.reg_qi": "reg_item_factors",
        "svdpp.reg_yj": "reg_implicit_factors",
        "als.reg_bias": ("reg_user_bias", "reg_item_bias"),
        "itemknn.alpha": "asymmetry",
        "itemknn.K1": "bm25_k1",
        "itemknn.B": "bm25_b",
        "itemknn.reg_user": "reg_user_bias",
        "userknn.reg_item": "reg_item_bias",
        "content.blocks": "feature_blocks",
    }
    for key, value in expect.items():
        assert got[key] == value, key
    if "sasrec" in MODELS:
        assert got["sasrec.blocks"] == "transformer_blocks" and got["sasrec.n_negatives"] == "negatives"
    if "neumf" in MODELS:
        assert got["neumf.alpha"] == "gmf_weight" and got["two_tower.embedding_dim"] == "input_dim"


@pytest.mark.parametrize(("name", "old"), RENAMES, ids=[f"{n}.{o}" for n, o in RENAMES])
def test_every_old_name_warns_names_the_new_one_and_maps(name, old):
    cls = tb.get_model(name)
    targets = _targets(cls, old)
    value = cls().get_params()[targets[0]]
    value = value + 1 if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    with pytest.warns(DeprecationWarning, match=rf"'{old}' is now '{targets[0]}'") as record:
        model = cls(**{old: value})
    assert record[0].filename == __file__  # points at the caller's line
    params = model.get_params()
    assert old not in params
    assert all(params[t] == value for t in targets)
    with pytest.warns(DeprecationWarning, match=f"'{old}'"):
        again = cls().set_params(**{old: value})
    assert again.get_params() == params


@pytest.mark.parametrize("name", MODELS)
def test_get_params_has_only_todays_names(name):
    cls = tb.get_model(name)
    params = cls().get_params()
    assert not set(cls.renamed_params) & set(params)
    for old in cls.renamed_params:
        assert set(_targets(cls, old)) <= set(params)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # today's names never warn
        assert cls(**params).get_params() == params


def test_unknown_name_says_did_you_mean_and_lists_valid_names():
    with pytest.raises(ConfigError) as info:
        tb.get_model("itemknn")(neighbours=40)
    msg = str(info.value)
    assert msg.startswith("itemknn has no hyper-parameter 'neighbours' (did you mean 'neighbors'?); valid: ")
    assert "_KNN" not in msg and "asymmetry" in msg and "bm25_k1" in msg
    with pytest.raises(ConfigError, match=r"svd has no hyper-parameter 'factor' \(did you mean 'factors'\?\)"):
        tb.get_model("svd")().set_params(factor=3)
    with pytest.raises(ConfigError, match=r"bias has no hyper-parameter 'zzz'; valid: epochs, reg_item_bias"):
        tb.get_model("bias")(zzz=1)


def test_old_and_new_name_together_is_an_error():
    with pytest.raises(ConfigError, match="'reg_bu' and 'reg_user_bias' name the same hyper-parameter"):
        tb.get_model("svd")(reg_bu=0.1, reg_user_bias=0.2)


def test_subclass_init_calling_super_is_checked_once():
    """SVD++ passes SVD's names to SVD.__init__; only the outer call maps and warns."""
    with pytest.warns(DeprecationWarning) as record:
        model = tb.get_model("svdpp")(reg_yj=0.5, factors=3)
    assert len(record) == 1
    assert model.reg_implicit_factors == 0.5 and model.factors == 3


def test_cli_unknown_name_is_one_line_and_exit_2(tmp_path):
    data = tmp_path / "r.csv"
    data.write_text("user,item,rating\na,x,5\na,y,3\nb,x,4\n")
    res = CliRunner().invoke(
        app,
        [
            "train",
            "itemknn",
            "--data",
            str(data),
            "--rating-col",
            "rating",
            "-o",
            str(tmp_path / "m"),
            "-p",
            "neighbours=40",
        ],
    )
    assert res.exit_code == 2
    assert "itemknn has no hyper-parameter 'neighbours' (did you mean 'neighbors'?); valid:" in res.output
    assert "Traceback" not in res.output and "_KNN" not in res.output


def _resave(src, dst, params=None, arrays=None):
    """Write ``src`` again with its manifest params / array names changed (as an older release wrote them)."""
    manifest, arr, extra = persist.read_bundle(src)
    manifest = {k: v for k, v in manifest.items() if k not in ("files", "format_version")}
    if params is not None:
        manifest["params"] = params(manifest["params"])
    if arrays is not None:
        arr = arrays(arr)
    persist.write_bundle(dst, manifest, arr, extra)
    return json.loads((dst / persist.MANIFEST).read_text())


@pytest.mark.parametrize(
    ("name", "old_params"),
    [
        ("svd", {"reg_user_bias": "reg_bu", "reg_item_bias": "reg_bi", "reg_user_factors": "reg_pu"}),
        ("itemknn", {"asymmetry": "alpha", "bm25_k1": "K1", "bm25_b": "B", "reg_user_bias": "reg_user"}),
        ("bias", {"reg_user_bias": "reg_user", "reg_item_bias": "reg_item"}),
    ],
)
def test_a_saved_model_with_old_names_loads_silently(synth, tmp_path, name, old_params):
    cls = tb.get_model(name)
    model = cls(**cls.fast_params).fit(synth)
    model.save(tmp_path / "today")
    manifest = _resave(
        tmp_path / "today", tmp_path / "old", params=lambda p: {old_params.get(k, k): v for k, v in p.items()}
    )
    assert set(old_params.values()) <= set(manifest["params"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = tb.load_model(tmp_path / "old")
    assert loaded.get_params() == model.get_params()
    users = list(synth.users.ids[:5])
    a, b = model.recommend(users, k=5), loaded.recommend(users, k=5)
    np.testing.assert_array_equal(a.items, b.items)


def test_explicit_als_old_reg_bias_sets_both_sides(synth, tmp_path):
    als = tb.get_model("als")
    model = als(factors=3, epochs=2, reg_user_bias=0.5, reg_item_bias=0.5).fit(synth)
    model.save(tmp_path / "today")

    def old(p):
        p = dict(p, reg_bias=p.pop("reg_user_bias"))
        del p["reg_item_bias"]
        return p

    _resave(tmp_path / "today", tmp_path / "old", params=old)
    loaded = tb.load_model(tmp_path / "old")
    assert loaded.reg_user_bias == loaded.reg_item_bias == 0.5
    np.testing.assert_allclose(
        loaded.predict([synth.users.ids[0]], [synth.items.ids[0]]),
        model.predict([synth.users.ids[0]], [synth.items.ids[0]]),
    )


def test_a_saved_model_with_an_unknown_name_is_a_format_error(synth, tmp_path):
    model = tb.get_model("bias")(epochs=2).fit(synth)
    model.save(tmp_path / "today")
    _resave(tmp_path / "today", tmp_path / "bad", params=lambda p: dict(p, nope=1))
    with pytest.raises(ModelFormatError, match="bias has no hyper-parameter 'nope'"):
        tb.load_model(tmp_path / "bad")


@pytest.mark.slow
def test_two_tower_saved_with_old_vector_names_loads(synth, tmp_path):
    pytest.importorskip("torch")
    tt = tb.get_model("two_tower")
    model = tt(**dict(tt.fast_params, input_dim=4)).fit(synth)
    model.save(tmp_path / "today")

    def old_arrays(arr):
        renames = {"user_factors_": "user_vectors_", "item_factors_": "item_vectors_"}
        return {renames.get(k, k): v for k, v in arr.items()}

    def old_params(p):
        return {("embedding_dim" if k == "input_dim" else k): v for k, v in p.items()}

    _resave(tmp_path / "today", tmp_path / "old", params=old_params, arrays=old_arrays)
    loaded = tb.load_model(tmp_path / "old")
    assert loaded.input_dim == 4 and not hasattr(loaded, "user_vectors_")
    np.testing.assert_array_equal(loaded.user_factors_, model.user_factors_)
    users = list(synth.users.ids[:5])
    np.testing.assert_array_equal(loaded.recommend(users, k=5).items, model.recommend(users, k=5).items)


def test_conventions_page_names_every_hyper_parameter():
    doc = (Path(__file__).resolve().parents[1] / "docs" / "conventions.md").read_text()
    missing = {n: [p for p in tb.get_model(n)._param_names() if f"`{p}`" not in doc] for n in MODELS}
    assert not {n: m for n, m in missing.items() if m}
