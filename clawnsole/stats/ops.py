"""The stats operations as named statements (sans-I/O, like `clawnsole.ops`)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from clawnsole import validate
from clawnsole.errors import InvalidInput
from clawnsole.ops import Op, Step
from clawnsole.stats.models import KindStats, StepStats

# Without --since, stats cover the last day: the event log of a busy queue is large, and an unbounded
# window would read all of it.
DEFAULT_SINCE = 86400.0
# How many events one tail read returns at most (the tail reads again at once when it got this many).
TAIL_BATCH = 1000


def _filters(queue: str | None, kind: str | None, since: float | str | None) -> dict[str, Any]:
    return {
        "queue": None if queue is None else validate.queue_name(queue),
        "kind": validate.kind(kind),
        "since": DEFAULT_SINCE if since is None else validate.duration(since, "since"),
    }


def stats(queue: str | None = None, kind: str | None = None, since: float | str | None = None) -> Op[list[KindStats]]:
    """Outcomes, retries, success rate and p50/p95 run and wait times per queue and kind, over `since`."""
    rows = yield Step("stats_outcomes", _filters(queue, kind, since))
    return [KindStats.from_row(r) for r in rows]


def breakdown(
    queue: str | None = None, kind: str | None = None, since: float | str | None = None
) -> Op[list[StepStats]]:
    """Time per handler step (count, total, p50, p95) per queue and kind, over `since`, slowest first."""
    rows = yield Step("stats_steps", _filters(queue, kind, since))
    return [StepStats.from_row(r) for r in rows]


def step_name(value: str) -> str:
    """A step name: 1-128 letters, digits, '.', '_', '-' or ':' (it travels on one stderr line for --exec)."""
    if not isinstance(value, str) or not validate.QUEUE_NAME.fullmatch(value):
        raise InvalidInput("step", f"{value!r} is not a step name (1-128 of letters, digits, '.', '_', '-', ':')")
    return value


def record_step(item_id: int, *, lease_token: str, step: str, seconds: float, error: str | None = None) -> Op[bool]:
    """Append a `step` event to a held item; False (nothing written) when the lease is no longer held."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds) or seconds < 0:
        raise InvalidInput("seconds", "must be a finite number of seconds, zero or more")
    rows = yield Step(
        "item_step_record",
        {
            "id": validate.item_id(item_id),
            "lease_token": validate.lease_token(lease_token, "lease_token"),
            "step": step_name(step),
            "seconds": round(float(seconds), 6),
            "error": validate.optional_text(error, "error", 1000),
        },
    )
    return bool(rows)


def tail_start(lag: float) -> Op[tuple[datetime, int]]:
    """The database clock and the newest event id of the last `lag` seconds: where a tail starts."""
    rows = yield Step("event_tail_start", {"lag": lag})
    return rows[0]["now"], int(rows[0]["last_id"])


def tail_read(
    *, after: int, gaps: list[int], horizon: datetime, queue: str | None, limit: int = TAIL_BATCH
) -> Op[list[dict[str, Any]]]:
    """Events after `after` (or among `gaps`) since `horizon`, oldest first, with `wanted` for the queue."""
    rows = yield Step(
        "event_tail_read", {"after": after, "gaps": gaps, "horizon": horizon, "queue": queue, "limit": limit}
    )
    return rows
