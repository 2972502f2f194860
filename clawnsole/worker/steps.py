"""The worker's own operations over the statements in `db/queries/workers.sql` (sans-I/O, like `ops`)."""

from __future__ import annotations

from collections.abc import Sequence

from clawnsole.ops import Op, Step


def next_wakeup(queues: Sequence[str], *, agent: str) -> Op[float | None]:
    """Seconds until a pending item comes due or another agent's lease runs out (None: neither exists)."""
    rows = yield Step("queue_next_wakeup", {"queues": list(queues), "agent": agent})
    seconds = rows[0]["seconds"] if rows else None
    return None if seconds is None else float(seconds)


def ping() -> Op[None]:
    """One round trip to the server."""
    yield Step("worker_ping", {})
