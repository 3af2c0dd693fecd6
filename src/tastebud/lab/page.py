"""The lab page as the server sends it: ``static/index.html`` with the seed's grid already in it.

The grid is rendered here, not by the script, so the first response shows the 14 ratings (a
screenshot before any script runs, a reader without JavaScript, a slow connection); the script
then only adds behaviour to the cells it finds. The seed and the factorization's defaults are
inlined as JSON too, so the page needs no request to start.
"""

from __future__ import annotations

import functools
import json
from html import escape
from pathlib import Path
from typing import Any

from tastebud.lab.matrix import DEFAULT_FACTORS, DEFAULT_ITERATIONS, DEFAULT_REG

STATIC = Path(__file__).parent / "static"


def seed_matrix() -> dict[str, Any]:
    """The seed's 5 x 5 example: users, movies, genres and the 14 observed ratings (None = missing)."""
    from tastebud.data.synthetic import seed_example

    data = seed_example()
    dense: list[list[float | None]] = [[None] * data.n_items for _ in range(data.n_users)]
    coo = data.matrix.tocoo()
    for u, i, v in zip(coo.row, coo.col, coo.data, strict=True):
        dense[int(u)][int(i)] = float(v)
    feats = data.item_features
    genres = [list(feats.loc[i, "genres"]) if feats is not None else [] for i in data.items.ids]
    return {
        "users": [_py(u) for u in data.users.ids],
        "items": [_py(i) for i in data.items.ids],
        "genres": genres,
        "ratings": dense,
        "scale": list(data.rating_scale or (1.0, 5.0)),
        "defaults": {"factors": DEFAULT_FACTORS, "reg": DEFAULT_REG, "iterations": DEFAULT_ITERATIONS},
    }


@functools.lru_cache(maxsize=1)
def render_page() -> str:
    """index.html with the seed grid, its JSON and the sliders' defaults filled in (cached: all fixed)."""
    seed = seed_matrix()
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    # "</" cannot end the script element early once escaped; JSON stays valid
    inline = json.dumps(seed, separators=(",", ":")).replace("</", "<\\/")
    fills = {
        "{{seed_json}}": inline,
        "{{grid_head}}": _grid_head(seed),
        "{{grid_body}}": _grid_body(seed),
        "{{factors}}": str(DEFAULT_FACTORS),
        "{{reg}}": f"{DEFAULT_REG:g}",
        "{{reg_label}}": f"{DEFAULT_REG:.2f}",
    }
    for key, value in fills.items():
        if key not in html:
            raise RuntimeError(f"lab page template lacks {key}")  # a packaging bug, caught by the tests
        html = html.replace(key, value)
    return html


def _grid_head(seed: dict[str, Any]) -> str:
    cells = "".join(
        f'<th scope="col" title="{escape(", ".join(g))}">{escape(str(item))}</th>'
        for item, g in zip(seed["items"], seed["genres"], strict=True)
    )
    return f"<tr><td></td>{cells}</tr>"


def _grid_body(seed: dict[str, Any]) -> str:
    rows = []
    for u, (user, ratings) in enumerate(zip(seed["users"], seed["ratings"], strict=True)):
        cells = []
        for i, (item, value) in enumerate(zip(seed["items"], ratings, strict=True)):
            who = f"{user}, {item}"
            if value is None:
                kind, shown, label = "missing", "", f"{who}: no rating"
            else:
                kind, shown, label = "observed", f"{value:g}", f"{who}: rated {value:g}"
            cells.append(
                f'<td class="{kind}" data-u="{u}" data-i="{i}">'
                f'<input type="text" inputmode="decimal" autocomplete="off" maxlength="4" data-u="{u}" data-i="{i}"'
                f' id="cell-{u}-{i}" value="{shown}" placeholder="–" aria-label="{escape(label)}">'
                '<span class="fit" aria-hidden="true"></span></td>'
            )
        rows.append(f'<tr><th scope="row">{escape(str(user))}</th>{"".join(cells)}</tr>')
    return "".join(rows)


def _py(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value
