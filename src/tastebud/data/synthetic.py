"""A synthetic interaction data set with known structure, so every algorithm family has signal.

Why synthetic: a fresh clone needs data offline, and tests need data whose truth is known. The
generator draws latent tastes first and derives everything else from them:

* **tastes**: every genre has a direction in ``factors``-dimensional space; items and users are
  mixtures of one or two genre directions plus noise. Each user's taste drifts slowly over time.
* **choices**: user activity is heavy-tailed (log-normal), item popularity Zipf-like
  (``1 / rank ** 1.2``). Users come in sessions; a session picks a genre by the user's (drifted)
  taste, then items in it by popularity and taste (a soft-max over a few popularity-drawn
  candidates, drawn with Walker's alias method). Within a session a
  user often goes on to the *sequel* of the previous item (a fixed item -> item successor in the
  same genre), so the order of events carries signal for sequence models.
* **ratings** (explicit): ``2.6 + user bias + item bias + 0.9 * taste . item + noise``, rounded
  to 1..5 stars. Implicit data has value 1.0.
* **item features**: ``genres`` are the genre directions nearest the item's taste vector;
  ``title`` and ``description`` are built from words of those genres; ``people`` are directors
  and actors who specialise in a genre; ``year`` follows a latent "era" direction.
* **user features**: ``age`` follows the same era direction (older users like older films),
  ``gender`` and ``occupation`` follow other directions of taste.

Everything is vectorised with numpy (10 million interactions take about half a minute of CPU on
one core) and deterministic under ``random_state``. :func:`generate_with_truth` also returns the latent truth for tests.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tastebud.core.errors import ConfigError
from tastebud.data.idmap import IdMap
from tastebud.data.interactions import Interactions, Summary

GENRES: list[str] = [
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama",
    "Fantasy", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
]  # fmt: skip
# how common each genre is (Drama and Comedy dominate, as in MovieLens)
_PREVALENCE = np.array([10, 6, 3, 3, 14, 6, 2, 18, 4, 5, 2, 3, 8, 5, 7, 2, 2], dtype=np.float64)
# distinctive words per genre: titles and descriptions are drawn from these, so text carries genre
GENRE_WORDS: dict[str, list[str]] = {
    "Action": ["explosion", "chase", "mercenary", "showdown", "commando", "gunfight", "rampage", "fury", "vengeance", "bodyguard"],
    "Adventure": ["expedition", "treasure", "jungle", "voyage", "island", "explorer", "temple", "journey", "map", "pirate"],
    "Animation": ["cartoon", "talking", "critter", "toy", "puppet", "colorful", "bunny", "penguin", "sidekick", "doodle"],
    "Children": ["school", "kid", "puppy", "birthday", "friendship", "playground", "lesson", "classroom", "camp", "babysitter"],
    "Comedy": ["hilarious", "prank", "wedding", "awkward", "roommate", "slapstick", "mishap", "goofy", "neighbor", "blunder"],
    "Crime": ["detective", "heist", "mob", "gangster", "robbery", "cartel", "cop", "smuggler", "informant", "verdict"],
    "Documentary": ["interview", "footage", "history", "nature", "investigation", "archive", "portrait", "witness", "expedition-log", "census"],
    "Drama": ["family", "grief", "struggle", "redemption", "memory", "tragedy", "reunion", "sacrifice", "inheritance", "illness"],
    "Fantasy": ["wizard", "kingdom", "dragon", "sword", "enchanted", "elf", "prophecy", "sorcerer", "realm", "amulet"],
    "Horror": ["haunted", "ghost", "demon", "curse", "zombie", "blood", "nightmare", "possessed", "cabin", "scream"],
    "Musical": ["song", "dance", "stage", "melody", "broadway", "choir", "singer", "rhythm", "band", "concert"],
    "Mystery": ["clue", "secret", "vanished", "puzzle", "manor", "riddle", "suspect", "disappearance", "letter", "hidden"],
    "Romance": ["love", "kiss", "heart", "sweetheart", "affair", "passion", "romance", "date", "longing", "soulmate"],
    "Sci-Fi": ["space", "robot", "alien", "planet", "android", "galaxy", "future", "starship", "cyborg", "quantum"],
    "Thriller": ["conspiracy", "hostage", "spy", "assassin", "paranoia", "countdown", "agent", "betrayal", "escape", "stalker"],
    "War": ["soldier", "battle", "platoon", "trench", "general", "invasion", "resistance", "bomber", "frontline", "medal"],
    "Western": ["cowboy", "sheriff", "outlaw", "frontier", "saloon", "ranch", "desert", "gunslinger", "stagecoach", "bounty"],
}  # fmt: skip
_FIRST = [
    "Ada", "Ben", "Chloe", "Diego", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kira", "Liam", "Maya",
    "Nils", "Olga", "Pavel", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wes", "Xenia", "Yusuf", "Zoe",
    "Anton", "Bianca", "Carlos", "Dalia", "Emil", "Freya", "Gustav", "Hana", "Ivan", "Julia", "Kofi", "Lena",
    "Marco", "Nadia",
]  # fmt: skip
_LAST = [
    "Abara", "Berg", "Castillo", "Dumont", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jensen", "Kowalski",
    "Laurent", "Moreau", "Novak", "Okafor", "Petrov", "Quint", "Rossi", "Santos", "Tanaka", "Urban", "Vargas",
    "Weber", "Xu", "Yilmaz", "Zhang", "Andersson", "Bauer", "Costa", "Dubois", "Esposito", "Ferreira", "Gruber",
    "Horvat", "Iyer", "Jovanovic", "Kim", "Lindqvist", "Mendes", "Nakamura",
]  # fmt: skip
OCCUPATIONS: list[str] = [
    "student", "engineer", "artist", "teacher", "healthcare", "writer", "sales", "lawyer", "programmer",
    "scientist", "retired", "technician", "entertainment", "administrator",
]  # fmt: skip

T0 = 1_420_070_400  # 2015-01-01 UTC: first possible timestamp


@dataclass
class Truth:
    """The latent structure behind a generated data set (for tests and teaching)."""

    user_factors: np.ndarray  # (n_users, factors) taste at time 0
    user_drift: np.ndarray  # (n_users, factors) taste change over a user's whole history
    item_factors: np.ndarray  # (n_items, factors)
    genre_factors: np.ndarray  # (n_genres, factors)
    user_bias: np.ndarray
    item_bias: np.ndarray
    item_popularity: np.ndarray  # sampling weight (Zipf-like), sums to 1
    item_primary_genre: np.ndarray  # index into GENRES
    sequel: np.ndarray  # item -> the item a session tends to continue with
    session: np.ndarray  # per event (in the returned event order): session number, global
    progress: np.ndarray  # per event: position in the user's history, 0..1 (drives the drift)


class _Stages:
    """Tiny progress report on stderr (the CLI wraps the generator in its own bar)."""

    def __init__(self, on: bool) -> None:
        self.on = on
        self.t = time.perf_counter()

    def __call__(self, what: str) -> None:
        if self.on:
            now = time.perf_counter()
            print(f"  synth: {what} ({now - self.t:.2f}s)", file=sys.stderr, flush=True)
            self.t = now


def generate(
    n_users: int = 1000,
    n_items: int = 500,
    n_interactions: int = 50_000,
    *,
    factors: int = 8,
    explicit: bool = True,
    random_state: int = 0,
    features: bool = True,
    progress: bool = False,
) -> Interactions:
    """Generate a synthetic data set: ids ``"u0"..`` / ``"i0"..``, ratings or implicit events,
    timestamps, item and user features. Deterministic under ``random_state``.

    Exactly ``n_interactions`` distinct (user, item) pairs are drawn (no duplicates), every user
    gets at least ``min(5, n_interactions // n_users)`` of them, and every item has features,
    including items nobody chose.
    """
    data, _ = generate_with_truth(
        n_users,
        n_items,
        n_interactions,
        factors=factors,
        explicit=explicit,
        random_state=random_state,
        features=features,
        progress=progress,
    )
    return data


def _check(n_users: int, n_items: int, n_interactions: int, factors: int) -> None:
    for name, v in (
        ("n_users", n_users),
        ("n_items", n_items),
        ("n_interactions", n_interactions),
        ("factors", factors),
    ):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{name} must be a positive integer, got {v!r}")
    if n_interactions > n_users * n_items:
        raise ConfigError(
            f"n_interactions={n_interactions} exceeds n_users * n_items = {n_users * n_items} distinct pairs"
        )


def _allocate(rng: np.random.Generator, weights: np.ndarray, total: int, floor: int, cap: int) -> np.ndarray:
    """Split ``total`` events over users: ``floor`` each, the rest by ``weights``, at most ``cap``."""
    n = len(weights)
    counts = np.full(n, floor, dtype=np.int64)
    rest = total - floor * n
    w = weights / weights.sum()
    for _ in range(100):
        if rest <= 0:
            break
        counts += rng.multinomial(rest, w)
        over = counts - cap
        rest = int(over[over > 0].sum())
        np.minimum(counts, cap, out=counts)
        room = counts < cap
        w = np.where(room, weights, 0.0)
        if w.sum() <= 0:
            break
        w = w / w.sum()
    if rest > 0:  # pathological weights: fill whoever has room, in order
        room = cap - counts
        take = np.minimum(room, np.maximum(0, rest - (np.cumsum(room) - room)))
        counts += take
    return counts


def _alias(weights: np.ndarray, start: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker's alias tables, one per group of consecutive entries: O(1) weighted draws.

    A draw in group g takes a uniform slot j of the group and keeps it with probability q[j], else
    takes alias[j] (Vose 1991, "A linear algorithm for generating random numbers with a given
    distribution").
    """
    q = np.ones(len(weights))
    alias = np.arange(len(weights))
    for g0, n in zip(start.tolist(), size.tolist(), strict=False):
        if n == 0:
            continue
        w = weights[g0 : g0 + n]
        scaled = (w * (n / w.sum())).tolist()
        small = [i for i, v in enumerate(scaled) if v < 1.0]
        large = [i for i, v in enumerate(scaled) if v >= 1.0]
        while small and large:
            s, big = small.pop(), large.pop()
            q[g0 + s] = scaled[s]
            alias[g0 + s] = g0 + big
            scaled[big] -= 1.0 - scaled[s]
            (small if scaled[big] < 1.0 else large).append(big)
    return q.astype(np.float32), alias


def _argsort_int(key: np.ndarray, bound: int) -> np.ndarray:
    """Stable argsort of non-negative integer keys below ``bound`` (a plain sort of key * n + i
    where that fits in int64: several times faster than a stable argsort)."""
    n = len(key)
    if bound * max(n, 1) < 2**62:
        s = np.sort(key.astype(np.int64) * n + np.arange(n))
        return s % n if n else s
    return np.argsort(key, kind="stable")


def _first_occurrence(key: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Mask of the first occurrence of every key (by position), and the sorted distinct keys."""
    n = len(key)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask, key
    o = _argsort_int(key, bound)
    k = key[o]
    first = np.ones(n, dtype=bool)
    first[1:] = k[1:] != k[:-1]
    mask[o[first]] = True
    return mask, k[first]


def _member(key: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0:
        return np.zeros(len(key), dtype=bool)
    p = np.minimum(np.searchsorted(sorted_keys, key), len(sorted_keys) - 1)
    return sorted_keys[p] == key


def generate_with_truth(
    n_users: int = 1000,
    n_items: int = 500,
    n_interactions: int = 50_000,
    *,
    factors: int = 8,
    explicit: bool = True,
    random_state: int = 0,
    features: bool = True,
    progress: bool = False,
) -> tuple[Interactions, Truth]:
    """Like :func:`generate`, and also the latent :class:`Truth` that produced the data."""
    _check(n_users, n_items, n_interactions, factors)
    stage = _Stages(progress)
    rng = np.random.default_rng(random_state)
    n_genres, d = len(GENRES), factors
    U, I, N = int(n_users), int(n_items), int(n_interactions)  # noqa: E741 (the paper notation)

    # ---------------------------------------------------------------- latent tastes
    genre_f = rng.normal(size=(n_genres, d))
    genre_f /= np.linalg.norm(genre_f, axis=1, keepdims=True)
    prev = _PREVALENCE / _PREVALENCE.sum()

    def mixtures(n: int, second: float, weight: float, noise: float) -> np.ndarray:
        a = rng.choice(n_genres, size=n, p=prev)
        b = rng.choice(n_genres, size=n, p=prev)
        has_b = rng.random(n) < second
        return genre_f[a] + (weight * has_b)[:, None] * genre_f[b] + rng.normal(scale=noise, size=(n, d))

    item_f = mixtures(I, 0.6, 0.6, 0.3 / math.sqrt(d) * 2)
    user_f = mixtures(U, 0.7, 0.7, 0.5 / math.sqrt(d) * 2)
    drift = rng.normal(scale=0.5 / math.sqrt(d) * 2, size=(U, d))
    affinity = item_f @ genre_f.T  # (I, G)
    primary = affinity.argmax(axis=1)
    stage("tastes")

    # ---------------------------------------------------------------- popularity and activity
    ranks = rng.permutation(I) + 1
    pop = 1.0 / ranks**1.2
    pop /= pop.sum()
    logpop = np.log(pop)
    item_bias = 0.25 * (logpop - logpop.mean()) / (logpop.std() + 1e-12) + rng.normal(scale=0.3, size=I)
    user_bias = rng.normal(scale=0.4, size=U)
    activity = rng.lognormal(sigma=1.0, size=U)
    floor = min(5, N // U)
    cap = max(floor, min(I, int(math.ceil(0.8 * I))))
    if U * cap < N:
        cap = I
    counts = _allocate(rng, activity, N, floor, cap)

    # genre "rings": items of one primary genre in a random order; an item's sequel is the next
    ring = np.lexsort((rng.random(I), primary))
    g_size = np.bincount(primary, minlength=n_genres)
    g_start = np.concatenate([[0], np.cumsum(g_size)[:-1]])
    ring_pos = np.empty(I, dtype=np.int64)
    ring_pos[ring] = np.arange(I) - g_start[primary[ring]]
    sequel = ring[g_start[primary] + (ring_pos + 1) % g_size[primary]]
    g_mass = np.bincount(primary, weights=pop, minlength=n_genres)
    g_logmass = np.where(g_size > 0, np.log(np.maximum(g_mass, 1e-300)), -np.inf)
    alias_q, alias_j = _alias(pop[ring], g_start, g_size)
    uf, df, itf, gf = (x.astype(np.float32) for x in (user_f, drift, item_f, genre_f))
    n_cand, tau = 5, np.float32(2.0)

    def gumbel(shape: tuple[int, ...]) -> np.ndarray:
        return -np.log(np.maximum(rng.standard_exponential(shape, dtype=np.float32), np.float32(1e-30)))

    def pick_genre(users: np.ndarray, frac: np.ndarray, temp: float) -> np.ndarray:
        out = np.empty(len(users), dtype=np.int64)
        for lo in range(0, len(users), 1 << 18):
            sl = slice(lo, lo + (1 << 18))
            taste = uf[users[sl]] + frac[sl, None].astype(np.float32) * df[users[sl]]
            logits = np.float32(temp) * (taste @ gf.T) + g_logmass.astype(np.float32)
            out[sl] = np.argmax(logits + gumbel(logits.shape), axis=1)
        return out

    def draw(users: np.ndarray, genre: np.ndarray, frac: np.ndarray, flat: float) -> np.ndarray:
        """Best of ``n_cand`` candidates from the genre (by popularity, or uniform with prob
        ``flat``), chosen by soft-max of taste (Gumbel-max)."""
        out = np.empty(len(users), dtype=np.int64)
        step = 1 << 18
        for lo in range(0, len(users), step):
            sl = slice(lo, lo + step)
            g = genre[sl, None]
            m = len(g)
            x = rng.random((m, n_cand)) * g_size[g]  # slot = integer part, alias coin = fraction
            slot = np.minimum(x.astype(np.int64), g_size[g] - 1)  # (rounding can reach size)
            j = g_start[g] + slot
            jp = np.where((x - slot) < alias_q[j], j, alias_j[j])
            if flat > 0:
                jp = np.where(rng.random((m, n_cand), dtype=np.float32) < flat, j, jp)
            cand = ring[jp]
            taste = uf[users[sl]] + frac[sl, None].astype(np.float32) * df[users[sl]]
            score = tau * np.einsum("nd,ncd->nc", taste, itf[cand]) + gumbel(cand.shape)
            out[sl] = cand[np.arange(m), score.argmax(axis=1)]
        return out

    stage("popularity")

    # ---------------------------------------------------------------- sessions and choices
    draws = np.ceil(counts * (1.5 + 4.0 * counts / I)).astype(np.int64) + 1  # spares for repeats
    M = int(draws.sum())
    ev_user = np.repeat(np.arange(U), draws)
    starts = np.concatenate([[0], np.cumsum(draws)[:-1]])
    pos = np.arange(M) - np.repeat(starts, draws)
    frac = pos / np.repeat(np.maximum(draws - 1, 1), draws)
    new_session = (pos == 0) | (rng.random(M, dtype=np.float32) < 1 / 6)
    session = np.cumsum(new_session) - 1
    s_first = np.flatnonzero(new_session)
    ev_genre = pick_genre(ev_user[s_first], frac[s_first], 2.0)[session]
    del s_first
    stage("sessions")
    fresh_item = draw(ev_user, ev_genre, frac, 0.0)
    # within a session, go on to the sequel of the last fresh item (k steps along the ring)
    follow = (~new_session) & (rng.random(M, dtype=np.float32) < 0.35)
    last_fresh = np.maximum.accumulate(np.where(follow, 0, np.arange(M)))
    base = fresh_item[last_fresh]
    g = primary[base]
    item = np.where(follow, ring[g_start[g] + (ring_pos[base] + np.arange(M) - last_fresh) % g_size[g]], fresh_item)
    del fresh_item, base, g, last_fresh, follow, new_session
    stage("choices")

    # ---------------------------------------------------------------- distinct pairs, exact counts
    keep, seen_keys = _first_occurrence(ev_user * I + item, U * I)
    rank = np.cumsum(keep) - 1
    rank -= np.repeat(np.concatenate([[0], np.cumsum(np.add.reduceat(keep, starts))[:-1]]), draws)
    keep &= rank < np.repeat(counts, draws)
    sel = np.flatnonzero(keep)
    e_user, e_item, e_sess, e_order = ev_user[sel], item[sel], session[sel], 2 * pos[sel]
    e_genre, e_frac0 = ev_genre[sel], frac[sel]
    del keep, rank, ev_user, item, session, pos, frac, sel, ev_genre
    got = np.bincount(e_user, minlength=U)
    got0, k_start = got.copy(), np.concatenate([[0], np.cumsum(got)[:-1]])
    seen_keys = np.sort(e_user * I + e_item)
    extra_u, extra_i, extra_o = [], [], []
    added = np.empty(0, dtype=np.int64)
    # heavy users run out of distinct popular items: redraw the shortfall, a little flatter each round
    for r in range(1, 11):
        short = np.flatnonzero(got < counts)
        if not len(short):
            break
        need = counts[short] - got[short]
        n_try = need + np.ceil(need * 0.5 * r).astype(np.int64) + 1
        tu = np.repeat(short, n_try)
        late = max(0, r - 4)  # first as drawn (sampling without replacement), then flatter
        if late == 0:  # a redraw joins a random session of the user's, right after one of its events
            anchor = k_start[tu] + (rng.random(len(tu)) * got0[tu]).astype(np.int64)
            tg, tf, t_order = e_genre[anchor], e_frac0[anchor], e_order[anchor] + 1
        else:
            tf = rng.random(len(tu))
            tg, t_order = pick_genre(tu, tf, 2.0 / (1 + late)), 2 * np.floor(tf * draws[tu]).astype(np.int64) + 1
        ti = draw(tu, tg, tf, min(1.0, 0.25 * late))
        tk = tu * I + ti
        ok = ~(_member(tk, seen_keys) | _member(tk, added))
        first, _ = _first_occurrence(tk, U * I)
        ok &= first
        # keep at most ``need`` new items per user, in draw order
        t_start = np.concatenate([[0], np.cumsum(n_try)[:-1]])
        c = np.cumsum(ok) - 1
        c -= np.repeat(np.concatenate([[0], np.cumsum(np.add.reduceat(ok, t_start))[:-1]]), n_try)
        ok &= c < np.repeat(need, n_try)
        extra_u.append(tu[ok])
        extra_i.append(ti[ok])
        extra_o.append(t_order[ok])
        added = np.sort(np.concatenate([added, tk[ok]]))
        got += np.bincount(tu[ok], minlength=U)
    short = np.flatnonzero(got < counts)
    if len(short):  # the last few: best unseen items by taste and popularity, exactly
        is_short = np.zeros(U, dtype=bool)
        is_short[short] = True
        m = is_short[e_user]
        su = np.concatenate([e_user[m], *(x[is_short[x]] for x in extra_u)])
        si = np.concatenate([e_item[m], *(y[is_short[x]] for x, y in zip(extra_u, extra_i, strict=False))])
        block = max(1, (1 << 22) // I)
        for lo in range(0, len(short), block):
            users = short[lo : lo + block]
            row = np.full(U, -1, dtype=np.int64)
            row[users] = np.arange(len(users))
            sc = 1.5 * (user_f[users] + 0.5 * drift[users]) @ item_f.T + logpop + rng.gumbel(size=(len(users), I))
            inb = row[su] >= 0
            sc[row[su[inb]], si[inb]] = -np.inf
            need = counts[users] - got[users]
            top = np.argsort(-sc, axis=1, kind="stable")
            extra_u.append(np.repeat(users, need))
            extra_i.append(top[np.arange(I)[None, :] < need[:, None]])
            extra_o.append(
                2 * np.floor(rng.random(int(need.sum())) * np.repeat(draws[users], need)).astype(np.int64) + 1
            )
    n_extra = sum(len(x) for x in extra_u)
    if n_extra:  # extra events join the history at random places, in the session they land in
        e_user = np.concatenate([e_user, *extra_u])
        e_item = np.concatenate([e_item, *extra_i])
        e_order = np.concatenate([e_order, *extra_o])
        e_sess = np.concatenate([e_sess, np.full(n_extra, -1)])
    o = _argsort_int(e_user * (2 * int(draws.max()) + 2) + e_order, U * (2 * int(draws.max()) + 2))
    e_user, e_item, e_sess = e_user[o], e_item[o], e_sess[o]
    del o, e_order
    n = len(e_user)
    ulen = np.bincount(e_user, minlength=U)
    u_start = np.concatenate([[0], np.cumsum(ulen)[:-1]])
    upos = np.arange(n) - u_start[e_user]
    e_frac = upos / np.maximum(ulen[e_user] - 1, 1)  # position in the history drives the drift
    if n_extra:  # an extra event joins the session of the event before it
        idx = np.maximum.accumulate(np.where((e_sess >= 0) | (upos == 0), np.arange(n), 0))
        e_sess = np.where((e_sess < 0) & (upos > 0), e_sess[idx], e_sess)
        e_sess = np.where(e_sess < 0, -1 - np.arange(n), e_sess)  # or starts its own
    stage("distinct pairs")

    # ---------------------------------------------------------------- values and timestamps
    dot = np.empty(n, dtype=np.float32)
    for lo in range(0, n, 1 << 20):
        sl = slice(lo, lo + (1 << 20))
        taste = uf[e_user[sl]] + e_frac[sl, None].astype(np.float32) * df[e_user[sl]]
        dot[sl] = np.einsum("nd,nd->n", taste, itf[e_item[sl]])
    del taste
    if explicit:
        raw = (user_bias[e_user] + 2.6).astype(np.float32) + item_bias.astype(np.float32)[e_item] + 0.9 * dot
        raw += rng.standard_normal(n, dtype=np.float32) * np.float32(0.8)
        values = np.clip(np.rint(raw), 1, 5).astype(np.float32)
        del raw
    else:
        values = np.ones(n, dtype=np.float32)
    # time: each user arrives somewhere in a 3-year window and stays active for part of what is
    # left; sessions are spread over that stretch, events in a session minutes apart
    span = 3 * 365 * 86400
    arrive = rng.random(U) * 0.7
    active = (1.0 - arrive) * rng.uniform(0.05, 1.0, size=U) * span
    starts_session = (upos == 0) | (e_sess != np.concatenate([[-2], e_sess[:-1]]))
    between = rng.standard_exponential(n, dtype=np.float32)
    between[~starts_session | (upos == 0)] = 0.0
    total = np.bincount(e_user, weights=between, minlength=U)
    between *= (active / np.maximum(total, 1e-9)).astype(np.float32)[e_user]
    within = rng.standard_exponential(n, dtype=np.float32) * np.float32(240.0)
    gap = np.where(starts_session, between, within).astype(np.int64) + 1
    gap[upos == 0] = 0
    csum = np.cumsum(gap)
    timestamps = (T0 + (arrive * span).astype(np.int64))[e_user] + csum - csum[u_start[e_user]]
    del gap, csum, between, within, starts_session, dot
    # events in global time order, as a log would deliver them (ties: by user, then history)
    o = _argsort_int(timestamps - timestamps.min(), int(timestamps.max() - timestamps.min()) + 1)
    e_user, e_item, values, timestamps = e_user[o], e_item[o], values[o], timestamps[o]
    e_sess, e_frac = e_sess[o], e_frac[o]
    stage("ratings and timestamps")

    users = IdMap(np.array([f"u{k}" for k in range(U)], dtype=object), "user")
    items = IdMap(np.array([f"i{k}" for k in range(I)], dtype=object), "item")
    item_features = user_features = None
    if features:
        era = rng.normal(size=d)  # one "era" direction: film years and viewer ages both follow it
        era /= np.linalg.norm(era)
        item_features = _item_features(rng, item_f, era, affinity, primary, items.ids)
        user_features = _user_features(rng, user_f, era, users.ids)
        stage("features")
    summary = Summary(
        rows_read=n,
        rows_kept=n,
        duplicate_pairs=0,
        duplicate_policy="last",
        source=f"synthetic(n_users={U}, n_items={I}, n_interactions={N}, random_state={random_state})",
        notes=[f"{n_extra} events redrawn for heavy users who ran out of distinct items"] if n_extra else [],
    )
    data = Interactions(
        users,
        items,
        e_user,
        e_item,
        values,
        timestamps,
        explicit=explicit,
        rating_scale=(1.0, 5.0) if explicit else None,
        duplicates="last",
        item_features=item_features,
        user_features=user_features,
        summary=summary,
    )
    truth = Truth(
        user_factors=user_f,
        user_drift=drift,
        item_factors=item_f,
        genre_factors=genre_f,
        user_bias=user_bias,
        item_bias=item_bias,
        item_popularity=pop,
        item_primary_genre=primary,
        sequel=sequel,
        session=e_sess,
        progress=e_frac,
    )
    return data, truth


def _item_features(
    rng: np.random.Generator,
    item_f: np.ndarray,
    era: np.ndarray,
    affinity: np.ndarray,
    primary: np.ndarray,
    ids: np.ndarray,
) -> pd.DataFrame:
    I, G = affinity.shape  # noqa: E741
    # genres: the primary one plus others the taste vector points at strongly (at most 3)
    norm = np.linalg.norm(item_f, axis=1, keepdims=True)
    strong = affinity >= 0.6 * norm
    order = np.argsort(-affinity, axis=1)[:, :3]
    is_top = np.zeros_like(strong)
    np.put_along_axis(is_top, order, True, axis=1)
    member = strong & is_top
    member[np.arange(I), primary] = True
    genre_lists = [[GENRES[j] for j in order[i] if member[i, j]] for i in range(I)]
    # year: follows the "era" direction in taste space
    year = np.clip(np.rint(1996 + 16.0 * (item_f @ era) + rng.normal(scale=5.0, size=I)), 1930, 2024)
    # words: each word picks a genre by soft-max of the affinity, then a word of that genre
    n_words = 8
    glog = 4.0 * affinity
    genre_of_word = np.argmax(glog[:, None, :] + rng.gumbel(size=(I, n_words, G)), axis=2)
    word_idx = rng.integers(0, 10, size=(I, n_words))
    vocab = np.array([GENRE_WORDS[g] for g in GENRES], dtype=object)  # (G, 10)
    words = vocab[genre_of_word, word_idx]
    i1 = rng.integers(0, 10, size=I)
    t1 = vocab[primary, i1]
    same = genre_of_word[:, 0] == primary
    t2 = vocab[genre_of_word[:, 0], np.where(same & (word_idx[:, 0] == i1), (i1 + 1) % 10, word_idx[:, 0])]
    the = rng.random(I) < 0.4
    titles = [("The " if the[i] else "") + f"{str(t1[i]).capitalize()} {str(t2[i]).capitalize()}" for i in range(I)]
    seen: dict[str, int] = {}
    for i, t in enumerate(titles):  # repeated titles become sequels: "Robot Galaxy 2"
        c = seen.get(t, 0) + 1
        seen[t] = c
        if c > 1:
            titles[i] = f"{t} {c}"
    descriptions = [
        f"A story of {w[0]} and {w[1]}: {w[2]}, {w[3]} and {w[4]}, with {w[5]}, {w[6]} and {w[7]}."
        for w in words.tolist()
    ]
    # people: each specialises in one genre; an item's director and cast come from its genres
    n_people = max(len(GENRES) * 2, I // 3)
    spec = np.concatenate([np.arange(G), rng.choice(G, size=n_people - G, p=_PREVALENCE / _PREVALENCE.sum())])
    porder = np.argsort(spec, kind="stable")
    p_size = np.bincount(spec, minlength=G)
    p_start = np.concatenate([[0], np.cumsum(p_size)[:-1]])
    names = _names(rng, n_people)
    cast_genre = np.column_stack([primary, primary, primary, genre_of_word[:, 1]])
    # people are reused with a skew (a few are prolific): u**2 favours the start of each group
    pick = p_start[cast_genre] + np.floor(rng.random(cast_genre.shape) ** 2 * p_size[cast_genre]).astype(np.int64)
    who = porder[np.minimum(pick, n_people - 1)]
    people = [list(dict.fromkeys(names[j] for j in row)) for row in who.tolist()]
    return pd.DataFrame(
        {
            "title": pd.array(titles, dtype="str"),
            "year": year.astype(np.int64),
            "genres": genre_lists,
            "description": pd.array(descriptions, dtype="str"),
            "people": people,
        },
        index=pd.Index(ids, name="item", dtype="str"),
    )


def _names(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct person names (first x last, then with a middle initial)."""
    F, L = len(_FIRST), len(_LAST)
    perm = rng.permutation(max(n, F * L))
    out = []
    for k in perm[:n].tolist():
        first, last, extra = _FIRST[k % F], _LAST[(k // F) % L], k // (F * L)
        out.append(f"{first} {chr(ord('A') + extra % 26)}. {last}" if extra else f"{first} {last}")
    return out


def _user_features(rng: np.random.Generator, user_f: np.ndarray, era: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
    U, d = user_f.shape
    age = np.clip(np.rint(34 - 14.0 * (user_f @ era) + rng.normal(scale=6.0, size=U)), 14, 80).astype(np.int64)
    h = rng.normal(size=d)
    h /= np.linalg.norm(h)
    p_f = 1.0 / (1.0 + np.exp(-2.0 * (user_f @ h)))
    gender = np.where(rng.random(U) < p_f, "F", "M")
    occ_dir = rng.normal(size=(len(OCCUPATIONS), d))
    occ_dir /= np.linalg.norm(occ_dir, axis=1, keepdims=True)
    occ = np.argmax(1.5 * (user_f @ occ_dir.T) + rng.gumbel(size=(U, len(OCCUPATIONS))), axis=1)
    return pd.DataFrame(
        {
            "age": age,
            "gender": pd.array(gender, dtype="str"),
            "occupation": pd.array(np.array(OCCUPATIONS)[occ], dtype="str"),
        },
        index=pd.Index(ids, name="user", dtype="str"),
    )


# ---------------------------------------------------------------------- the 5 x 5 seed example
_SEED_MOVIES: list[dict[str, Any]] = [
    {"item": "Inception", "year": 2010, "genres": ["Sci-Fi", "Action", "Thriller"],
     "description": "A thief who steals secrets through dream-sharing is asked to plant an idea instead.",
     "people": ["Christopher Nolan", "Leonardo DiCaprio", "Elliot Page"]},
    {"item": "Arrival", "year": 2016, "genres": ["Sci-Fi", "Drama", "Mystery"],
     "description": "A linguist learns the language of alien visitors and with it a new sense of time.",
     "people": ["Denis Villeneuve", "Amy Adams", "Jeremy Renner"]},
    {"item": "Up", "year": 2009, "genres": ["Animation", "Adventure", "Comedy"],
     "description": "An old balloon seller ties thousands of balloons to his house and flies to South America.",
     "people": ["Pete Docter", "Ed Asner", "Jordan Nagai"]},
    {"item": "WALL-E", "year": 2008, "genres": ["Animation", "Sci-Fi", "Adventure"],
     "description": "A lonely trash-compacting robot on an abandoned Earth follows a probe robot into space.",
     "people": ["Andrew Stanton", "Ben Burtt", "Elissa Knight"]},
    {"item": "John Wick", "year": 2014, "genres": ["Action", "Thriller", "Crime"],
     "description": "A retired hitman hunts the gangsters who took the last gift from his late wife.",
     "people": ["Chad Stahelski", "Keanu Reeves", "Willem Dafoe"]},
]  # fmt: skip
_SEED_RATINGS: list[tuple[str, str, int]] = [
    ("Amit", "Inception", 5), ("Amit", "Arrival", 4), ("Amit", "John Wick", 3),
    ("Beth", "Inception", 4), ("Beth", "Arrival", 5), ("Beth", "Up", 2), ("Beth", "John Wick", 1),
    ("Carl", "Up", 5), ("Carl", "WALL-E", 5),
    ("Dana", "Arrival", 3), ("Dana", "Up", 4), ("Dana", "WALL-E", 5),
    ("Eva", "Up", 1), ("Eva", "John Wick", 5),
]  # fmt: skip
_SEED_USERS = {
    "Amit": (34, "M", "engineer"),
    "Beth": (29, "F", "scientist"),
    "Carl": (9, "M", "student"),
    "Dana": (41, "F", "teacher"),
    "Eva": (25, "F", "artist"),
}


def seed_example() -> Interactions:
    """The 5 x 5 teaching example: Amit, Beth, Carl, Dana and Eva rated 14 of 25 (user, movie) pairs.

    Amit and Beth like cerebral science fiction, Carl and Dana animation, Eva action. Item features
    (title, year, genres, description, people) let content models work on it too.
    """
    frame = pd.DataFrame(_SEED_RATINGS, columns=["user", "item", "rating"])
    frame["timestamp"] = T0 + 86400 * np.arange(len(frame))
    movies = pd.DataFrame(_SEED_MOVIES).set_index("item")
    movies.insert(0, "title", movies.index.astype(str))
    users = pd.DataFrame.from_dict(_SEED_USERS, orient="index", columns=["age", "gender", "occupation"])
    users.index.name = "user"
    return Interactions.from_frame(
        frame,
        "user",
        "item",
        "rating",
        "timestamp",
        scale=(1.0, 5.0),
        items=IdMap(movies.index.to_numpy(dtype=object), "item"),
        users=IdMap(np.array(list(_SEED_USERS), dtype=object), "user"),
        item_features=movies,
        user_features=users,
        source="seed_example",
    )
