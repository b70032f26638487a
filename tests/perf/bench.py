"""Printing benchmark figures: one greppable line per figure, never an assertion on speed.

Every line reads ``BENCH <benchmark> <subject> key=value ...``, e.g.
``BENCH cold_start.wall producer median_ms=310.2 min_ms=301.9 max_ms=355.0 runs=10``,
so ``make bench | grep '^BENCH'`` is the whole result.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile: a value that was actually measured."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(samples: Sequence[float]) -> dict[str, float]:
    """median, p95, min and max of ``samples`` (in their own unit)."""
    return {
        "median": statistics.median(samples),
        "p95": percentile(samples, 95),
        "min": min(samples),
        "max": max(samples),
    }


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def emit(benchmark: str, subject: str, **fields: object) -> None:
    """Print one ``BENCH`` line."""
    pairs = " ".join(f"{key}={_text(value)}" for key, value in fields.items())
    print(f"BENCH {benchmark} {subject} {pairs}".rstrip(), flush=True)


def heading(text: str) -> None:
    """A human-readable separator (not a BENCH line)."""
    print(f"\n=== {text} ===", flush=True)
