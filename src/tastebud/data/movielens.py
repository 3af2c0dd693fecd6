"""MovieLens loaders: from a local folder (``path=`` or ``$TASTEBUD_DATA``) into `Interactions`.

``TASTEBUD_DATA`` points at a folder holding ``ml-100k/``, ``ml-latest-small/``, ... (for this
project's tests and benchmarks: ``../shared/data``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    marker = {"ml-100k": "u.data", "ml-1m": "ratings.dat"}.get(name, "ratings.csv")
    folder = root if (root / marker).exists() else root / name
    if not folder.is_dir():
        raise DataError(f"{folder}: MovieLens folder '{name}' not found")
    return folder


def ml100k_items(folder: Path) -> pd.DataFrame:
    """u.item as a feature table indexed by item id: title, year, genres (list)."""
    cols = ["item", "title", "release_date", "video_date", "url", *GENRES_100K]
    df = pd.read_csv(folder / "u.item", sep="|", names=cols, encoding="latin-1")
    flags = df[GENRES_100K].to_numpy().astype(bool)
    genres = [[g for g, f in zip(GENRES_100K, row, strict=False) if f] for row in flags]
    year = pd.to_datetime(df["release_date"], format="%d-%b-%Y", errors="coerce").dt.year
    out = pd.DataFrame(
        {"title": df["title"].astype(str).to_numpy(), "year": year.astype("Float64").to_numpy(), "genres": genres},
        index=pd.Index(df["item"].astype(np.int64), name="item"),
    )
    out["description"] = _wiki_descriptions(folder, out["title"])
    return out


def _wiki_descriptions(folder: Path, titles: pd.Series) -> np.ndarray:
    """Wikipedia lead sentences joined by exact title from ``ml-100k-wiki/movie_wiki.csv`` beside
    the ml-100k folder; a missing file or title gives an empty text (counted by the loader)."""
    wiki_file = folder.parent / "ml-100k-wiki" / "movie_wiki.csv"
    if not wiki_file.is_file():
        return np.full(len(titles), "", dtype=object)
    wiki = pd.read_csv(wiki_file, dtype=str).dropna(subset=["movie_title"])
    lookup = dict(zip(wiki["movie_title"], wiki["wiki_summary"].fillna(""), strict=False))
    return np.array([lookup.get(t, "") for t in titles], dtype=object)


def ml100k_users(folder: Path) -> pd.DataFrame:
    df = pd.read_csv(
        folder / "u.user", sep="|", names=["user", "age", "gender", "occupation", "zip"], dtype={"zip": str}
    )
    return df.set_index("user")


def load_ml100k(path: str | os.PathLike[str] | None = None, features: bool = True) -> Interactions:
    """MovieLens 100K: 100,000 ratings (1-5) of 943 users on 1,682 movies."""
    folder = _folder("ml-100k", path)
    ratings = pd.read_csv(folder / "u.data", sep="\t", names=_RATING_COLS)
    items = ml100k_items(folder) if features else None
    data = Interactions.from_frame(
        ratings,
        "user",
        "item",
        "rating",
        "timestamp",
        scale=(1.0, 5.0),
        item_features=items,
        user_features=ml100k_users(folder) if features else None,
        source=str(folder / "u.data"),
    )
    if items is not None:
        missing = int((items["description"] == "").sum())
        data.summary.notes.append(f"description: {missing} of {len(items)} items have no Wikipedia text")
    return data


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
        Interactions.from_frame(
            fr, "user", "item", users=users, items=items, item_features=feats, source=str(folder / f"{name}_{kind}.csv")
        )
        for fr, kind in zip(frames, ("train", "test"), strict=False)
    ]
    return Split(parts[0], parts[1], name=name)


# ---------------------------------------------------------------------------------------------
# ML-1M ("::"-separated .dat files) and the large CSV releases (20M, 25M)

OCCUPATIONS_1M = [
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer", "programmer",
    "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer", "tradesman/craftsman",
    "unemployed", "writer",
]  # fmt: skip


def _read_dat(file: Path, names: list[str], dtype: dict[str, Any] | None = None) -> pd.DataFrame:
    """Read a ``::``-separated MovieLens .dat file with the fast C parser (latin-1 text)."""
    text = file.read_bytes().decode("latin-1").replace("::", "\t")
    return pd.read_csv(io.StringIO(text), sep="\t", names=names, dtype=dtype, quoting=csv.QUOTE_NONE)


def _movie_table(movies: pd.DataFrame, tags: pd.DataFrame | None) -> pd.DataFrame:
    """movies (item, title, genres "A|B") -> features indexed by item: title, year, genres, tags."""
    year = movies["title"].str.extract(r"\((\d{4})\)\s*$")[0].astype("Float64")
    table = pd.DataFrame(
        {
            "title": movies["title"].astype(str).to_numpy(),
            "year": year.to_numpy(),
            "genres": [[] if g == "(no genres listed)" else str(g).split("|") for g in movies["genres"]],
        },
        index=pd.Index(movies["item"].astype(np.int64), name="item"),
    )
    if tags is not None:
        tag_lists = tags.groupby("item")["tag"].apply(lambda s: sorted(set(map(str, s))))
        table["tags"] = [tag_lists.get(m, []) for m in table.index]
    return table


def load_ml1m(path: str | os.PathLike[str] | None = None, features: bool = True) -> Interactions:
    """MovieLens 1M: 1,000,209 ratings (1-5) of 6,040 users on 3,706 rated movies (3,883 listed),
    with genres, release year, title and user demographics (gender, age group, occupation)."""
    folder = _folder("ml-1m", path)
    ratings = _read_dat(folder / "ratings.dat", _RATING_COLS, dtype={c: np.int64 for c in _RATING_COLS})
    item_features = user_features = None
    if features:
        item_features = _movie_table(_read_dat(folder / "movies.dat", ["item", "title", "genres"]), None)
        users = _read_dat(folder / "users.dat", ["user", "gender", "age", "occupation", "zip"], dtype={"zip": str})
        users["occupation"] = [
            OCCUPATIONS_1M[o] if 0 <= o < len(OCCUPATIONS_1M) else "other" for o in users["occupation"]
        ]
        user_features = users.set_index("user")
    return Interactions.from_frame(
        ratings, "user", "item", "rating", "timestamp", scale=(1.0, 5.0),
        item_features=item_features, user_features=user_features, source=str(folder / "ratings.dat"),
    )  # fmt: skip


def _load_csv_release(name: str, path: str | os.PathLike[str] | None, features: bool) -> Interactions:
    folder = _folder(name, path)
    ratings = pd.read_csv(
        folder / "ratings.csv",
        dtype={"userId": np.int64, "movieId": np.int64, "rating": np.float64, "timestamp": np.int64},
    ).rename(columns={"userId": "user", "movieId": "item"})
    item_features = None
    if features:
        movies = pd.read_csv(folder / "movies.csv").rename(columns={"movieId": "item"})
        tags = None
        if (folder / "tags.csv").is_file():
            tags = pd.read_csv(folder / "tags.csv", usecols=["movieId", "tag"]).rename(columns={"movieId": "item"})
        item_features = _movie_table(movies, tags)
    return Interactions.from_frame(
        ratings, "user", "item", "rating", "timestamp", scale=(0.5, 5.0),
        item_features=item_features, source=str(folder / "ratings.csv"),
    )  # fmt: skip


def load_ml20m(path: str | os.PathLike[str] | None = None, features: bool = True) -> Interactions:
    """MovieLens 20M: 20,000,263 ratings (0.5-5) of 138,493 users on 26,744 movies, with tags."""
    return _load_csv_release("ml-20m", path, features)


def load_ml25m(path: str | os.PathLike[str] | None = None, features: bool = True) -> Interactions:
    """MovieLens 25M: 25,000,095 ratings (0.5-5) of 162,541 users on 59,047 movies, with tags."""
    return _load_csv_release("ml-25m", path, features)


LOADERS = {
    "ml-100k": load_ml100k,
    "ml-1m": load_ml1m,
    "ml-latest-small": load_ml_latest_small,
    "ml-20m": load_ml20m,
    "ml-25m": load_ml25m,
}


def load(name: str, path: str | os.PathLike[str] | None = None, features: bool = True) -> Interactions:
    """Load a MovieLens release by name (``ml-100k``, ``ml-1m``, ``ml-latest-small``, ``ml-20m``,
    ``ml-25m``) from ``path`` / ``$TASTEBUD_DATA``."""
    if name not in LOADERS:
        raise DataError(f"unknown data set {name!r}; choose from {', '.join(LOADERS)}")
    return LOADERS[name](path, features=features)


# ---------------------------------------------------------------------------------------------
# Download with checksum verification

BASE_URL = "https://files.grouplens.org/datasets/movielens/"
# MD5 sums GroupLens publishes beside each zip (``<name>.zip.md5``). latest-small is re-released
# from time to time, so it has none. SHA-256 pins are passed as ``sha256=`` or recorded on the
# first verified download (``<name>.zip.sha256`` in the cache) and checked on every later use.
MD5 = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
    "ml-20m": "cd245b17a1ae2cc31bb14903e1204af3",
    "ml-25m": "6b51fb2759a8657d3bfcbfc42b592ada",
}
SHA256: dict[str, str] = {}  # known SHA-256 of the official zips (add pins here once verified)


def default_cache() -> Path:
    """``$TASTEBUD_CACHE``, else ``~/.cache/tastebud``."""
    return Path(os.environ.get("TASTEBUD_CACHE") or Path.home() / ".cache" / "tastebud")


def _digest(file: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(
    name: str,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    opener: Callable[[str], Any] | None = None,
    force: bool = False,
) -> Path:
    """Download a MovieLens zip from GroupLens into ``cache_dir``, verify it, unpack it; returns
    the cache folder, which then works as ``path=`` for the loaders (``load(name, fetch(name))``).

    Verification: the SHA-256 given (or pinned in :data:`SHA256`, or recorded in the cache by an
    earlier verified download) must match; without an explicit ``sha256=`` GroupLens' published
    MD5 must match too, where there is one. A mismatch deletes the file and raises :class:`DataError`. An already unpacked folder is
    reused without network access. ``opener`` (``urllib.request.urlopen`` by default) is for tests
    and proxies.
    """
    if name not in LOADERS:
        raise DataError(f"unknown data set {name!r}; choose from {', '.join(LOADERS)}")
    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    target = cache / name
    marker = {"ml-100k": "u.data", "ml-1m": "ratings.dat"}.get(name, "ratings.csv")
    if (target / marker).is_file() and not force:
        return cache
    cache.mkdir(parents=True, exist_ok=True)
    zip_path = cache / f"{name}.zip"
    pin_file = cache / f"{name}.zip.sha256"
    expected = (sha256 or SHA256.get(name) or (pin_file.read_text().strip() if pin_file.is_file() else "")).lower()
    if not zip_path.is_file() or force:
        source = url or f"{BASE_URL}{name}.zip"
        open_url = opener
        if open_url is None:
            import urllib.request

            open_url = urllib.request.urlopen
        part = zip_path.with_suffix(".zip.part")
        try:
            with open_url(source) as response, open(part, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise DataError(f"could not download {source}: {exc}; pass path=... to a local copy instead") from None
        part.replace(zip_path)
    got = _digest(zip_path, "sha256")
    if expected and got != expected:
        zip_path.unlink()
        raise DataError(f"{zip_path}: SHA-256 mismatch (expected {expected}, got {got}); the file was removed")
    if name in MD5 and not sha256 and _digest(zip_path, "md5") != MD5[name]:
        zip_path.unlink()
        raise DataError(f"{zip_path}: MD5 does not match the one GroupLens publishes; the file was removed")
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for member in zf.namelist():  # no absolute paths or .. (zip-slip)
                dest = (cache / member).resolve()
                if cache.resolve() not in dest.parents and dest != cache.resolve():
                    raise DataError(f"{zip_path}: unsafe path {member!r} in the archive")
            zf.extractall(cache)
    except zipfile.BadZipFile:
        zip_path.unlink()
        raise DataError(f"{zip_path}: not a zip file; the file was removed") from None
    if not (target / marker).is_file():
        raise DataError(f"{zip_path}: the archive has no {name}/{marker}")
    pin_file.write_text(got + "\n")
    return cache
