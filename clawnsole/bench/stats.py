"""Small, dependency-free statistics over timings: percentiles, medians and steady rates."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], fraction: float) -> float:
    """The `fraction` (0..1) percentile by the nearest-rank method (the max for 1.0)."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered) - 1e-9)))
    return ordered[rank - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of durations given in seconds, in milliseconds."""
    return {
        "p50": round(percentile(seconds, 0.50) * 1000, 3),
        "p95": round(percentile(seconds, 0.95) * 1000, 3),
        "p99": round(percentile(seconds, 0.99) * 1000, 3),
        "max": round(max(seconds) * 1000, 3),
        "samples": len(seconds),
    }


def median(values: Sequence[float]) -> float:
    """The median (of repeated runs)."""
    return float(statistics.median(values))


def steady_rate(finish_times: Sequence[float], low: float = 0.10, high: float = 0.90) -> float:
    """Completions per second between the `low` and `high` fractions of all completions.

    Leaving out the first and last 10 % drops start-up (processes importing, connecting) and the tail
    (the last batch waiting for its slowest item), which is the rate a busy queue actually sustains.
    """
    ordered = sorted(finish_times)
    if len(ordered) < 10:
        span = ordered[-1] - ordered[0] if ordered else 0.0
        return len(ordered) / span if span > 0 else 0.0
    first = int(len(ordered) * low)
    last = int(len(ordered) * high) - 1
    span = ordered[last] - ordered[first]
    return (last - first) / span if span > 0 else 0.0
