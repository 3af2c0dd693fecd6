"""MovieLens loaders (real ML-100K / latest-small from the shared folder, tiny fakes for the rest)
and the checksum-verified download, tested offline with local zips."""

from __future__ import annotations

import hashlib
import io
import os
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tastebud.core.errors import DataError
from tastebud.data import movielens as ml


def test_ml100k_with_wiki_descriptions(data_root):
    start = time.perf_counter()
    d = ml.load_ml100k(data_root)
    assert time.perf_counter() - start < 5  # about 0.3 s on an idle core
    assert (len(d), d.n_users, d.n_items) == (100_000, 943, 1682)
    feats = d.item_features
    assert list(feats.columns) == ["title", "year", "genres", "description"]
    assert feats.loc[1, "title"] == "Toy Story (1995)" and "Animation" in feats.loc[1, "genres"]
    wiki = pd.read_csv(data_root / "ml-100k-wiki" / "movie_wiki.csv")
    known = set(wiki["movie_title"])
    missing = int((~feats["title"].isin(known)).sum())
    assert int((feats["description"] == "").sum()) == missing > 0
    assert f"description: {missing} of 1682 items have no Wikipedia text" in d.summary.notes
    row = wiki.iloc[10]
    item = feats.index[feats["title"] == row["movie_title"]][0]
    assert feats.loc[item, "description"] == row["wiki_summary"]
    assert set(d.user_features.columns) >= {"age", "gender", "occupation"}


def test_ml100k_without_wiki_folder(tmp_path, data_root):
    (tmp_path / "ml-100k").symlink_to(data_root / "ml-100k")
    d = ml.load_ml100k(tmp_path)
    assert (d.item_features["description"] == "").all()
    assert "description: 1682 of 1682 items have no Wikipedia text" in d.summary.notes


def test_latest_small(data_root):
    d = ml.load_ml_latest_small(data_root)
    assert (len(d), d.n_users, d.n_items) == (100_836, 610, 9724)
    assert d.rating_scale == (0.5, 5.0) and "tags" in d.item_features.columns
    assert ml.load("ml-latest-small", data_root, features=False).item_features is None


def write_ml1m(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text("1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n")
    (folder / "movies.dat").write_bytes(
        "10::Toy Story (1995)::Animation|Children's|Comedy\n20::Amélie (2001)::Comedy|Romance\n".encode("latin-1")
    )
    (folder / "users.dat").write_text("1::F::1::10::48067\n2::M::56::16::70072\n")


def test_ml1m_format(tmp_path):
    write_ml1m(tmp_path / "ml-1m")
    d = ml.load_ml1m(tmp_path)
    assert (len(d), d.n_users, d.n_items) == (3, 2, 2)
    np.testing.assert_array_equal(d.values, [5, 3, 4])
    assert d.item_features.loc[20, "title"] == "Amélie (2001)"
    assert d.item_features.loc[20, "genres"] == ["Comedy", "Romance"] and d.item_features.loc[10, "year"] == 1995
    assert d.user_features.loc[1, "occupation"] == "K-12 student" and d.user_features.loc[2, "gender"] == "M"
    assert int(d.timestamps[0]) == 978300760


@pytest.mark.parametrize("name", ["ml-20m", "ml-25m"])
def test_csv_releases(tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,0.5,1112484676\n7,2,5.0,1094785740\n"
    )
    (folder / "movies.csv").write_text(
        'movieId,title,genres\n2,Jumanji (1995),Adventure|Children|Fantasy\n29,"City of Lost Children, The (1995)",(no genres listed)\n'
    )
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,2,board game,1\n7,2,Robin Williams,2\n")
    d = ml.load(name, tmp_path)
    assert (len(d), d.n_users, d.n_items) == (3, 2, 2) and d.rating_scale == (0.5, 5.0)
    f = d.item_features
    assert f.loc[29, "genres"] == [] and f.loc[2, "tags"] == ["Robin Williams", "board game"]
    with pytest.raises(DataError, match="not found"):
        ml.load("ml-25m" if name == "ml-20m" else "ml-20m", tmp_path)


def test_unknown_name():
    with pytest.raises(DataError, match="unknown data set"):
        ml.load("ml-7k", ".")
    with pytest.raises(DataError, match="unknown data set"):
        ml.fetch("ml-7k", ".")


# ------------------------------------------------------------------------------ fetch, offline


def fake_zip(path: Path, members: dict[str, str]) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


ML100K_FILES = {"ml-100k/u.data": "1\t1\t5\t881250949\n2\t1\t3\t891717742\n", "ml-100k/README": "fake"}


def test_fetch_verifies_and_unpacks(tmp_path):
    src = tmp_path / "served.zip"
    digest = fake_zip(src, ML100K_FILES)
    cache = tmp_path / "cache"
    root = ml.fetch("ml-100k", cache, url=src.as_uri(), sha256=digest)
    assert root == cache and (cache / "ml-100k" / "u.data").is_file()
    assert (cache / "ml-100k.zip.sha256").read_text().strip() == digest
    d = ml.load_ml100k(root, features=False)
    assert len(d) == 2

    def offline(url):  # already unpacked: no network needed
        raise AssertionError("must not download again")

    assert ml.fetch("ml-100k", cache, opener=offline) == cache


def test_fetch_rejects_a_bad_sha256(tmp_path):
    src = tmp_path / "served.zip"
    fake_zip(src, ML100K_FILES)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        ml.fetch("ml-100k", cache, url=src.as_uri(), sha256="0" * 64)
    assert not (cache / "ml-100k.zip").exists() and not (cache / "ml-100k").exists()


def test_fetch_checks_grouplens_md5_without_a_pin(tmp_path):
    src = tmp_path / "served.zip"
    fake_zip(src, ML100K_FILES)
    with pytest.raises(DataError, match="MD5"):
        ml.fetch("ml-100k", tmp_path / "cache", url=src.as_uri())


def test_fetch_uses_the_recorded_pin(tmp_path):
    src = tmp_path / "served.zip"
    digest = fake_zip(src, ML100K_FILES)
    cache = tmp_path / "cache"
    ml.fetch("ml-100k", cache, url=src.as_uri(), sha256=digest)
    fake_zip(src, {**ML100K_FILES, "ml-100k/extra": "tampered"})
    (cache / "ml-100k.zip").unlink()
    # a later download that differs from the first verified one is refused
    with pytest.raises(DataError, match="SHA-256 mismatch"):
        ml.fetch("ml-100k", cache, url=src.as_uri(), force=True)


def test_fetch_with_an_opener_and_bad_archives(tmp_path):
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as zf:
        zf.writestr("../evil.txt", "x")
    data = payload.getvalue()
    with pytest.raises(DataError, match="unsafe path"):
        ml.fetch("ml-1m", tmp_path / "c1", opener=lambda url: io.BytesIO(data), sha256=hashlib.sha256(data).hexdigest())
    junk = b"not a zip"
    with pytest.raises(DataError, match="not a zip"):
        ml.fetch("ml-1m", tmp_path / "c2", opener=lambda url: io.BytesIO(junk), sha256=hashlib.sha256(junk).hexdigest())
    empty = tmp_path / "empty.zip"
    digest = fake_zip(empty, {"other/readme": "x"})
    with pytest.raises(DataError, match="has no ml-1m/ratings.dat"):
        ml.fetch("ml-1m", tmp_path / "c3", url=empty.as_uri(), sha256=digest)

    def down(url):
        raise OSError("network is unreachable")

    with pytest.raises(DataError, match="could not download .*ml-20m.zip"):
        ml.fetch("ml-20m", tmp_path / "c4", opener=down)
    assert not list((tmp_path / "c4").glob("*.part"))


def test_default_cache_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TASTEBUD_CACHE", str(tmp_path))
    assert ml.default_cache() == tmp_path
    assert os.fspath(ml.default_cache())
