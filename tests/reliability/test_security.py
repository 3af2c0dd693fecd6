"""Security: no pickle on any loading path, models only through the registry allowlist, paths
confined to their root, tokens on writes and admin (constant-time compare), request size
limits, CORS closed by default."""

from __future__ import annotations

import ast
import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from rhelpers import AUTH, TOKEN, build_registry, record

import tastebud as tb
from tastebud.core.base import Recommender
from tastebud.core.errors import ModelFormatError, TastebudError
from tastebud.core.persist import ARRAYS, MANIFEST
from tastebud.serve.app import ServeConfig, create_app

SRC = Path(tb.__file__).resolve().parent
BANNED_MODULES = {"pickle", "cPickle", "_pickle", "joblib", "dill", "cloudpickle", "shelve", "marshal"}
BANNED_CALLS = {"read_pickle", "to_pickle", "loads_pickle", "load_pickle"}


def _py_files() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "__pycache__" not in p.parts)


def test_no_pickle_anywhere_in_the_source():
    problems = []
    for path in _py_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(SRC)}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, ast.Import):
                problems += [f"{where} imports {a.name}" for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in BANNED_MODULES:
                problems.append(f"{where} imports from {node.module}")
            elif isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
                kw = {k.arg: k.value for k in node.keywords}
                if name in BANNED_CALLS:
                    problems.append(f"{where} calls {name}")
                if name in ("load", "loadtxt", "genfromtxt") and "allow_pickle" in kw:
                    value = kw["allow_pickle"]
                    if not (isinstance(value, ast.Constant) and value.value is False):
                        problems.append(f"{where} {name}(allow_pickle=...) not literally False")
                if name == "load" and isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "torch":
                    wo = kw.get("weights_only")
                    if not (isinstance(wo, ast.Constant) and wo.value is True):
                        problems.append(f"{where} torch.load without weights_only=True")
                if name == "load" and isinstance(func, ast.Attribute) and getattr(func.value, "id", "") == "yaml":
                    problems.append(f"{where} yaml.load (use safe_load)")
                if name in ("eval", "exec") and isinstance(func, ast.Name):
                    problems.append(f"{where} calls {name}")
    assert not problems, "\n".join(problems)
    assert len(_py_files()) > 20  # the scan saw the package


def test_the_scan_catches_what_it_should(tmp_path):
    """The scanner itself: a file with each banned pattern is flagged."""
    bad = "import pickle\nimport torch\nimport numpy as np\ntorch.load('x')\nnp.load('x', allow_pickle=True)\n"
    tree = ast.parse(bad)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert any(isinstance(n, ast.Import) and n.names[0].name == "pickle" for n in ast.walk(tree))
    assert {c.func.attr for c in calls} == {"load"} and len(calls) == 2


def _fit_saved(tmp_path: Path) -> Path:
    data = tb.Interactions.from_frame(
        __import__("pandas").DataFrame({"user": [1, 1, 2, 3], "item": [10, 11, 10, 12], "rating": [5.0, 3, 4, 1]}),
        rating="rating",
    )
    tb.get_model("bias")().fit(data).save(tmp_path / "m")
    return tmp_path / "m"


def _rehash(folder: Path) -> None:
    manifest = json.loads((folder / MANIFEST).read_text())
    for name in manifest["files"]:
        manifest["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_a_pickled_array_never_loads_even_with_a_valid_hash(tmp_path):
    folder = _fit_saved(tmp_path)
    with np.load(folder / ARRAYS) as npz:
        arrays = {k: npz[k] for k in npz.files}
    key = next(iter(arrays))
    arrays[key] = np.array([{"__reduce__": "os.system"}], dtype=object)  # would need pickle to load
    buf = io.BytesIO()
    np.savez(buf, **arrays, allow_pickle=True)
    (folder / ARRAYS).write_bytes(buf.getvalue())
    _rehash(folder)  # an attacker who can write the folder can also fix the hashes
    with pytest.raises(ModelFormatError, match="cannot be read"):
        Recommender.load(folder)
    record(faults_injected=1, faults_survived=1)


@pytest.mark.parametrize("name", ["os.system", "builtins.eval", "../../x", "tastebud.core.base.Recommender"])
def test_models_load_only_through_the_registry_allowlist(tmp_path, name):
    folder = _fit_saved(tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["model"] = name
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(TastebudError, match="no model named"):
        Recommender.load(folder)


# ---------------------------------------------------------------------------- the HTTP service
@pytest.fixture()
def reg(tmp_path):
    return build_registry(tmp_path / "reg")


@pytest.fixture()
def client(reg, tmp_path):
    with TestClient(create_app(reg, ServeConfig(token=TOKEN, events=str(tmp_path / "ev.db")))) as c:
        yield c


def _outside_copy(reg: Path, dest: Path) -> None:
    """A complete, valid version folder outside the registry root (what an attacker would point at)."""
    shutil.copytree(reg / "versions" / "v0001", dest)


@pytest.mark.parametrize(
    "version",
    [
        "../../outside",
        "../v0001/../../outside",
        "/abs/outside",
        "v0001/../../../outside",
        "..",
        ".",
        "",
        "v1",
        "v0001\x00",
    ],
)
def test_reload_version_cannot_escape_the_registry(client, reg, tmp_path, version):
    _outside_copy(reg, tmp_path / "outside")
    (tmp_path / "abs").mkdir(exist_ok=True)
    r = client.post("/admin/reload", json={"version": version.replace("/abs", str(tmp_path))}, headers=AUTH)
    assert 400 <= r.status_code < 500 and r.json()["error"], r.text
    assert client.get("/health").json()["version"] == "v0001"


def test_symlinked_version_outside_the_root_is_refused(client, reg, tmp_path):
    _outside_copy(reg, tmp_path / "outside")
    (reg / "versions" / "v0002").symlink_to(tmp_path / "outside", target_is_directory=True)
    r = client.post("/admin/reload", json={"version": "v0002"}, headers=AUTH)
    assert r.status_code == 409 and "outside" in r.json()["error"], r.text
    assert client.get("/health").json()["version"] == "v0001"


def test_model_names_in_serving_json_cannot_escape_the_version(client, reg, tmp_path):
    shutil.copytree(reg / "versions" / "v0001", reg / "versions" / "v0002")
    shutil.copytree(reg / "versions" / "v0001" / "models" / "bias", tmp_path / "evil")
    spec = json.loads((reg / "versions" / "v0002" / "serving.json").read_text())
    spec["models"] = ["popular", "../../../../evil"]
    (reg / "versions" / "v0002" / "serving.json").write_text(json.dumps(spec))
    r = client.post("/admin/reload", json={"version": "v0002"}, headers=AUTH)
    assert r.status_code == 409 and "evil" in r.json()["error"], r.text


@pytest.mark.parametrize("user", ["..%2F..%2Fetc%2Fpasswd", "%2E%2E", "..%5C..%5Cwin.ini", "%00"])
def test_ids_are_ids_never_paths(client, user):
    r = client.get(f"/users/{user}/recommendations?k=3")
    assert r.status_code in (200, 404, 422), r.text
    assert "root:" not in r.text


WRITE = [
    ("post", "/events", {"json": {"user": 1, "item": 100}}),
    ("post", "/admin/reload", {}),
    ("get", "/admin/info", {}),
]


@pytest.mark.parametrize("method,url,kwargs", WRITE)
def test_write_and_admin_endpoints_need_the_token(client, method, url, kwargs):
    call = getattr(client, method)
    r = call(url, **kwargs)
    assert r.status_code == 401 and "token" in r.json()["error"] and r.headers.get("www-authenticate") == "Bearer"
    for bad in ("Bearer wrong", f"Bearer {TOKEN}x", f"Bearer {TOKEN[:-1]}", f"Basic {TOKEN}", "Bearer ", TOKEN):
        r = call(url, headers={"Authorization": bad}, **kwargs)
        assert r.status_code in (401, 403) and r.json()["error"], (bad, r.text)
    r = call(url, headers=AUTH, **kwargs)
    assert r.status_code in (200, 201), r.text


def test_read_token_when_configured(reg, tmp_path):
    cfg = ServeConfig(token=TOKEN, read_token="reader-secret", events=str(tmp_path / "ev2.db"))
    with TestClient(create_app(reg, cfg)) as c:
        assert c.get("/users/3/recommendations").status_code == 401
        assert c.get("/users/3/recommendations", headers={"Authorization": "Bearer nope"}).status_code == 403
        assert c.get("/users/3/recommendations", headers={"Authorization": "Bearer reader-secret"}).status_code == 200
        assert c.get("/users/3/recommendations", headers=AUTH).status_code == 200
        # the read token does not grant writes
        r = c.post("/events", json={"user": 1, "item": 100}, headers={"Authorization": "Bearer reader-secret"})
        assert r.status_code == 403


def test_tokens_are_compared_in_constant_time(client, monkeypatch):
    import hmac

    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert client.post("/admin/reload", headers={"Authorization": "Bearer guess"}).status_code == 403
    assert calls and all(isinstance(a, bytes) and isinstance(b, bytes) for a, b in calls)


def test_request_size_limits(reg, tmp_path):
    cfg = ServeConfig(token=TOKEN, events=str(tmp_path / "ev3.db"), max_body_bytes=4096, max_events=50)
    with TestClient(create_app(reg, cfg)) as c:
        big = {"items": list(range(100, 130)) * 200, "k": 5}
        r = c.post("/recommendations", json=big)
        assert r.status_code == 413 and "4096" in r.json()["error"]

        def chunks():  # no Content-Length: the limit holds while streaming too
            yield b'{"items": ['
            for _ in range(2000):
                yield b"100, "
            yield b"101]}"

        r = c.post("/recommendations", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]
        many = {"events": [{"user": 1, "item": 100, "event_id": f"e{j}"} for j in range(51)]}
        r = c.post("/events", json=many, headers=AUTH)
        assert r.status_code in (413, 422) and r.json()["error"]
        assert c.app.state.tb.store.count() == 0
        r = c.get("/users/3/recommendations?k=100000")
        assert r.status_code == 422 and "k" in r.json()["error"]


def test_cors_is_closed_by_default(client):
    r = client.options(
        "/users/3/recommendations",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
    )
    assert "access-control-allow-origin" not in {k.lower() for k in r.headers}
    r = client.get("/users/3/recommendations", headers={"Origin": "https://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in {k.lower() for k in r.headers}
    r = client.post("/events", json={"user": 1, "item": 100}, headers={**AUTH, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in {k.lower() for k in r.headers}


def test_serve_binds_loopback_by_default():
    import inspect

    from tastebud.serve import commands

    assert 'typer.Option("127.0.0.1", "--host"' in inspect.getsource(commands.register)


def test_unknown_routes_and_methods_say_why(client):
    r = client.get("/no/such/route")
    assert r.status_code == 404 and r.json()["error"]
    r = client.delete("/events", headers=AUTH)
    assert r.status_code == 405 and r.json()["error"]
