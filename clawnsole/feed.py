"""Reads for remote clients: keyset pages of items and the event feed (what `GET /api/v1/items` and the
SSE stream serve), as sans-I/O operations driven by `WorkQueue.run_steps` or its async twin.

The event feed has five sources, each read after a position of its own (a `Cursor`):

- `i` item events, by id (the history every item change writes);
- `r` schedule runs, by id (the run log: a window enqueued, a duplicate, skipped, missed, an error, run-now);
- `q` queue controls, `s` schedules and `a` alerts, which keep no history, only their state as it is now:
  by the time of their last change, in microseconds since the epoch. Two changes of one row between two
  reads are seen as the second (the state is what a reader needs: a queue paused then resumed is active).

A stream's event id is the whole cursor after that event (`i12.q1717….s0.r3.a0`), so a reconnect with
`Last-Event-ID` resumes every source where it was. While a stream has sent only item events its ids are the
bare item event id, as they always were: a bare id resumes the other sources from that event's time.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from clawnsole import validate
from clawnsole.alerts.ops import AlertState
from clawnsole.errors import InvalidInput
from clawnsole.models import Event, Item
from clawnsole.ops import Op, Step
from clawnsole.queues.models import QueueControl
from clawnsole.schedules.models import Schedule, ScheduleRun


@dataclass(frozen=True)
class ItemPage:
    """A page of items newest first, and the cursor of the next page (None: this was the last)."""

    items: list[Item]
    next_cursor: int | None
    # A page that searched (see `item_page`) looked at the items down to this id; None: it did not search.
    searched_to: int | None = None


# Statuses with an index of their own (items_claimable_idx, items_waiting_idx, items_lease_idx,
# items_trouble_idx): a page of one of them reads only those rows, whatever else it filters on.
INDEXED_STATUSES = frozenset({"pending", "waiting", "claimed", "failed", "cancelled"})
# A filtered page of any other status looks at most at this many items (see `item_page`).
SEARCH_SCAN = 10_000
MAX_TEXT = 200


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
    text: str | None = None,
    created_since: datetime | str | None = None,
    created_before: datetime | str | None = None,
    limit: int = 100,
    cursor: int | None = None,
) -> Op[ItemPage]:
    """One page of items newest first; `visible` limits them to these queues (None: all), `cursor` is the
    previous page's `next_cursor`. `text` matches inside the title (ASCII letters in any case),
    `created_since` / `created_before` the creation time.

    A status with an index of its own (INDEXED_STATUSES) is read from that index, whatever else is asked.
    Any other filtered page searches: it looks at no more than SEARCH_SCAN items, newest first (`searched_to`
    says down to which id), so a filter that matches few of a million finished items never walks through
    them all; such a page may hold fewer items than `limit`, even none, while `next_cursor` goes on."""
    size = validate.positive_int(limit, "limit", maximum=1000)
    since = None if created_since is None else validate.timestamp(created_since, "created_since")
    params = {
        "before": None if cursor is None else validate.item_id(cursor, "cursor"),
        "queues": _queues(visible),
        "queue": None if queue is None else validate.queue_name(queue),
        "status": validate.status(status),
        "kind": validate.kind(kind),
        "text": _text(text),
        "created_since": since,
        "created_before": None if created_before is None else validate.timestamp(created_before, "created_before"),
        # One more than asked: whether a next page exists, without a count.
        "limit": size + 1,
    }
    filtered = any(params[k] is not None for k in ("queues", "queue", "status", "kind", "text", "created_before"))
    if (filtered or since is not None) and status not in INDEXED_STATUSES:
        rows = yield Step("item_search", params | {"scan": SEARCH_SCAN})
        return _searched(rows, size, since)
    rows = yield Step("item_page", params)
    items = [Item.from_row(r) for r in rows[:size]]
    return ItemPage(items, items[-1].id if len(rows) > size and items else None)


def _text(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    validate.text(value, "text")
    if len(value) > MAX_TEXT:
        raise InvalidInput("text", f"must be at most {MAX_TEXT} characters")
    return value


def _searched(rows: list[dict[str, Any]], size: int, since: datetime | None) -> ItemPage:
    """The page of an `item_search`: its one row per match (or a single row of NULLs) carries the stretch."""
    stretch = rows[0]
    items = [Item.from_row(r) for r in rows[:size] if r["id"] is not None]
    lowest = stretch["scan_lowest"]
    if len(rows) > size:
        following = items[-1].id
    elif lowest is None or lowest <= 1 or stretch["scan_count"] < SEARCH_SCAN:
        following = None  # the stretch reached the first item
    elif since is not None and stretch["scan_newest"] < since:
        following = None  # ids follow creation: everything further back is older still
    else:
        following = int(lowest)
    return ItemPage(items, following, None if lowest is None else int(lowest))


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


# What a stream may be asked for (`?kinds=`), and the sources each reads.
KINDS: dict[str, tuple[str, ...]] = {"item": ("i",), "queue": ("q",), "schedule": ("s", "r"), "alert": ("a",)}
_ORDER = "iqsra"  # the sources, in the order an event id names them
_MAX_POSITION = 2**63 - 1
_BARE_ID = re.compile(r"[0-9]{1,19}")
_COMPOSITE_ID = re.compile(r"i([0-9]{1,19})\.q([0-9]{1,19})\.s([0-9]{1,19})\.r([0-9]{1,19})\.a([0-9]{1,19})")
# A queue control's state change, by the state it went to.
_QUEUE_EVENTS = {"active": "queue.resumed", "paused": "queue.paused", "draining": "queue.draining"}


class Cursor(NamedTuple):
    """Where a stream is in each source: the last position it has sent (or started from)."""

    item: int
    queue: int
    schedule: int
    run: int
    alert: int

    def event_id(self) -> str:
        """The SSE event id that resumes every source from here."""
        return ".".join(f"{source}{position}" for source, position in zip(_ORDER, self, strict=True))

    def past(self, change: Change) -> Cursor:
        """The cursor once `change` is sent."""
        field = self._fields[_ORDER.index(change.source)]
        return self._replace(**{field: max(getattr(self, field), change.position)})


@dataclass(frozen=True)
class Change:
    """One event of the feed: its source and position there, when it happened, its name, its queue (None
    for an alert about something else), and its JSON."""

    source: str
    position: int
    at: datetime
    event: str
    queue: str | None
    data: dict[str, Any]


@dataclass(frozen=True)
class Changes:
    """What a read of the feed found; `more` when a source filled its batch (read again at once)."""

    changes: list[Change]
    more: bool


def kinds(value: str | None) -> frozenset[str]:
    """The kinds a stream asks for (`item,queue,schedule,alert`; none given: all of them)."""
    if value is None or not value.strip():
        return frozenset(KINDS)
    asked = {part.strip() for part in value.split(",") if part.strip()}
    unknown = sorted(asked - set(KINDS))
    if unknown or not asked:
        raise InvalidInput("kinds", f"must be a comma-separated list of {', '.join(KINDS)} (got {value!r})")
    return frozenset(asked)


def resume_point(last_event_id: str | None) -> int | Cursor | None:
    """What a Last-Event-ID names: None (start now), a bare item event id, or a whole cursor."""
    if last_event_id is None or not last_event_id.strip():
        return None
    text = last_event_id.strip()
    if _BARE_ID.fullmatch(text):
        positions = [int(text)]
    elif (found := _COMPOSITE_ID.fullmatch(text)) is not None:
        positions = [int(p) for p in found.groups()]
    else:
        raise InvalidInput("Last-Event-ID", "must be the id of an event this stream sent")
    if max(positions) > _MAX_POSITION:
        raise InvalidInput("Last-Event-ID", "must be the id of an event this stream sent")
    return positions[0] if len(positions) == 1 else Cursor(*positions)


def cursor_now() -> Op[Cursor]:
    """Every source's newest position: where a stream that resumes nothing starts."""
    rows = yield Step("event_cursor_now", {})
    row = rows[0]
    positions = (int(row[name]) for name in ("item", "queue", "schedule", "run", "alert"))
    return Cursor(*positions)


def cursor_at(item_event: int) -> Op[Cursor]:
    """The cursor a bare item event id stands for: the other sources at that event's time."""
    rows = yield Step("event_cursor_at", {"item": max(item_event, 0)})
    changed, run = int(rows[0]["changed"]), int(rows[0]["run"])
    return Cursor(max(item_event, 0), changed, changed, run, changed)


def changes(
    cursor: Cursor, *, visible: Collection[str] | None = None, wanted: Collection[str] = tuple(KINDS), limit: int = 500
) -> Op[Changes]:
    """What happened after `cursor` in the sources of the `wanted` kinds, of the `visible` queues (None: all),
    oldest first: each source in its own order, merged by time."""
    sources = {source for kind in wanted for source in KINDS[kind]}
    queues = _queues(visible)
    found: list[list[Change]] = []
    more = False
    if "q" in sources:
        rows = yield Step("queue_change_feed", {"after": cursor.queue, "queues": queues})
        found.append(list(_queue_changes(rows)))
    if "s" in sources:
        rows = yield Step("schedule_change_feed", {"after": cursor.schedule, "queues": queues})
        found.append([_schedule_change(r) for r in rows])
    if "r" in sources:
        rows = yield Step("schedule_run_feed", {"after": cursor.run, "queues": queues, "limit": limit})
        found.append([_run_change(r) for r in rows])
        more = more or len(rows) == limit
    if "a" in sources:
        rows = yield Step("alert_change_feed", {"after": cursor.alert, "queues": queues})
        found.append([_alert_change(r) for r in rows])
    # Item events last: the read a stream makes just before it waits for an enqueue's notification, so the
    # stretch in which a notification comes too early to wake it (and waits for the next poll) stays short.
    if "i" in sources:
        rows = yield Step("item_event_feed", {"after": cursor.item, "queues": queues, "limit": limit})
        found.append([_item_change(FeedEvent(Event.from_row(r), r["queue"])) for r in rows])
        more = more or len(rows) == limit
    # heapq.merge takes each list's items in their own order (positions stay increasing within a source).
    return Changes(list(heapq.merge(*found, key=lambda c: c.at)), more)


def _item_change(entry: FeedEvent) -> Change:
    event = entry.event
    return Change("i", event.id, event.at, event.event, entry.queue, entry.to_json())


def _queue_changes(rows: list[dict[str, Any]]) -> Iterable[Change]:
    for row in rows:
        data = QueueControl.from_row(row["name"], row).to_json()
        changed_at, position = row["updated_at"], int(row["position"])
        # A row holds a state change (made by someone: a row created by a limit change is active by
        # default) and a limits change, each with its time; the change being read is the one made now.
        if row["state_by"] is not None and row["state_since"] == changed_at:
            yield Change(
                "q", position, changed_at, _QUEUE_EVENTS[row["state"]], row["name"], data | {"queue": row["name"]}
            )
        if row["limits_since"] == changed_at:
            yield Change("q", position, changed_at, "queue.limits", row["name"], data | {"queue": row["name"]})


def _schedule_change(row: dict[str, Any]) -> Change:
    found = Schedule.from_row(row)
    event = "schedule.created" if found.created_at == found.updated_at else "schedule.updated"
    data = found.to_json(with_instructions=False) | {"schedule": found.name}
    return Change("s", int(row["position"]), found.updated_at, event, found.queue, data)


def _run_change(row: dict[str, Any]) -> Change:
    data = ScheduleRun.from_row(row).to_json() | {"schedule": row["schedule"], "queue": row["queue"]}
    return Change("r", int(row["id"]), row["at"], f"schedule.{row['outcome']}", row["queue"], data)


def _alert_change(row: dict[str, Any]) -> Change:
    data = AlertState.from_row(row).to_json()
    queue = row["subject"] if row["subject_type"] == "queue" else None
    at = row["fired_at"] if row["state"] == "firing" else row["resolved_at"]
    event = "alert.fired" if row["state"] == "firing" else "alert.resolved"
    return Change("a", int(row["position"]), at, event, queue, data | {"queue": queue})
