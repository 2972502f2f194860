"""Queue controls as values: the state and limits of a queue, a rate, and a queue's line in `queue list`.

Pure (no database): the parsing and checking of what a caller asks for lives here, so a bad value is refused
before anything is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clawnsole.errors import InvalidInput
from clawnsole.models import jsonable

STATES = ("active", "paused", "draining")
# The largest concurrency limit and rate accepted: far above anything a PostgreSQL server claims at once.
MAX_LIMIT = 1_000_000
# Rate windows: whole seconds, at most a day (the counter is one window at a time).
MAX_WINDOW_SECONDS = 86_400

_RATE = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]*)\s*([a-z]+)\s*", re.IGNORECASE)
_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600, "d": 86_400}
_UNIT_NAMES = {1: "s", 60: "m", 3600: "h", 86_400: "d"}


@dataclass(frozen=True)
class Rate:
    """At most `limit` claims in each window of `window_seconds`, windows aligned on the Unix epoch."""

    limit: int
    window_seconds: int

    def __str__(self) -> str:
        unit = _UNIT_NAMES.get(self.window_seconds)
        return f"{self.limit}/{unit}" if unit else f"{self.limit}/{self.window_seconds}s"


def parse_rate(value: str | Rate | None) -> Rate | None:
    """A rate from `10/s`, `600/m`, `1000/h`, `5/d` or `N/<count><unit>` (`100/10s`, `50/15m`); `none` (or
    None) means no rate limit."""
    if value is None or isinstance(value, Rate):
        return None if value is None else check_rate(value)
    if not isinstance(value, str):
        raise InvalidInput("rate", f"must be text like 10/s, not {type(value).__name__}")
    if value.strip().lower() == "none":
        return None
    match = _RATE.fullmatch(value)
    unit = _UNITS.get(match.group(3).lower()) if match else None
    if match is None or unit is None:
        raise InvalidInput("rate", f"{value!r} is not a rate: give N/s, N/m, N/h (e.g. 10/s, 600/m) or none")
    count = int(match.group(2)) if match.group(2) else 1
    return check_rate(Rate(int(match.group(1)), count * unit))


def check_rate(rate: Rate) -> Rate:
    """The rate, if its limit and window are in range."""
    if not 1 <= rate.limit <= MAX_LIMIT:
        raise InvalidInput("rate", f"the limit must be between 1 and {MAX_LIMIT} claims per window")
    if not 1 <= rate.window_seconds <= MAX_WINDOW_SECONDS:
        raise InvalidInput("rate", f"the window must be between 1 second and {MAX_WINDOW_SECONDS} seconds")
    return rate


def concurrency(value: int) -> int | None:
    """A concurrency limit: 1 to MAX_LIMIT items claimed at once; 0 clears it (None)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("concurrency", f"must be an integer, not {type(value).__name__}")
    if not 0 <= value <= MAX_LIMIT:
        raise InvalidInput("concurrency", f"must be between 0 (no limit) and {MAX_LIMIT}")
    return value or None


@dataclass(frozen=True)
class QueueControl:
    """How a queue is controlled: its state, since when and by whom, and its limits. A queue nobody has
    controlled has no row: it reads as active and unlimited, with no times."""

    name: str
    state: str
    state_since: datetime | None
    state_by: str | None
    concurrency_limit: int | None
    rate: Rate | None
    limits_by: str | None
    limits_since: datetime | None

    @classmethod
    def from_row(cls, name: str, row: dict[str, Any] | None) -> QueueControl:
        """From a `queues` row (any statement returning its columns), or the defaults when there is none."""
        if row is None or row.get("state") is None:
            return cls(name, "active", None, None, None, None, None, None)
        rate = None
        if row["rate_limit"] is not None:
            rate = Rate(int(row["rate_limit"]), int(row["rate_window_seconds"]))
        return cls(
            name=row["name"],
            state=row["state"],
            state_since=row["state_since"],
            state_by=row["state_by"],
            concurrency_limit=row["concurrency_limit"],
            rate=rate,
            limits_by=row["limits_by"],
            limits_since=row["limits_since"],
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; the rate as text (`20/s`) and as its two numbers."""
        data: dict[str, Any] = jsonable(
            {
                "name": self.name,
                "state": self.state,
                "state_since": self.state_since,
                "state_by": self.state_by,
                "concurrency_limit": self.concurrency_limit,
                "rate": None if self.rate is None else str(self.rate),
                "rate_limit": None if self.rate is None else self.rate.limit,
                "rate_window_seconds": None if self.rate is None else self.rate.window_seconds,
                "limits_by": self.limits_by,
                "limits_since": self.limits_since,
            }
        )
        return data


@dataclass(frozen=True)
class RateUsage:
    """How much of a rate-limited queue's current window its claims have used, and when the window ends."""

    rate: Rate
    used: int
    window_ends: datetime

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict; the rate as text (`600/m`)."""
        data: dict[str, Any] = jsonable(
            {"rate": str(self.rate), "limit": self.rate.limit, "used": self.used, "window_ends": self.window_ends}
        )
        return data


@dataclass(frozen=True)
class QueueSummary:
    """One queue in `queue list`: its controls and what it holds now."""

    control: QueueControl
    pending: int
    waiting: int
    claimed: int
    failed: int
    # Seconds the oldest due pending item has waited (None: nothing is due).
    oldest_pending_seconds: float | None
    # Items finished as done in the last five minutes.
    done_last_5m: int
    # Claims counted in the current rate window (None: no rate limit).
    rate_used: int | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> QueueSummary:
        """From a `queue_list` row."""
        oldest = row["oldest_pending_seconds"]
        return cls(
            control=QueueControl.from_row(row["name"], row),
            pending=int(row["pending"]),
            waiting=int(row["waiting"]),
            claimed=int(row["claimed"]),
            failed=int(row["failed"]),
            oldest_pending_seconds=None if oldest is None else round(float(oldest), 3),
            done_last_5m=int(row["done_last_5m"]),
            rate_used=None if row["rate_used"] is None else int(row["rate_used"]),
        )

    @property
    def name(self) -> str:
        """The queue's name."""
        return self.control.name

    def to_json(self) -> dict[str, Any]:
        """A flat JSON-ready dict: the control's fields, then the counts."""
        return self.control.to_json() | {
            "pending": self.pending,
            "waiting": self.waiting,
            "claimed": self.claimed,
            "failed": self.failed,
            "oldest_pending_seconds": self.oldest_pending_seconds,
            "done_last_5m": self.done_last_5m,
            "rate_used": self.rate_used,
        }
