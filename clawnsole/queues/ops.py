"""Every queue-control operation once, as a generator of named statements (sans-I/O), like `clawnsole.ops`.

Each runs in one transaction when driven by `WorkQueue.run` / `AsyncWorkQueue.run`. What the controls mean
for claims is enforced by the claim statement itself (`item_claim` and `queue_claim_allowance`), for every
worker at once; these operations only change and read the `queues` row.
"""

from __future__ import annotations

from clawnsole import validate
from clawnsole.errors import InvalidInput
from clawnsole.ops import Op, Step
from clawnsole.queues.models import QueueControl, QueueSummary, Rate, RateUsage, concurrency, parse_rate


def _set_state(name: str, state: str, by: str) -> Op[QueueControl]:
    name = validate.queue_name(name)
    rows = yield Step("queue_state_set", {"name": name, "state": state, "by": validate.agent(by)})
    if not rows:  # already in that state: its row says since when and by whom
        rows = yield Step("queue_control_get", {"name": name})
    return QueueControl.from_row(name, rows[0] if rows else None)


def pause(name: str, *, by: str) -> Op[QueueControl]:
    """Stop claims from the queue (workers stay up; enqueues are still accepted)."""
    return (yield from _set_state(name, "paused", by))


def drain(name: str, *, by: str) -> Op[QueueControl]:
    """Refuse enqueues into the queue while claims go on, until it is empty (or resumed)."""
    return (yield from _set_state(name, "draining", by))


def resume(name: str, *, by: str) -> Op[QueueControl]:
    """Make a paused or draining queue active again, waking its idle workers."""
    name = validate.queue_name(name)
    rows = yield Step("queue_resume", {"name": name, "by": validate.agent(by)})
    if rows and rows[0]["state"] is not None:
        return QueueControl.from_row(name, rows[0])
    rows = yield Step("queue_control_get", {"name": name})
    return QueueControl.from_row(name, rows[0] if rows else None)


def set_limits(
    name: str, *, by: str, concurrency_limit: int | None = None, rate: str | Rate | None = None
) -> Op[QueueControl]:
    """Set the limits given (None leaves one as it is): `concurrency_limit` items claimed at once (0 clears
    it), `rate` claims per window (`10/s`, `600/m`, `1000/h`; `none` clears it). A limit below what is
    claimed now applies to new claims; nothing already claimed is taken back."""
    name = validate.queue_name(name)
    if concurrency_limit is None and rate is None:
        raise InvalidInput("limits", "give a concurrency limit or a rate (0 or none clears one)")
    limit = None if concurrency_limit is None else concurrency(concurrency_limit)
    parsed = None if rate is None else parse_rate(rate)
    rows = yield Step(
        "queue_limits_set",
        {
            "name": name,
            "by": validate.agent(by),
            "set_concurrency": concurrency_limit is not None,
            "concurrency": limit,
            "set_rate": rate is not None,
            "rate_limit": None if parsed is None else parsed.limit,
            "rate_window_seconds": None if parsed is None else parsed.window_seconds,
        },
    )
    return QueueControl.from_row(name, rows[0])


def get(name: str) -> Op[QueueControl]:
    """A queue's controls (active and unlimited when it was never controlled)."""
    name = validate.queue_name(name)
    rows = yield Step("queue_control_get", {"name": name})
    return QueueControl.from_row(name, rows[0] if rows else None)


def rate_usage(name: str) -> Op[RateUsage | None]:
    """The claims counted in the queue's current rate window and when it ends (None: no rate limit)."""
    rows = yield Step("queue_rate_usage", {"name": validate.queue_name(name)})
    if not rows:
        return None
    row = rows[0]
    rate = Rate(int(row["rate_limit"]), int(row["rate_window_seconds"]))
    return RateUsage(rate, int(row["used"]), row["window_ends"])


def list_queues(name: str | None = None) -> Op[list[QueueSummary]]:
    """Every queue with items or controls, by name (or only `name`): controls and counts."""
    rows = yield Step("queue_list", {"name": None if name is None else validate.queue_name(name)})
    return [QueueSummary.from_row(r) for r in rows]
