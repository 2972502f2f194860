"""The run-time histogram of the event history (what `/metrics` exposes), as a named statement (sans-I/O).

Bucketed in the database (`metrics_run_time_buckets`): a day of attempts comes back as a few rows per queue,
kind and outcome. The counts are over a window (default: the last day), not since the queue began: retention
deletes old events, so a count "since the beginning" would fall — a histogram over a window says so honestly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from clawnsole import validate
from clawnsole.errors import InvalidInput
from clawnsole.ops import Op, Step
from clawnsole.stats.ops import DEFAULT_SINCE

# Upper bounds in seconds: sub-second handlers to hour-long agent tasks.
DEFAULT_BOUNDS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)


@dataclass(frozen=True)
class RunTimeHistogram:
    """The run times of one queue, kind and outcome (done, failed, retried): cumulative counts per bound."""

    queue: str
    kind: str | None
    outcome: str
    # (upper bound, attempts at or below it), ascending, the last bound being +Inf (= count).
    buckets: tuple[tuple[float, int], ...]
    count: int
    sum: float


def run_times(bounds: Sequence[float] = DEFAULT_BOUNDS, since: float | str | None = None) -> Op[list[RunTimeHistogram]]:
    """Histograms of attempt run times per queue, kind and outcome over `since` (default 24h)."""
    edges = [float(b) for b in bounds]
    if not edges or edges != sorted(set(edges)) or edges[0] <= 0:
        raise InvalidInput("bounds", "must be positive and strictly ascending")
    window = DEFAULT_SINCE if since is None else validate.duration(since, "since")
    rows = yield Step("metrics_run_time_buckets", {"since": window, "bounds": edges})
    grouped: dict[tuple[str, str | None, str], list[int]] = {}
    sums: dict[tuple[str, str | None, str], float] = {}
    for row in rows:
        key = (row["queue"], row["kind"], row["outcome"])
        per_bucket = grouped.setdefault(key, [0] * (len(edges) + 1))
        per_bucket[int(row["bucket"])] += int(row["count"])
        sums[key] = sums.get(key, 0.0) + float(row["sum"] or 0.0)
    found = []
    for key, per_bucket in grouped.items():
        running, cumulative = 0, []
        for bound, n in zip([*edges, float("inf")], per_bucket, strict=True):
            running += n
            cumulative.append((bound, running))
        found.append(RunTimeHistogram(*key, buckets=tuple(cumulative), count=running, sum=sums[key]))
    return found
