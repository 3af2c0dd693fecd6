"""Build and publish registry versions: from fitted models, or by retraining on base data + events.

``retrain`` reads the base interactions and every event recorded so far (up to a watermark, the
store's last sequence number), refits the version's models with their saved hyper-parameters,
builds the popularity table and the vector indexes, and publishes a new version atomically.
The watermark is saved with the version, so the service folds in only events recorded after it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tastebud.core.base import Recommender
from tastebud.core.errors import ConfigError, DataError
from tastebud.core.persist import read_manifest
from tastebud.core.registry import get_model
from tastebud.data.interactions import Interactions
from tastebud.index.base import make_index
from tastebud.index.vectors import factor_view
from tastebud.serve.engine import PolicyConfig, index_path, indexed_parts
from tastebud.serve.events import EventStore
from tastebud.serve.popularity import Popularity
from tastebud.serve.registry import ModelRegistry

log = logging.getLogger("tastebud.serve")


def publish_version(
    registry: str | Path | ModelRegistry,
    models: dict[str, Recommender],
    data: Interactions | None = None,
    policy: PolicyConfig | dict[str, Any] | None = None,
    events_through_seq: int = 0,
    base: dict[str, Any] | None = None,
    make_current: bool = True,
) -> str:
    """Save fitted ``models`` (+ popularity from ``data``, + indexes) as the registry's next version."""
    reg = registry if isinstance(registry, ModelRegistry) else ModelRegistry(registry)
    pol = policy if isinstance(policy, PolicyConfig) else PolicyConfig.from_dict(policy)
    if not models:
        raise ConfigError("publish: give at least one fitted model")
    staged = reg.stage()
    try:
        indexes = []
        for name, model in models.items():
            model.save(staged / "models" / name)
            for key, part in indexed_parts(name, model):
                view = factor_view(part) if part.n_items >= pol.ann_min_items else None
                if view is not None:
                    log.info("building %s index for %s", pol.index_spec, key)
                    make_index(pol.index_spec).build(view.item_vectors).save(index_path(staged, key))
                    indexes.append(key)
        if data is not None:
            Popularity.from_interactions(data).save(staged / "popularity")
        spec = {
            "models": list(models),
            "policy": pol.to_dict(),
            "indexes": indexes,
            "events_through_seq": int(events_through_seq),
            "base": base or {},
            "n_users": next(iter(models.values())).n_users,
            "n_items": next(iter(models.values())).n_items,
        }
        return reg.publish(staged, spec, make_current=make_current)
    except BaseException:
        reg.discard(staged)
        raise


def combine(data: Interactions, events: pd.DataFrame) -> Interactions:
    """Base interactions plus recorded events, as one data set (new users and items included).

    Explicit data: event values are clipped to the base rating scale. Without base timestamps the
    event timestamps are dropped (a data set has them for every event or for none).
    """
    if events is None or not len(events):
        return data
    base = data.to_frame()
    ev = pd.DataFrame(
        {
            "user": events["user"].to_numpy(dtype=object),
            "item": events["item"].to_numpy(dtype=object),
            "value": events["value"].to_numpy(np.float64),
        }
    )
    if "timestamp" in base.columns:
        ev["timestamp"] = events["timestamp"].to_numpy(np.int64)
    if data.explicit and data.rating_scale is not None:
        ev["value"] = ev["value"].clip(*data.rating_scale)
    frame = pd.concat([base.astype({"user": object, "item": object}), ev], ignore_index=True)
    for col in ("user", "item"):
        vals = frame[col].to_numpy(dtype=object)
        if not all(isinstance(v, (int, np.integer)) for v in vals):
            frame[col] = [str(v) for v in vals]
    return Interactions.from_frame(
        frame.rename(columns={"value": "rating"}) if data.explicit else frame,
        "user",
        "item",
        "rating" if data.explicit else None,
        "timestamp" if "timestamp" in frame.columns else None,
        scale=data.rating_scale if data.explicit else None,
        duplicates=data.duplicates,
        item_features=data.item_features,
        user_features=data.user_features,
        source=f"{data.summary.source}+events",
    )


def retrain(
    registry: str | Path,
    data: Interactions,
    store: EventStore | None,
    models: list[str] | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    policy: dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> str:
    """Refit on base data + recorded events and publish a new version; returns its name."""
    reg = ModelRegistry(registry)
    previous = reg.spec() if reg.versions() else {}
    names = models or previous.get("models")
    if not names:
        raise ConfigError("retrain: the registry has no version yet; say which models to train (--models itemknn,ials)")
    saved_params: dict[str, dict[str, Any]] = {}
    if previous:
        prev_path = reg.path(previous["version"])
        for name in previous.get("models", []):
            try:
                saved_params[name] = read_manifest(prev_path / "models" / name).get("params", {})
            except Exception:  # noqa: BLE001 - a missing manifest just means default parameters
                saved_params[name] = {}
    upto = store.last_seq() if store is not None else 0
    events = store.to_frame(upto_seq=upto) if store is not None else None
    full = combine(data, events) if events is not None else data
    if len(full) == 0:
        raise DataError("retrain: no interactions to train on")
    fitted: dict[str, Recommender] = {}
    for name in names:
        cls = get_model(name)
        try:
            # a saved manifest may use names from an older release: mapped silently; the caller's are checked
            hp = cls.resolve_params(saved_params.get(name, {}), warn=False)
            hp.update(cls.resolve_params((params or {}).get(name, {})))
            model = cls(**hp)
        except (TypeError, ConfigError) as exc:
            raise ConfigError(f"retrain: hyper-parameters for '{name}': {exc}") from None
        log.info("fitting %s on %s", name, full)
        fitted[name] = model.fit(full)
    pol = policy if policy is not None else previous.get("policy")
    return publish_version(reg, fitted, full, pol, upto, base or previous.get("base"))
