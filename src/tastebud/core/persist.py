"""Pickle-free persistence: arrays in ``.npz`` (allow_pickle=False) plus a JSON manifest.

Writes are atomic: everything goes to a temporary sibling folder, each file is fsynced, and the
folder is renamed into place, so a reader sees either the old model or the new one, never half.

Loading a model lives here too, in one place (:func:`load_model`, and :func:`restore_model` for the
members a composite stores inside its own folder): the manifest's registry name picks the class
from the registry, an allowlist, so no code ever comes from the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tastebud.core.errors import ConfigError, ModelFormatError, UnknownModelError
from tastebud.core.registry import get_model
from tastebud.data.idmap import IdMap

if TYPE_CHECKING:
    from tastebud.core.base import Recommender

MANIFEST = "manifest.json"
ARRAYS = "arrays.npz"
FORMAT_VERSION = 1


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _read_umask() -> int:
    """The process's file-creation mask (read by setting it and putting it back: done once, at import,
    so no other thread's file is ever created under the placeholder)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _as_if_created(path: str | os.PathLike[str], mode: int) -> None:
    """Give a temp file or folder the permissions ``open``/``mkdir`` would have given it.

    ``mkstemp`` and ``mkdtemp`` create owner-only entries (0600/0700) for their own safety; a model
    folder or file renamed into place from them would stay unreadable to a service running as
    another user, unlike any other file the user writes.
    """
    os.chmod(path, mode & ~_UMASK)


def atomic_write_bytes(path: str | os.PathLike[str], payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temp file, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        _as_if_created(tmp, 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:  # into one reused buffer: hashing and reading release the GIL
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` (``allow_pickle=False``).

    Members stored uncompressed, as :func:`write_bundle` writes them, are read by one
    ``np.fromfile`` each at their offset in the file: a C read with the GIL released. Through
    ``zipfile`` the same bytes are copied in 256 KB chunks by Python code holding the GIL, about
    0.4 s of a 1M-item model's reload in a server that keeps answering meanwhile. The zip's own
    CRCs are not checked here; the caller verified the whole file's SHA-256 first."""
    out: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as zf, open(path, "rb") as fh:
        for info in zf.infolist():
            key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
            arr = _stored_member(fh, info) if info.compress_type == zipfile.ZIP_STORED else None
            if arr is None:  # compressed or an unusual header: numpy's own reader
                with zf.open(info) as member:
                    arr = np.lib.format.read_array(member, allow_pickle=False)
            out[key] = arr
    return out


def _stored_member(fh: Any, info: zipfile.ZipInfo) -> np.ndarray | None:
    fh.seek(info.header_offset)
    local = fh.read(30)  # the local file header; name and extra field lengths at bytes 26-29
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise ValueError(f"bad zip member header for {info.filename}")
    start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
    fh.seek(start)
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        return None
    if dtype.hasobject:
        raise ValueError(f"{info.filename} holds Python objects; refusing to unpickle")
    count = int(np.prod(shape, dtype=np.int64))
    if fh.tell() + count * dtype.itemsize > start + info.file_size:
        raise ValueError(f"{info.filename} is shorter than its header says")
    arr = np.fromfile(fh, dtype=dtype, count=count)
    return arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)


def write_bundle(
    directory: str | os.PathLike[str],
    manifest: dict[str, Any],
    arrays: dict[str, np.ndarray],
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Atomically write a model folder: ``arrays.npz`` + ``manifest.json`` (+ extra files).

    The manifest records the SHA-256 of every file so a truncated or edited file is refused.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        _as_if_created(tmp, 0o777)
        for name, arr in arrays.items():
            if np.asarray(arr).dtype == object:
                raise TypeError(f"array '{name}' has dtype object; it cannot be saved without pickle")
        with open(tmp / ARRAYS, "wb") as fh:
            np.savez(fh, **{k: np.asarray(v) for k, v in arrays.items()})
            fh.flush()
            os.fsync(fh.fileno())
        files = {ARRAYS: _sha256(tmp / ARRAYS)}
        for name, payload in (extra_files or {}).items():
            with open(tmp / name, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            files[name] = _sha256(tmp / name)
        full = dict(manifest, format_version=FORMAT_VERSION, files=files)
        with open(tmp / MANIFEST, "w", encoding="utf-8") as fh:
            json.dump(full, fh, indent=2, sort_keys=True, default=_json_default)
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(tmp)
        if directory.exists():
            old = directory.parent / f".{directory.name}.old-{os.getpid()}"
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
        _fsync_dir(directory.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot store {type(obj).__name__} in a JSON manifest")


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise ModelFormatError(f"{directory}: not a tastebud model folder (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFormatError(f"{path}: manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ModelFormatError(f"{path}: manifest must be a JSON object")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFormatError(
            f"{path}: model format version {version!r} is newer than this tastebud reads "
            f"({FORMAT_VERSION}); upgrade tastebud"
        )
    return manifest


def read_bundle(
    directory: str | os.PathLike[str], *, verify: bool = True, unread: Collection[str] = ()
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
    """Read a model folder. Returns (manifest, arrays, extra files).

    ``verify=False`` skips the SHA-256 check of every file: for a folder this process knows was
    verified already (a serving fleet verifies a version once, in the worker that loads it
    first). Files named in ``unread`` are checked but not read into memory: the caller maps them
    from disk itself."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    files = manifest.get("files")
    if not isinstance(files, dict) or ARRAYS not in files:
        raise ModelFormatError(f"{directory / MANIFEST}: no file list; the folder is incomplete")
    extra: dict[str, bytes] = {}
    for name, digest in files.items():
        if "/" in name or "\\" in name or name.startswith("."):
            raise ModelFormatError(f"{directory / MANIFEST}: invalid file name {name!r}")
        fpath = directory / name
        if not fpath.is_file():
            raise ModelFormatError(f"{fpath}: missing (the model folder is incomplete)")
        if verify and _sha256(fpath) != digest:
            raise ModelFormatError(f"{fpath}: SHA-256 mismatch; the file is corrupt or was modified")
        if name != ARRAYS and name not in unread:
            extra[name] = fpath.read_bytes()
    try:
        arrays = _read_npz(directory / ARRAYS)
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise ModelFormatError(f"{directory / ARRAYS}: cannot be read ({exc})") from None
    return manifest, arrays, extra


def load_model(
    directory: str | os.PathLike[str], *, verify: bool = True, expected: type[Recommender] | None = None
) -> Recommender:
    """Load a saved model folder (what ``tastebud.load_model`` and ``Recommender.load`` do).

    ``expected``: refuse a folder holding a model of another class (``ItemKNN.load(dir)``);
    ``verify=False`` skips the files' SHA-256 check (see :func:`read_bundle`)."""
    manifest, arrays, extra = read_bundle(directory, verify=verify)
    model = restore_model(manifest, arrays, extra, where=str(directory), expected=expected)
    if not hasattr(model, "user_items_"):
        raise ModelFormatError(f"{directory}: model state is incomplete")
    return model


def restore_model(
    saved: dict[str, Any],
    arrays: dict[str, np.ndarray],
    extra: dict[str, bytes],
    *,
    where: str,
    expected: type[Recommender] | None = None,
    owner: Recommender | None = None,
) -> Recommender:
    """A fitted model from its saved parts; every mismatch is a ModelFormatError naming ``where``.

    ``saved`` holds the registry name, hyper-parameters and JSON attributes (``model``, ``params``,
    ``attrs``, as a manifest does): the class comes from the registry, an allowlist, never from the
    file. ``arrays`` holds the vocabularies (``__users__``, ``__items__``) unless an ``owner`` is
    given: a composite's member (:mod:`tastebud.core.members`) shares its owner's vocabularies and
    interaction matrix. ``extra``: the model's extra files (``_load_extra``)."""
    name = saved.get("model")
    if not isinstance(name, str):
        raise ModelFormatError(f"{where}: manifest names no model")
    try:
        cls = get_model(name)
    except UnknownModelError as exc:
        raise ModelFormatError(f"{where}: {exc}") from None
    if expected is not None and not issubclass(cls, expected):
        raise ModelFormatError(f"{where}: holds a '{name}' model, not {expected.__name__}")
    params = saved.get("params", {})
    if not isinstance(params, dict):
        raise ModelFormatError(f"{where}: manifest 'params' must be a JSON object")
    try:
        model = cls._from_saved_params(params)
    except (TypeError, ConfigError) as exc:
        raise ModelFormatError(f"{where}: hyper-parameters do not match '{name}': {exc}") from None
    arrays = dict(arrays)
    try:
        if owner is None:
            model.users_ = IdMap(arrays.pop("__users__"), "user")
            model.items_ = IdMap(arrays.pop("__items__"), "item")
        else:
            model.users_, model.items_, model.user_items_ = owner.users_, owner.items_, owner.user_items_
        model._set_state(arrays, saved.get("attrs", {}))
        model._load_extra(extra)
    except KeyError as exc:
        raise ModelFormatError(f"{where}: missing array {exc}") from None
    return model
