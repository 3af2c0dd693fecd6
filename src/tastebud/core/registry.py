"""One registry maps model names to classes; the CLI, service, lab and tests read it.

Built-in models are listed by module so heavy backends (torch) import only when asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from tastebud.core.errors import UnknownModelError

if TYPE_CHECKING:
    from tastebud.core.base import Recommender

T = TypeVar("T", bound=type)

# name -> module that registers it. Names are the public spelling used everywhere.
BUILTIN: dict[str, str] = {
    "random": "tastebud.models.baseline",
    "popular": "tastebud.models.baseline",
    "bias": "tastebud.models.baseline",
    "userknn": "tastebud.models.knn",
    "itemknn": "tastebud.models.knn",
    "content": "tastebud.models.content",
    "svd": "tastebud.models.mf",
    "svdpp": "tastebud.models.mf",
    "timesvdpp": "tastebud.models.timesvdpp",
    "bayesmf": "tastebud.models.mf",
    "als": "tastebud.models.mf",
    "ials": "tastebud.models.ials",
    "bpr": "tastebud.models.bpr",
    "ease": "tastebud.models.ease",
    "rp3beta": "tastebud.models.rp3beta",
    "slim": "tastebud.models.slim",
    "gmf": "tastebud.models.ncf",
    "mlp": "tastebud.models.ncf",
    "neumf": "tastebud.models.ncf",
    "two_tower": "tastebud.models.two_tower",
    "sasrec": "tastebud.models.sasrec",
    "mult_vae": "tastebud.models.vae",
    "recvae": "tastebud.models.vae",
    "hybrid": "tastebud.models.hybrid",
    "ranker": "tastebud.models.ranker",
    "blend": "tastebud.models.blend",
}

_REGISTRY: dict[str, type[Recommender]] = {}


def register(name: str) -> Callable[[T], T]:
    """Class decorator: make a model available as ``get_model(name)``."""

    def deco(cls: T) -> T:
        cls.name = name  # type: ignore[attr-defined]
        _REGISTRY[name] = cls  # type: ignore[assignment]
        return cls

    return deco


def _module_present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def list_models() -> list[str]:
    """Names of every model whose code ships in this installation."""
    names = {n for n, m in BUILTIN.items() if _module_present(m)} | set(_REGISTRY)
    order = list(BUILTIN)
    return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))


def get_model(name: str) -> type[Recommender]:
    """Return the model class registered under ``name`` (importing its module on demand)."""
    if name not in _REGISTRY and name in BUILTIN and _module_present(BUILTIN[name]):
        try:
            importlib.import_module(BUILTIN[name])
        except ImportError as exc:  # an optional extra is missing
            raise UnknownModelError(
                f"model '{name}' needs an optional dependency that is not installed: {exc}. "
                "Install the matching extra, for example `pip install tastebud[neural]`."
            ) from exc
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"no model named '{name}'; known models: {', '.join(list_models())}"
        ) from None
    for module, extra in cls.requires:
        if not _module_present(module):
            raise UnknownModelError(
                f"model '{name}' needs {module}, which is not installed: `pip install tastebud[{extra}]`"
            )
    return cls
