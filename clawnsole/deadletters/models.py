"""What the dead-letter operations take and return: the checked filter, a replay's plan and its report."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from clawnsole import validate
from clawnsole.errors import InvalidInput
from clawnsole.models import Event, Item, jsonable

# At most this many ids in one `ids` filter: a replay by hand names a few; a bulk one filters.
MAX_IDS = 10_000


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters (failed items) an operation is about; every field left as None matches all.

    `since` is in seconds (finished at most that long ago); `error` matches text in the last error,
    case-insensitively; `max_replays` keeps only items replayed fewer times than that.
    """

    queue: str | None = None
    kind: str | None = None
    exclude_kinds: tuple[str, ...] = ()
    since: float | None = None
    error: str | None = None
    ids: tuple[int, ...] | None = None
    max_replays: int | None = None

    def params(self, *, cutoff: datetime | None = None) -> dict[str, Any]:
        """The statements' filter parameters (deadletters.sql); `cutoff` fixes the time window once."""
        return {
            "queue": self.queue,
            "kind": self.kind,
            "exclude_kinds": list(self.exclude_kinds),
            "since": self.since,
            "cutoff": cutoff,
            "error": self.error,
            "ids": None if self.ids is None else list(self.ids),
            "max_replays": self.max_replays,
        }


def dead_letter_filter(
    *,
    queue: str | None = None,
    kind: str | None = None,
    exclude_kinds: Iterable[str] = (),
    since: float | str | None = None,
    error: str | None = None,
    ids: Iterable[int] | None = None,
    max_replays: int | None = None,
) -> DeadLetterFilter:
    """A checked filter from keyword options; raises InvalidInput naming the first bad one."""
    excluded = tuple(dict.fromkeys(_kind(k, "exclude_kinds") for k in exclude_kinds))
    wanted = None if ids is None else tuple(dict.fromkeys(validate.item_id(i, "ids") for i in ids))
    if wanted is not None and not wanted:
        raise InvalidInput("ids", "name at least one id")
    if wanted is not None and len(wanted) > MAX_IDS:
        raise InvalidInput("ids", f"at most {MAX_IDS} ids at once (filter by queue, kind or time instead)")
    text = validate.optional_text(error, "error", 10_000)
    if text is not None and not text.strip():
        raise InvalidInput("error", "must not be empty")
    return DeadLetterFilter(
        queue=None if queue is None else validate.queue_name(queue),
        kind=validate.kind(kind),
        exclude_kinds=excluded,
        since=None if since is None else validate.duration(since, "since"),
        error=text,
        ids=wanted,
        max_replays=None if max_replays is None else validate.positive_int(max_replays, "max_replays", maximum=10_000),
    )


def _kind(value: str, field: str) -> str:
    if value is None:
        raise InvalidInput(field, "must be a kind name, not None")
    try:
        validate.kind(value)
    except InvalidInput as error:
        raise InvalidInput(field, error.message) from None
    return value


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter with its whole history (oldest event first)."""

    item: Item
    history: list[Event]

    def to_json(self) -> dict[str, Any]:
        """The item (with its full last error) and its history, JSON-ready."""
        return self.item.to_json() | {"history": [e.to_json() for e in self.history]}


@dataclass(frozen=True)
class DeadLetterGroup:
    """Dead letters of one queue and kind with the same error (the first line of their last error)."""

    queue: str
    kind: str | None
    error: str
    items: int
    last_failed_at: datetime | None
    first_failed_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> DeadLetterGroup:
        return cls(
            queue=row["queue"],
            kind=row["kind"],
            error=row["error"],
            items=int(row["items"]),
            last_failed_at=row["last_failed_at"],
            first_failed_at=row["first_failed_at"],
        )

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        data: dict[str, Any] = jsonable(self.__dict__.copy())
        return data


@dataclass(frozen=True)
class ReplayPlan:
    """What a replay would touch: matching dead letters per queue, up to `through_id`, failed since `cutoff`."""

    queues: dict[str, int]
    through_id: int | None
    cutoff: datetime | None

    @property
    def matched(self) -> int:
        """How many dead letters match."""
        return sum(self.queues.values())


@dataclass(frozen=True)
class ReplayReport:
    """The outcome of a replay: what matched, and (unless a dry run) what was put back.

    `queues` counts the replayed items per queue (in a dry run: the matching ones); `waiting` is how many
    went to `waiting` rather than `pending` because a prerequisite is not done yet.
    """

    dry_run: bool
    matched: int
    replayed: int
    queues: dict[str, int]
    ids: list[int] = field(default_factory=list)
    waiting: int = 0
    batches: int = 0

    def to_json(self) -> dict[str, Any]:
        """JSON-ready."""
        data: dict[str, Any] = jsonable(
            {
                "dry_run": self.dry_run,
                "matched": self.matched,
                "replayed": self.replayed,
                "waiting": self.waiting,
                "queues": self.queues,
                "ids": self.ids,
                "batches": self.batches,
            }
        )
        return data

    def summary(self) -> str:
        """One line saying what was (or would be) replayed, e.g. `replay 37 failed items in ops`."""
        count = self.matched if self.dry_run else self.replayed
        where = ", ".join(name if len(self.queues) == 1 else f"{name} ({n})" for name, n in sorted(self.queues.items()))
        noun = "failed item" if count == 1 else "failed items"
        if self.dry_run:
            return f"replay {count} {noun} in {where}" if count else "no failed items match: nothing to replay"
        if not count:
            return "replayed 0 failed items (none matched, or a concurrent replay took them)"
        waiting = f"; {self.waiting} waiting for prerequisites" if self.waiting else ""
        return f"replayed {count} {noun} in {where}{waiting}"
