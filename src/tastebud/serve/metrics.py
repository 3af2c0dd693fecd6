"""Prometheus metrics in the text exposition format (no client library needed).

Counters and histograms are kept under one lock; ``render()`` writes format 0.0.4, which
Prometheus scrapes from ``GET /metrics``. In a fleet of workers each worker keeps its own and
publishes a :meth:`Metrics.snapshot` now and then; the worker that answers a scrape renders its
own series plus the other workers' snapshots, so the totals are the fleet's (as in
prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable
from typing import Any

# seconds; fine between 5 and 25 ms, where a recommendation's latency target lies
BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}"


def _num(value: float) -> str:
    """Exact: a count past a million must not print as 1.23457e+06."""
    value = float(value)
    if math.isnan(value) or math.isinf(value):
        return "NaN" if math.isnan(value) else "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() else repr(value)


def _escape(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Metrics:
    """A tiny metrics registry: counters, gauges (by callback) and latency histograms."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self._help: dict[str, tuple[str, str]] = {}
        self._hist: dict[str, dict[tuple[tuple[str, str], ...], list[float]]] = {}
        self._gauges: dict[str, Callable[[], float]] = {}
        self.changes = 0  # bumped by every update: a publisher skips an unchanged snapshot

    def counter(self, name: str, help_text: str) -> None:
        self._help[name] = ("counter", help_text)
        self._counters.setdefault(name, {})

    def histogram(self, name: str, help_text: str) -> None:
        self._help[name] = ("histogram", help_text)
        self._hist.setdefault(name, {})

    def gauge(self, name: str, help_text: str, fn: Callable[[], float]) -> None:
        self._help[name] = ("gauge", help_text)
        self._gauges[name] = fn

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0.0) + amount
            self.changes += 1

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        pos = bisect.bisect_left(BUCKETS, value)
        with self._lock:
            series = self._hist.setdefault(name, {})
            row = series.get(key)
            if row is None:
                row = series[key] = [0.0] * (len(BUCKETS) + 3)  # buckets..., +Inf, sum, count
            row[pos] += 1
            row[-2] += value
            row[-1] += 1
            self.changes += 1

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def snapshot(self) -> dict[str, Any]:
        """Counters and histograms as plain JSON data (gauges are read live, by whoever renders)."""
        with self._lock:
            return {
                "buckets": list(BUCKETS),
                "counters": {n: [[list(map(list, k)), v] for k, v in s.items()] for n, s in self._counters.items()},
                "histograms": {n: [[list(map(list, k)), list(r)] for k, r in s.items()] for n, s in self._hist.items()},
            }

    def render(self, others: Iterable[dict[str, Any]] = ()) -> str:
        """The text format; series of ``others`` (other workers' snapshots) are added to this one's."""
        with self._lock:
            counters = {n: dict(s) for n, s in self._counters.items()}
            hists = {n: {k: list(r) for k, r in s.items()} for n, s in self._hist.items()}
        for snap in others:
            if snap.get("buckets") != list(BUCKETS):
                continue  # another bucket layout cannot be added up
            for name, series in snap.get("counters", {}).items():
                mine = counters.setdefault(name, {})
                for pairs, val in series:
                    key = tuple(map(tuple, pairs))
                    mine[key] = mine.get(key, 0.0) + val
            for name, series in snap.get("histograms", {}).items():
                mine_h = hists.setdefault(name, {})
                for pairs, row in series:
                    key = tuple(map(tuple, pairs))
                    have = mine_h.setdefault(key, [0.0] * len(row))
                    mine_h[key] = [a + b for a, b in zip(have, row, strict=True)]
        return self._text(counters, hists)

    def _text(
        self,
        counters: dict[str, dict[tuple[tuple[str, str], ...], float]],
        hists: dict[str, dict[tuple[tuple[str, str], ...], list[float]]],
    ) -> str:
        lines: list[str] = []
        for name, series in counters.items():
            _, text = self._help.get(name, ("counter", name))
            lines += [f"# HELP {name} {text}", f"# TYPE {name} counter"]
            for key, val in sorted(series.items()):
                lines.append(f"{name}{_labels(key)} {_num(val)}")
        for name, series in hists.items():
            _, text = self._help.get(name, ("histogram", name))
            lines += [f"# HELP {name} {text}", f"# TYPE {name} histogram"]
            for key, row in sorted(series.items()):
                cum = 0.0
                for bound, count in zip(BUCKETS, row, strict=False):
                    cum += count
                    lines.append(f"{name}_bucket{_labels(key + (('le', f'{bound:g}'),))} {_num(cum)}")
                cum += row[len(BUCKETS)]
                lines.append(f"{name}_bucket{_labels(key + (('le', '+Inf'),))} {_num(cum)}")
                lines.append(f"{name}_sum{_labels(key)} {row[-2]:.6f}")
                lines.append(f"{name}_count{_labels(key)} {_num(row[-1])}")
        for name, fn in self._gauges.items():
            _, text = self._help[name]
            try:
                val = float(fn())
            except Exception:  # noqa: BLE001 - a failing gauge must not break scraping
                continue
            lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {_num(val)}"]
        return "\n".join(lines) + "\n"
