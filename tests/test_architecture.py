"""The house rules a reader relies on, checked on the source: layers import downwards, nothing
patches another module's code at run time, no list of model names outside the registry, and every
registered model declares consistent capabilities (``core/base.py``'s ClassVars)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import tastebud as tb
from tastebud.core.registry import BUILTIN

SRC = Path(__file__).resolve().parents[1] / "src" / "tastebud"
MODEL_NAMES = set(BUILTIN)


def _files(*folders: str) -> list[Path]:
    roots = [SRC / f for f in folders] if folders else [SRC]
    return sorted(p for root in roots for p in (root.rglob("*.py") if root.is_dir() else [root]))


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports (at any depth, lazy imports included), with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.lineno, node.module)] + [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def _violations(folders: tuple[str, ...], banned: tuple[str, ...]) -> list[str]:
    bad = []
    for path in _files(*folders):
        for line, module in _imports(path):
            if any(module == b or module.startswith(b + ".") for b in banned):
                bad.append(f"{path.relative_to(SRC)}:{line} imports {module}")
    return sorted(set(bad))


@pytest.mark.parametrize(
    ("folders", "banned"),
    [
        (("models", "core"), ("tastebud.scale", "tastebud.serve", "tastebud.lab", "tastebud.cli")),
        (("serve",), ("tastebud.cli",)),
    ],
)
def test_layers_import_downwards(folders, banned):
    """models/ and core/ never import the scale layer, the service, the lab or the CLI; serve/ never the CLI."""
    assert _violations(folders, banned) == []


def test_the_import_check_can_fail(tmp_path, monkeypatch):
    """The checker sees a lazy import inside a function (what the rule is mostly about)."""
    probe = tmp_path / "models"
    probe.mkdir()
    (probe / "m.py").write_text("def f():\n    from tastebud.scale.ray_train import fit_torch_ray\n")
    monkeypatch.setattr(f"{__name__}.SRC", tmp_path)
    assert _violations(("models",), ("tastebud.scale",))[0] == "models/m.py:2 imports tastebud.scale.ray_train"


#: What ``core/base.py`` may import from tastebud: the package's version, and the core (less its
#: registry), data and kernels. Loading a saved model looks the class up in the registry, so it
#: lives in ``core/persist.py``; engines named by the deprecated hyper-parameters in ``core/engines.py``.
BASE_MAY_IMPORT = ("tastebud.core", "tastebud.data", "tastebud.kernels")


def _base_imports_outside(path: Path) -> list[str]:
    """Imports of tastebud modules in ``path`` that are not in :data:`BASE_MAY_IMPORT`, or are the registry."""
    bad = []
    for line, module in _imports(path):
        if module in ("tastebud", "tastebud.__version__") or not module.startswith("tastebud"):
            continue
        inside = any(module == m or module.startswith(m + ".") for m in BASE_MAY_IMPORT)
        registry = module == "tastebud.core.registry" or module.startswith("tastebud.core.registry.")
        if registry or not inside:
            bad.append(f"{line}: {module}")
    return bad


def test_the_base_class_knows_no_registry_and_nothing_above_core():
    """``core/base.py`` is the contract every layer builds on: it imports neither the registry
    (which refers to it) nor anything above the core, lazy imports included."""
    assert _base_imports_outside(SRC / "core" / "base.py") == []


def test_the_base_import_check_can_fail(tmp_path):
    probe = tmp_path / "base.py"
    probe.write_text(
        "from tastebud import __version__\n"
        "from tastebud.core import persist\n"
        "def load(cls):\n"
        "    from tastebud.core.registry import get_model\n"
        "def fit(self):\n"
        "    import tastebud.models.ials\n"
        "    from tastebud.core import registry\n"
    )
    assert _base_imports_outside(probe) == [
        "4: tastebud.core.registry",
        "4: tastebud.core.registry.get_model",
        "6: tastebud.models.ials",
        "7: tastebud.core.registry",
    ]


def _patches(tree: ast.AST) -> list[int]:
    """Lines that replace code at run time: assigning to an attribute of an imported module or
    class, assigning a lambda or a function defined in the file to an attribute, or handing
    ``setattr`` to something."""
    imported, functions = set(), set()
    methods = {id(f) for c in ast.walk(tree) if isinstance(c, ast.ClassDef) for f in c.body}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imported |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and id(node) not in methods:
            functions.add(node.name)
    shadowed: dict[int, set[str]] = {}  # an assignment inside a function: that function's parameter names
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            params = {a.arg for a in fn.args.args + fn.args.kwonlyargs}
            for inner in ast.walk(fn):
                shadowed.setdefault(id(inner), set()).update(params)
    lines = []
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else []
        for target in targets:
            if not isinstance(target, ast.Attribute):
                continue
            root = target.value
            while isinstance(root, ast.Attribute):
                root = root.value
            code = not isinstance(node.value, ast.Constant)  # a flag such as cudnn.benchmark = False is data
            function = isinstance(node.value, ast.Lambda) or (
                isinstance(node.value, ast.Name)
                and node.value.id in functions
                and node.value.id not in shadowed.get(id(node), set())
            )
            if (isinstance(root, ast.Name) and root.id in imported and code) or function:
                lines.append(node.lineno)
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Name) and node.func.id == "setattr" and node.args:
                value = node.args[-1]
                if isinstance(value, (ast.Lambda, ast.Name)) and not isinstance(node.args[0], ast.Name):
                    lines.append(node.lineno)
            if any(isinstance(a, ast.Name) and a.id == "setattr" for a in node.args):
                lines.append(node.lineno)
    return lines


def test_nothing_patches_code_at_run_time():
    """Extension points, not patches: no module replaces another's functions or methods while running."""
    bad = [f"{p.relative_to(SRC)}:{line}" for p in _files() for line in _patches(ast.parse(p.read_text()))]
    assert bad == []


def test_the_patch_check_can_fail():
    old = "from tastebud.models import _torch, two_tower\n"
    assert _patches(ast.parse(old + "_torch.TrainLoop.run = run\n")) == [2]
    assert _patches(ast.parse(old + "two_tower.sampled_softmax_loss = f\n")) == [2]
    assert _patches(ast.parse("model._finish = lambda full: None\n")) == [1]
    assert _patches(ast.parse("def merged(data):\n    pass\nmodel._fit_features = merged\n")) == [3]
    assert _patches(ast.parse("stack.callback(setattr, two_tower, 'x', y)\n")) == [1]
    assert _patches(ast.parse(old + "two_tower.sampled_softmax_loss = gathered(shares)\n")) == [2]
    assert _patches(ast.parse("self.factors = factors\nself._net = net.cpu()\n")) == []
    assert _patches(ast.parse("def metrics():\n    pass\ndef init(self, metrics):\n    self.metrics = metrics\n")) == []
    assert _patches(ast.parse("import torch\ntorch.backends.cudnn.benchmark = False\n")) == []


def _name_lists(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """Literal lists, tuples, sets and dict keys naming two or more models, and ``x == "<model>"`` tests."""
    found = []
    for node in ast.walk(tree):
        elts = []
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            elts = node.elts
        elif isinstance(node, ast.Dict):
            elts = [k for k in node.keys if k is not None]
        names = [e.value for e in elts if isinstance(e, ast.Constant) and e.value in MODEL_NAMES]
        if len(names) >= 2:
            found.append((node.lineno, names))
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            sides = [node.left, *node.comparators]
            named = [s.value for s in sides if isinstance(s, ast.Constant) and s.value in MODEL_NAMES]
            subject = [s for s in sides if isinstance(s, (ast.Name, ast.Attribute))]
            if named and any((s.id if isinstance(s, ast.Name) else s.attr) == "name" for s in subject):
                found.append((node.lineno, named))
    return found


#: Model names that are data, not dispatch: the registry itself; the hybrid's default members
#: (a hyper-parameter value: which models to blend is the user's choice); the NCF family naming
#: its own three networks in the file that defines them; the ranker's default retrievers, the blend's
#: default members and both fast_params (hyper-parameter values, like the hybrid's members).
NAMES_ALLOWED = {
    "core/registry.py": None,
    "models/hybrid.py": {("popular", "bias"), ("itemknn", "ials")},
    "models/ncf.py": {("gmf", "mlp", "neumf")},
    "models/ranker.py": {("itemknn", "ease", "popular"), ("ials", "itemknn", "rp3beta")},
    "models/blend.py": {
        ("bias", "itemknn", "userknn", "svd", "svdpp", "bayesmf", "timesvdpp"),
        ("bias", "itemknn", "svd"),
    },
    # the lab's blend members: one model's parameters, chosen by benchmarks/bench_lab_blend.py
    "lab/blend.py": {("bias", "itemknn", "userknn", "svd", "svdpp")},
}


def test_no_list_of_model_names_outside_the_registry():
    """Capabilities live on the class: a list by name silently misses the next model."""
    bad = []
    for p in _files():
        rel = str(p.relative_to(SRC))
        allowed = NAMES_ALLOWED.get(rel, set())
        if allowed is None:
            continue
        bad += [f"{rel}:{line} {n}" for line, n in _name_lists(ast.parse(p.read_text())) if tuple(n) not in allowed]
    assert bad == []


def test_the_name_list_check_can_fail():
    assert _name_lists(ast.parse('HEAVY = ("neumf", "sasrec")')) == [(1, ["neumf", "sasrec"])]
    assert _name_lists(ast.parse('if name == "two_tower":\n    pass')) == [(1, ["two_tower"])]
    assert _name_lists(ast.parse('if model.name != "sasrec":\n    pass')) == [(1, ["sasrec"])]
    assert _name_lists(ast.parse('DEMO = {"ials": {}, "ease": {}}')) == [(1, ["ials", "ease"])]
    assert _name_lists(ast.parse('kind = "neumf"\nCOLS = ("age", "gender")')) == []


# ---------------------------------------------------------------------------- capabilities
def _installed():
    out = []
    for name in tb.list_models():
        try:
            out.append(tb.get_model(name))
        except tb.UnknownModelError:  # an optional extra is missing
            continue
    return out


@pytest.mark.parametrize("cls", _installed(), ids=lambda c: c.name)
def test_every_model_declares_consistent_capabilities(cls):
    pref = cls.history_preference
    assert pref is None or (isinstance(pref, int) and not isinstance(pref, bool) and pref >= 0)
    if cls.baseline:
        assert pref is None, "a baseline is never the service's history model"
    for flag in (cls.heavy, cls.lab_default, cls.baseline, cls.uses_features, cls.supports_history):
        assert isinstance(flag, bool)
    assert not (cls.heavy and cls.lab_default), "the lab does not pick heavy models by default"
    if cls.demo_params is not None:
        assert isinstance(cls.demo_params, dict)
        cls.resolve_params(cls.demo_params)  # real hyper-parameter names, under today's spelling
    assert isinstance(cls.scale_out, frozenset) and cls.scale_out <= {"ray", "parquet"}
    if cls.scale_out:
        assert "ray" in cls.scale_out, "a model that trains from Parquet shards on Ray also trains on Ray"
    from tastebud.models._torch import TorchModel

    if issubclass(cls, TorchModel):  # the torch loop's data parallelism needs the model's batch layout
        assert cls.scale_out == {"ray", "parquet"} and cls.heavy
        layout = cls().batch_layout()
        assert callable(layout.rows) and callable(layout.take)
    for key in cls.deprecated_params:
        assert key not in cls._param_names(), f"{key} is both a parameter and deprecated"


def test_capabilities_give_todays_lineups():
    """What the name lists said before they became capabilities (the service's history order, the
    lab's heavy models and default picks, the demo's line-up, the Ray models), among the models this
    installation has (without torch, the neural ones are not registered)."""
    models = {c.name: c for c in _installed()}

    def here(names):
        return [n for n in names if n in models]

    history = sorted(
        (n for n, c in models.items() if c.supports_history and c.history_preference is not None),
        key=lambda n: models[n].history_preference,
    )
    order = here(["itemknn", "content", "two_tower", "sasrec", "ease", "ials", "als", "svdpp", "userknn"])
    assert [n for n in history if n in order] == order
    assert models["hybrid"].history_preference == 10  # after those (its support depends on its members)
    assert {n for n, c in models.items() if c.heavy} == set(
        here(["bayesmf", "gmf", "mlp", "neumf", "two_tower", "sasrec", "mult_vae", "recvae", "ranker", "blend"])
    )
    picks = {"popular", "itemknn", "ials", "ease", "content", "bpr", "svd", "userknn"}
    assert {n for n, c in models.items() if c.lab_default} == picks
    demo = [n for n, c in models.items() if c.demo_params is not None]
    assert demo == here([
        "random", "popular", "bias", "userknn", "itemknn", "content", "svd", "svdpp", "bayesmf", "als", "ials",
        "bpr", "ease", "rp3beta", "neumf", "two_tower", "sasrec",
    ])  # fmt: skip
    assert models["svdpp"].demo_params == {"epochs": 10}
    assert "sasrec" not in models or models["sasrec"].demo_params == {"epochs": 5}
    ray = {n for n, c in models.items() if "ray" in c.scale_out}
    assert ray == set(here(["ials", "two_tower", "gmf", "mlp", "neumf", "sasrec"]))
    assert {n for n, c in models.items() if "parquet" in c.scale_out} == ray
    assert {n for n, c in models.items() if c.baseline} == {"random", "popular"}
    assert {n for n, c in models.items() if c.uses_features} == set(here(["content", "two_tower"]))
