"""Prometheus metrics in the text exposition format (no client library needed).

Counters and histograms are kept under one lock; ``render()`` writes format 0.0.4, which
Prometheus scrapes from ``GET /metrics``.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Callable

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}"


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

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._counters.get(name, {}).get(tuple(sorted(labels.items())), 0.0)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, series in self._counters.items():
                kind, text = self._help.get(name, ("counter", name))
                lines += [f"# HELP {name} {text}", f"# TYPE {name} counter"]
                for key, val in sorted(series.items()):
                    lines.append(f"{name}{_labels(key)} {val:g}")
            for name, series in self._hist.items():
                _, text = self._help.get(name, ("histogram", name))
                lines += [f"# HELP {name} {text}", f"# TYPE {name} histogram"]
                for key, row in sorted(series.items()):
                    cum = 0.0
                    for bound, count in zip(BUCKETS, row, strict=False):
                        cum += count
                        lines.append(f"{name}_bucket{_labels(key + (('le', f'{bound:g}'),))} {cum:g}")
                    cum += row[len(BUCKETS)]
                    lines.append(f"{name}_bucket{_labels(key + (('le', '+Inf'),))} {cum:g}")
                    lines.append(f"{name}_sum{_labels(key)} {row[-2]:.6f}")
                    lines.append(f"{name}_count{_labels(key)} {row[-1]:g}")
        for name, fn in self._gauges.items():
            _, text = self._help[name]
            try:
                val = float(fn())
            except Exception:  # noqa: BLE001 - a failing gauge must not break scraping
                continue
            lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge", f"{name} {val:g}"]
        return "\n".join(lines) + "\n"
