"""Interactions from a file or a named data set: what ``--data`` and ``--dataset`` mean.

The CLI and the service (``tastebud serve``'s retraining base) read their data through here, so
both understand the same names and columns; a lower layer than either, it reports problems as
:class:`~tastebud.DataError` / :class:`~tastebud.ConfigError` and its remarks through ``notify``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tastebud.core.errors import ConfigError
from tastebud.data.interactions import Interactions

#: The names ``--dataset`` takes.
DATASETS = ("synthetic", "seed", "ml-100k", "ml-latest-small", "ml-1m", "ml-20m", "ml-25m")
_MOVIELENS = {
    "ml-100k": "load_ml100k",
    "ml-latest-small": "load_ml_latest_small",
    "ml-1m": "load_ml1m",
    "ml-20m": "load_ml20m",
    "ml-25m": "load_ml25m",
}


def _stderr(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def load_data(
    dataset: str | None,
    data: Path | None,
    path: Path | None,
    notify: Callable[[str], None] = _stderr,
    **columns: Any,
) -> Interactions:
    """Interactions from ``data`` (a file) or ``dataset`` (a name of :data:`DATASETS`; MovieLens
    read from ``path`` or $TASTEBUD_DATA).

    Training on generated data by accident looks like success, so one of the two is required
    (``dataset="synthetic"`` asks for the generated set)."""
    from tastebud.data import movielens

    if data is not None:
        if dataset is not None:
            raise ConfigError("give --data FILE or --dataset NAME, not both")
        return load_file(data, notify=notify, **columns)
    if dataset is None:
        raise ConfigError(f"give the data: --data FILE or --dataset NAME ({', '.join(DATASETS)})")
    if dataset == "synthetic":
        from tastebud.data.synthetic import generate

        return generate(n_users=2000, n_items=1000, n_interactions=100_000, random_state=0)
    if dataset == "seed":
        from tastebud.data.synthetic import seed_example

        return seed_example()
    if dataset not in _MOVIELENS or not hasattr(movielens, _MOVIELENS[dataset]):
        raise ConfigError(f"unknown data set '{dataset}'; choose from {', '.join(DATASETS)} or pass --data FILE")
    return getattr(movielens, _MOVIELENS[dataset])(path)


def load_file(
    data: Path,
    user: str = "user",
    item: str = "item",
    rating: str | None = None,
    time: str | None = None,
    notify: Callable[[str], None] = _stderr,
) -> Interactions:
    """An interactions file, its item features beside it (``<name>.items.parquet``) when present.

    Without ``rating`` a ``rating`` or ``score`` column is read as the ratings, and ``notify`` says
    so either way: reading a rated file as implicit throws the ratings away silently.
    ``rating="none"`` reads a file with such a column as implicit."""
    from tastebud.data.io import detect_rating_column, item_features_path, read_item_features, read_table

    frame, offset = read_table(data)
    if rating is None:
        rating = detect_rating_column(frame.columns)
        if rating is not None:
            notify(f"reading column '{rating}' of {data} as ratings (--rating-col none reads it as implicit)")
        else:
            notify(f"{data} has no rating column: each row is one implicit interaction (--rating-col NAME for ratings)")
    elif rating.lower() == "none":
        rating = None
    features = item_features_path(data)
    item_features = None
    if features.is_file():
        item_features = read_item_features(features)
        notify(f"item features from {features}")
    return Interactions.from_frame(
        frame, user, item, rating, time, item_features=item_features, source=str(data), line_offset=offset
    )
