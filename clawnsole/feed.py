"""Reads for remote clients: keyset pages of items and the item-event feed (what `GET /api/v1/items` and
the SSE stream serve), as sans-I/O operations driven by `WorkQueue.run_steps` or its async twin."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from clawnsole import validate
from clawnsole.models import Event, Item
from clawnsole.ops import Op, Step


@dataclass(frozen=True)
class ItemPage:
    """A page of items newest first, and the cursor of the next page (None: this was the last)."""

    items: list[Item]
    next_cursor: int | None


@dataclass(frozen=True)
class FeedEvent:
    """An item event with the queue of its item (the feed filters and labels by queue)."""

    event: Event
    queue: str

    def to_json(self) -> dict[str, Any]:
        """The event's JSON with its queue."""
        return self.event.to_json() | {"queue": self.queue}


def _queues(queues: Collection[str] | None) -> list[str] | None:
    return None if queues is None else sorted(queues)


def item_page(
    *,
    visible: Collection[str] | None = None,
    queue: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    cursor: int | None = None,
) -> Op[ItemPage]:
    """One page of items newest first; `visible` limits them to these queues (None: all), `cursor` is the
    previous page's `next_cursor`."""
    size = validate.positive_int(limit, "limit", maximum=1000)
    rows = yield Step(
        "item_page",
        {
            "before": None if cursor is None else validate.item_id(cursor, "cursor"),
            "queues": _queues(visible),
            "queue": None if queue is None else validate.queue_name(queue),
            "status": validate.status(status),
            "kind": validate.kind(kind),
            # One more than asked: whether a next page exists, without a count.
            "limit": size + 1,
        },
    )
    items = [Item.from_row(r) for r in rows[:size]]
    return ItemPage(items, items[-1].id if len(rows) > size and items else None)


def event_feed(after: int, *, visible: Collection[str] | None = None, limit: int = 500) -> Op[list[FeedEvent]]:
    """Item events with an id above `after`, oldest first, of the `visible` queues (None: all)."""
    if after < 0:
        after = 0
    rows = yield Step("item_event_feed", {"after": after, "queues": _queues(visible), "limit": limit})
    return [FeedEvent(Event.from_row(r), r["queue"]) for r in rows]


def event_last() -> Op[int]:
    """The newest item event id (0 with none): where a feed that resumes nothing starts."""
    rows = yield Step("item_event_last", {})
    return int(rows[0]["id"])
