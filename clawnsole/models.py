"""Frozen result objects returned by the library."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any
from uuid import UUID

# `waiting`: enqueued after prerequisites that are not all done yet (see docs/dependencies.md).
STATUSES = ("waiting", "pending", "claimed", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")


def jsonable(value: Any) -> Any:
    """The value with datetimes and UUIDs as strings, ready for json.dumps."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Item:
    """A work item as stored."""

    id: int
    queue: str
    kind: str | None
    title: str
    instructions: str | None
    payload: dict[str, Any]
    priority: int
    status: str
    dedupe_key: str | None
    run_at: datetime
    attempts: int
    max_attempts: int
    claimed_by: str | None
    lease_token: UUID | None
    lease_expires_at: datetime | None
    progress_note: str | None
    progress_percent: int | None
    result: Any
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    claimed_at: datetime | None
    finished_at: datetime | None
    # Free-form JSON the producer attached (`--metadata`); None when none was given.
    metadata: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Item:
        # Every claimed item is built here: filling the instance's dict directly is a third of the cost of
        # the frozen dataclass's __init__, which sets each of the 24 fields through object.__setattr__.
        item = object.__new__(cls)
        object.__setattr__(item, "__dict__", {name: row[name] for name in _ITEM_FIELDS})
        return item

    def to_json(self, *, with_instructions: bool = True) -> dict[str, Any]:
        """A JSON-ready dict; `instructions` left out on request (logs must never carry them)."""
        data = jsonable(asdict(self))
        if not with_instructions:
            data.pop("instructions")
        return data  # type: ignore[no-any-return]


# Computed once: `fields()` walks the class on every call, and every claimed item is built from a row.
_ITEM_FIELDS = tuple(f.name for f in fields(Item))


@dataclass(frozen=True)
class Enqueued:
    """The outcome of an enqueue: the item, and whether this call created it (False: dedupe key matched)."""

    item: Item
    created: bool
    # Why a new item did not start pending, when that needs saying (e.g. "prerequisite 12 failed").
    note: str | None = None


@dataclass(frozen=True)
class Event:
    """One entry of an item's history."""

    id: int
    item_id: int
    at: datetime
    event: str
    agent: str | None
    detail: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Event:
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    def to_json(self) -> dict[str, Any]:
        return jsonable(asdict(self))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class QueueCount:
    """How many items a queue has in one status, with the age of its oldest due pending item; also how many
    of them by kind ("(none)" for no kind) and by priority, and how many finished ones still hold their dedupe
    key in its cooldown."""

    queue: str
    status: str
    items: int
    oldest_pending_seconds: float | None
    expired_leases: int
    dedupe_in_cooldown: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    by_priority: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class NewItem:
    """One item of a batch for `enqueue_many` (batches take no dedupe key)."""

    queue: str
    title: str
    kind: str | None = None
    instructions: str | None = None
    payload: dict[str, Any] | None = None
    priority: int = 50
    run_at: datetime | None = None
    max_attempts: int = 3
    backoff: float = 10.0
    lease: float = 300.0
    # Ids of existing items this one runs after (it waits until they are all done).
    after: Sequence[int] = ()
    # Free-form JSON object stored with the item (at most 64 KiB).
    metadata: dict[str, Any] | None = None
