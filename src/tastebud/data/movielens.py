"""MovieLens loaders: from a local folder (``path=`` or ``$TASTEBUD_DATA``) into `Interactions`.

``TASTEBUD_DATA`` points at a folder holding ``ml-100k/``, ``ml-latest-small/``, ... (for this
project's tests and benchmarks: ``../shared/data``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from tastebud.core.errors import DataError
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions
from tastebud.data.splits import Split

ENV = "TASTEBUD_DATA"
GENRES_100K = [
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip
_RATING_COLS = ["user", "item", "rating", "timestamp"]


def data_root(path: str | os.PathLike[str] | None = None) -> Path:
    """The folder that holds the MovieLens folders: ``path``, else ``$TASTEBUD_DATA``."""
    root = path if path is not None else os.environ.get(ENV)
    if root is None:
        raise DataError(f"no data folder given: pass path=... or set ${ENV} to the folder holding ml-100k/ etc.")
    return Path(root)


def _folder(name: str, path: str | os.PathLike[str] | None) -> Path:
    root = data_root(path)
    folder = root if (root / ("u.data" if name == "ml-100k" else "ratings.csv")).exists() else root / name
    if not folder.is_dir():
        raise DataError(f"{folder}: MovieLens folder '{name}' not found")
    return folder


def ml100k_items(folder: Path) -> pd.DataFrame:
    """u.item as a feature table indexed by item id: title, year, genres (list)."""
    cols = ["item", "title", "release_date", "video_date", "url", *GENRES_100K]
    df = pd.read_csv(folder / "u.item", sep="|", names=cols, encoding="latin-1")
    flags = df[GENRES_100K].to_numpy().astype(bool)
    genres = [[g for g, f in zip(GENRES_100K, row) if f] for row in flags]
    year = pd.to_datetime(df["release_date"], format="%d-%b-%Y", errors="coerce").dt.year
    return pd.DataFrame(
        {"title": df["title"].astype(str).to_numpy(), "year": year.astype("Float64").to_numpy(), "genres": genres},
        index=pd.Index(df["item"].astype(np.int64), name="item"),
    )


def ml100k_users(folder: Path) -> pd.DataFrame:
    df = pd.read_csv(folder / "u.user", sep="|", names=["user", "age", "gender", "occupation", "zip"], dtype={"zip": str})
    return df.set_index("user")


def load_ml100k(path: str | os.PathLike[str] | None = None, features: bool = True) -> Interactions:
    """MovieLens 100K: 100,000 ratings (1-5) of 943 users on 1,682 movies."""
    folder = _folder("ml-100k", path)
    ratings = pd.read_csv(folder / "u.data", sep="\t", names=_RATING_COLS)
    return Interactions.from_frame(
        ratings,
        "user",
        "item",
        "rating",
        "timestamp",
        scale=(1.0, 5.0),
        item_features=ml100k_items(folder) if features else None,
        user_features=ml100k_users(folder) if features else None,
        source=str(folder / "u.data"),
    )


def ml100k_folds(path: str | os.PathLike[str] | None = None, folds: tuple[int, ...] = (1, 2, 3, 4, 5)) -> list[Split]:
    """The canonical u1..u5 base/test folds of ML-100K, over the full vocabularies."""
    folder = _folder("ml-100k", path)
    full = load_ml100k(path)
    out = []
    for f in folds:
        parts = []
        for kind in ("base", "test"):
            frame = pd.read_csv(folder / f"u{f}.{kind}", sep="\t", names=_RATING_COLS)
            parts.append(
                Interactions.from_frame(
                    frame, "user", "item", "rating", "timestamp", scale=(1.0, 5.0),
                    users=full.users, items=full.items,
                    item_features=full.item_features, user_features=full.user_features,
                    source=str(folder / f"u{f}.{kind}"),
                )
            )  # fmt: skip
        out.append(Split(parts[0], parts[1], name=f"u{f}"))
    return out


def load_ml_latest_small(path: str | os.PathLike[str] | None = None, features: bool = True) -> Interactions:
    """MovieLens latest-small: 100,836 ratings (0.5-5) of 610 users on 9,742 movies, with tags."""
    folder = _folder("ml-latest-small", path)
    ratings = pd.read_csv(folder / "ratings.csv").rename(columns={"userId": "user", "movieId": "item"})
    item_features = None
    if features:
        movies = pd.read_csv(folder / "movies.csv")
        tags = pd.read_csv(folder / "tags.csv")
        tag_lists = tags.groupby("movieId")["tag"].apply(lambda s: sorted(set(map(str, s))))
        year = movies["title"].str.extract(r"\((\d{4})\)\s*$")[0].astype("Float64")
        item_features = pd.DataFrame(
            {
                "title": movies["title"].astype(str).to_numpy(),
                "year": year.to_numpy(),
                "genres": [[] if g == "(no genres listed)" else g.split("|") for g in movies["genres"]],
                "tags": [tag_lists.get(m, []) for m in movies["movieId"]],
            },
            index=pd.Index(movies["movieId"].astype(np.int64), name="item"),
        )
    return Interactions.from_frame(
        ratings, "user", "item", "rating", "timestamp", scale=(0.5, 5.0),
        item_features=item_features, source=str(folder / "ratings.csv"),
    )  # fmt: skip


def fixed_split(name: str, path: str | os.PathLike[str] | None = None) -> Split:
    """The fixed per-user 80/20 top-N split ``splits/{name}_train.csv`` / ``_test.csv`` (implicit).

    ``name`` is ``ml-100k`` or ``ml-latest-small``. Vocabularies are the union of both files, so the
    catalogue is every item that occurs in either. Item features come from the MovieLens folder.
    """
    root = data_root(path)
    folder = root / "splits"
    frames = []
    for kind in ("train", "test"):
        f = folder / f"{name}_{kind}.csv"
        if not f.is_file():
            raise DataError(f"{f}: fixed split not found")
        frames.append(pd.read_csv(f))
    both = pd.concat(frames)
    users = IdMap(np.unique(both["user"].to_numpy()), "user")
    items = IdMap(np.unique(both["item"].to_numpy()), "item")
    feats = None
    try:
        loader = {"ml-100k": load_ml100k, "ml-latest-small": load_ml_latest_small}[name]
        feats = loader(root).item_features
    except (KeyError, DataError, OSError):
        feats = None
    if feats is not None:
        feats = feats.reindex(items.ids)
    parts = [
        Interactions.from_frame(fr, "user", "item", users=users, items=items, item_features=feats, source=str(folder / f"{name}_{kind}.csv"))
        for fr, kind in zip(frames, ("train", "test"))
    ]
    return Split(parts[0], parts[1], name=name)
