"""Fitted member models stored inside a composite model's folder (hybrid, blend, ranker).

A composite (a model made of other fitted models) saves each member as payload files of its own
folder: ``<prefix><j>.npz`` (the member's arrays, without the interaction matrix the composite
stores once), ``<prefix><j>.json`` (registry name, hyper-parameters, JSON attributes) and the
member's own extra files as ``<prefix><j>.extra.<name>``. No pickle anywhere; the members are
restored by :func:`tastebud.core.persist.restore_model`, their classes from the registry, an allowlist.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tastebud.core.errors import ModelFormatError
from tastebud.core.persist import restore_model

if TYPE_CHECKING:
    from tastebud.core.base import Recommender


def member_files(members: Sequence[Recommender], prefix: str = "member") -> dict[str, bytes]:
    """Payload files holding fitted ``members`` inside their composite's folder."""
    files: dict[str, bytes] = {}
    for j, m in enumerate(members):
        arrays, attrs = m._state()
        arrays = {k: v for k, v in arrays.items() if not k.startswith("user_items_.")}
        for key, arr in arrays.items():
            if np.asarray(arr).dtype == object:
                raise TypeError(f"member '{m.name}' array '{key}' has dtype object; it cannot be saved without pickle")
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
        files[f"{prefix}{j}.npz"] = buf.getvalue()
        extra = m._extra_files()
        meta = {"model": m.name, "params": m.get_params(), "attrs": attrs, "extra": sorted(extra)}
        files[f"{prefix}{j}.json"] = json.dumps(meta, sort_keys=True, default=_json_default).encode("utf-8")
        for name, payload in extra.items():
            files[f"{prefix}{j}.extra.{name}"] = payload
    return files


def load_members(
    owner: Recommender, names: Sequence[str], files: dict[str, bytes], prefix: str = "member"
) -> list[Recommender]:
    """The members written by :func:`member_files`, sharing the ids and matrix of their loaded ``owner``."""
    members = []
    for j, name in enumerate(names):
        try:
            meta = json.loads(files[f"{prefix}{j}.json"].decode("utf-8"))
            with np.load(io.BytesIO(files[f"{prefix}{j}.npz"]), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            extra = {n: files[f"{prefix}{j}.extra.{n}"] for n in meta.get("extra", [])}
        except KeyError as exc:
            raise ModelFormatError(f"{owner.name} model folder lacks member file {exc}") from None
        if meta.get("model") != name:
            raise ModelFormatError(f"{owner.name} {prefix} {j} is '{meta.get('model')}', expected '{name}'")
        members.append(restore_model(meta, arrays, extra, where=f"{owner.name} {prefix} {j}", owner=owner))
    return members


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"cannot store {type(obj).__name__} in JSON")


__all__ = ["load_members", "member_files"]
