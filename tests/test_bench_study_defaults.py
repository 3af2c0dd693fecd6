"""study_defaults: every candidate is scored on every carve, and a default moves only past the margin."""

from __future__ import annotations

import pytest

from benchmods import bench_fixture
from tastebud.data.synthetic import generate

study = bench_fixture("study_defaults")


@pytest.fixture
def two_sets(study, monkeypatch):
    parts = {
        "a": generate(n_users=80, n_items=40, n_interactions=1600, explicit=True, random_state=0),
        "b": generate(n_users=60, n_items=50, n_interactions=1400, explicit=True, random_state=1),
    }
    monkeypatch.setattr(study, "training_parts", lambda task: parts)
    return parts


def test_every_candidate_is_scored_on_both_carves_relative_to_the_best(study, two_sets) -> None:
    result = study.study("bias", trials=3)
    assert result["sets"] == ["a", "b"]
    rows = result["rows"]
    assert any(row["params"] == result["default"] for row in rows)  # the old default competes
    assert len(rows) > 1 and all(len(row["values"]) == 2 and 0 < min(row["values"]) for row in rows)
    for row in rows:
        want = sum(min(r["values"][i] for r in rows) / row["values"][i] for i in range(2)) / 2
        assert row["relative"] == pytest.approx(want)
    assert [r["relative"] for r in rows] == sorted((r["relative"] for r in rows), reverse=True)


def test_the_default_moves_only_past_the_margin(study, two_sets, monkeypatch) -> None:
    monkeypatch.setattr(study, "TOLERANCE", 1.0)  # nothing can beat the default by 100%
    kept = study.study("bias", trials=3)
    assert not kept["moves"] and kept["chosen"] == kept["default"]
    monkeypatch.setattr(study, "TOLERANCE", -1.0)  # the winner always moves it
    moved = study.study("bias", trials=3)
    assert moved["moves"] and moved["chosen"] == moved["rows"][0]["params"]


def test_size_knobs_are_held_and_not_searched(study, two_sets) -> None:
    result = study.study("als", trials=2)
    assert set(result["held"]) == {"factors", "epochs"}
    assert all(not set(row["params"]) & {"factors", "epochs"} for row in result["rows"])
