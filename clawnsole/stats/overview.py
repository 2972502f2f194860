"""The overview of every queue at a glance (what the dashboard's front page and `GET /api/v1/overview`
show): counts now and over the last hour, and throughput per time bucket, all from indexes."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from clawnsole import validate
from clawnsole.errors import InvalidInput
from clawnsole.models import jsonable
from clawnsole.ops import Op, Step

# A chart has at most this many buckets: a window of a day in 1-second buckets would be 86,400 rows.
MAX_BUCKETS = 1000


@dataclass(frozen=True)
class QueueOverview:
    """One queue now: its state and limits, what it holds, and its last hour."""

    queue: str
    state: str
    state_since: datetime | None
    concurrency_limit: int | None
    rate_limit: int | None
    rate_window_seconds: float | None
    pending: int
    # Seconds the oldest due pending item has waited (None: nothing is due).
    oldest_pending_seconds: float | None
    waiting: int
    claimed: int
    # Claimed items whose lease has run out (a claim will take them over).
    expired: int
    failed: int
    cancelled: int
    done_1h: int
    failed_1h: int

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> QueueOverview:
        oldest = row["oldest_pending_seconds"]
        window = row["rate_window_seconds"]
        return cls(
            queue=row["queue"],
            state=row["state"],
            state_since=row["state_since"],
            concurrency_limit=row["concurrency_limit"],
            rate_limit=row["rate_limit"],
            rate_window_seconds=None if window is None else float(window),
            pending=int(row["pending"]),
            oldest_pending_seconds=None if oldest is None else round(float(oldest), 3),
            waiting=int(row["waiting"]),
            claimed=int(row["claimed"]),
            expired=int(row["expired"]),
            failed=int(row["failed"]),
            cancelled=int(row["cancelled"]),
            done_1h=int(row["done_1h"]),
            failed_1h=int(row["failed_1h"]),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return jsonable(asdict(self))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Bucket:
    """Items done and attempts failed in one time bucket starting at `at`."""

    at: datetime
    done: int
    failed: int

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {"at": self.at.isoformat(), "done": self.done, "failed": self.failed}


def _queues(visible: Collection[str] | None) -> list[str] | None:
    return None if visible is None else sorted(visible)


def queue_overview(visible: Collection[str] | None = None) -> Op[list[QueueOverview]]:
    """Every queue (of `visible`; None: all) with its counts now and over the last hour, by name."""
    rows = yield Step("stats_queue_overview", {"queues": _queues(visible)})
    return [QueueOverview.from_row(r) for r in rows]


def throughput(
    window: float | str = "1h",
    bucket: float | str = "1m",
    *,
    visible: Collection[str] | None = None,
    queue: str | None = None,
) -> Op[list[Bucket]]:
    """Done and failed per `bucket` over the last `window`, oldest first, every bucket present."""
    window_seconds = validate.duration(window, "window")
    bucket_seconds = validate.duration(bucket, "bucket")
    if bucket_seconds <= 0 or window_seconds / bucket_seconds > MAX_BUCKETS:
        raise InvalidInput("bucket", f"must split the window into at most {MAX_BUCKETS} buckets")
    rows = yield Step(
        "stats_throughput",
        {
            "window_seconds": window_seconds,
            "bucket_seconds": bucket_seconds,
            "queues": _queues(visible),
            "queue": None if queue is None else validate.queue_name(queue),
        },
    )
    return [Bucket(r["at"], int(r["done"]), int(r["failed"])) for r in rows]
