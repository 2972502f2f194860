"""Inline SVG bar charts: geometry computed here, drawn by the template (attributes only, no inline style,
so the Content-Security-Policy stays strict)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC

from clawnsole.stats.overview import Bucket

WIDTH = 600
HEIGHT = 110
_AXIS = 14  # room under the bars for the time labels


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    done_y: float
    done_height: float
    failed_y: float
    failed_height: float
    title: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    labels: list[tuple[float, str]]
    peak: int
    done: int
    failed: int
    width: int = WIDTH
    height: int = HEIGHT
    baseline: int = HEIGHT - _AXIS


def bar_chart(buckets: Sequence[Bucket], *, label: str = "%H:%M", ticks: int = 6) -> Chart:
    """Stacked bars (done below, failed above) per bucket, scaled to the busiest bucket."""
    plot = HEIGHT - _AXIS
    peak = max((b.done + b.failed for b in buckets), default=0)
    step = WIDTH / max(len(buckets), 1)
    bars = []
    for i, b in enumerate(buckets):
        done_h = plot * b.done / peak if peak else 0.0
        failed_h = plot * b.failed / peak if peak else 0.0
        bars.append(
            Bar(
                x=round(i * step + step * 0.1, 2),
                width=round(step * 0.8, 2),
                done_y=round(plot - done_h, 2),
                done_height=round(done_h, 2),
                failed_y=round(plot - done_h - failed_h, 2),
                failed_height=round(failed_h, 2),
                title=f"{b.at.astimezone(UTC):%Y-%m-%d %H:%M} UTC: {b.done} done, {b.failed} failed",
            )
        )
    every = max(len(buckets) // ticks, 1)
    # Times in UTC; no label so near the right edge that it would be cut off.
    labels = [
        (round(i * step, 2), b.at.astimezone(UTC).strftime(label))
        for i, b in enumerate(buckets)
        if i % every == 0 and i * step < WIDTH - 40
    ]
    return Chart(bars, labels, peak, sum(b.done for b in buckets), sum(b.failed for b in buckets))
