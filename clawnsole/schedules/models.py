"""Frozen result objects of the schedule operations, and the checked definition a user writes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from clawnsole import validate
from clawnsole.errors import InvalidInput
from clawnsole.models import jsonable
from clawnsole.schedules import fire_times, system

# The fields of a definition that decide when it fires: changing one re-times the schedule.
TIMING_FIELDS = ("cron", "timezone", "interval_seconds")


@dataclass(frozen=True)
class ScheduleDef:
    """What a user defines: the item to enqueue, when, and how to behave after outages and overlaps."""

    name: str
    queue: str
    title: str
    cron: str | None = None
    timezone: str = "UTC"
    interval_seconds: int | None = None
    instructions: str | None = None
    kind: str | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int = 50
    max_attempts: int = 3
    catch_up: str = "latest"
    overlap: str = "allow"
    status: str = "active"
    description: str | None = None

    @property
    def timing(self) -> fire_times.Timing:
        return fire_times.Timing(self.cron, self.timezone, self.interval_seconds)

    def changed_fields(self, other: ScheduleDef) -> list[str]:
        """The names of the fields whose values differ from `other`'s."""
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]

    def checked(self) -> ScheduleDef:
        """This definition validated and normalised; raises InvalidInput naming the first bad field."""
        when = fire_times.timing(
            self.cron,
            # Checked here: the time zone lookup is cached, and an unhashable value would be a TypeError.
            None if self.timezone is None else _text(self.timezone, "timezone"),
            None if self.interval_seconds is None else self.interval_seconds,
        )
        checked = replace(
            self,
            name=fire_times.schedule_name(self.name),
            queue=validate.queue_name(_text(self.queue, "queue")),
            title=validate.title(_text(self.title, "title")),
            cron=when.cron,
            timezone=when.timezone,
            interval_seconds=when.interval_seconds,
            instructions=validate.optional_text(
                _optional_text(self.instructions, "instructions"), "instructions", validate.MAX_PAYLOAD_BYTES
            ),
            kind=validate.kind(_optional_text(self.kind, "kind")),
            payload=validate.payload(self.payload if self.payload is not None else {}),
            priority=validate.priority(_priority(self.priority)),
            max_attempts=validate.positive_int(
                _integer(self.max_attempts, "max_attempts"), "max_attempts", maximum=1000
            ),
            catch_up=fire_times.parse_choice(self.catch_up, "catch_up", fire_times.CATCH_UP_POLICIES),
            overlap=fire_times.parse_choice(self.overlap, "overlap", fire_times.OVERLAP_POLICIES),
            status=fire_times.parse_choice(self.status, "status", fire_times.SCHEDULE_STATUSES),
            description=validate.optional_text(_optional_text(self.description, "description"), "description", 10_000),
        )
        # A system item (kind clawnsole.*) must be one the scheduler can run: refused here, not at 3 a.m.
        system.check(checked.queue, checked.kind, checked.payload)
        return checked


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(name, "must be text")
    return value


def _optional_text(value: Any, name: str) -> str | None:
    # An empty string clears an optional field (that is how `update --instructions ''` removes them).
    if value is None or value == "":
        return None
    return _text(value, name)


def _priority(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput("priority", "must be an integer or one of critical, high, normal, low")
    return value


def _integer(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(name, "must be an integer")
    return value


@dataclass(frozen=True)
class Schedule:
    """A schedule as stored, with its bookkeeping."""

    id: int
    name: str
    queue: str
    kind: str | None
    title: str
    instructions: str | None
    payload: dict[str, Any]
    priority: int
    max_attempts: int
    cron: str | None
    timezone: str
    interval_seconds: int | None
    status: str
    catch_up: str
    overlap: str
    description: str | None
    next_run_at: datetime
    last_run_at: datetime | None
    last_item_id: int | None
    run_count: int
    skip_count: int
    error_count: int
    last_error: str | None
    last_error_at: datetime | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Schedule:
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    @property
    def timing(self) -> fire_times.Timing:
        return fire_times.Timing(self.cron, self.timezone, self.interval_seconds)

    @property
    def definition(self) -> ScheduleDef:
        """The user-defined part, as `ScheduleDef` (what import compares and export writes)."""
        return ScheduleDef(**{f.name: getattr(self, f.name) for f in fields(ScheduleDef)})

    def describe(self) -> str:
        """A human description of when it fires ('At 09:00, Monday through Friday')."""
        return fire_times.describe(self.timing)

    def to_json(self, *, with_instructions: bool = True) -> dict[str, Any]:
        """A JSON-ready dict, with the timing described and the next run shown in its own zone too."""
        data: dict[str, Any] = jsonable(asdict(self))
        if not with_instructions:
            data.pop("instructions")
        data["every"] = None if self.interval_seconds is None else fire_times.format_interval(self.interval_seconds)
        data["description_of_timing"] = self.describe()
        data["next_run_utc"] = fire_times.utc_iso(self.next_run_at)
        data["next_run_local"] = self.next_run_at.astimezone(self.timing.zone).isoformat()
        return data


@dataclass(frozen=True)
class ScheduleRun:
    """One entry of a schedule's run log: a window enqueued, found already enqueued, skipped, missed or failed."""

    id: int
    schedule_id: int
    fire_at: datetime
    at: datetime
    outcome: str
    item_id: int | None
    agent: str | None
    detail: dict[str, Any] | None
    item_status: str | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ScheduleRun:
        values: dict[str, Any] = {f.name: row.get(f.name) for f in fields(cls)}
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return jsonable(asdict(self))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Fired:
    """What one tick did for one schedule."""

    schedule: str
    enqueued: list[tuple[datetime, int]]
    duplicates: list[tuple[datetime, int]]
    skipped: list[datetime]
    missed_from: datetime | None
    error: str | None
    next_run_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "enqueued": [{"fire_at": fire_times.utc_iso(t), "item_id": i} for t, i in self.enqueued],
            "duplicates": [{"fire_at": fire_times.utc_iso(t), "item_id": i} for t, i in self.duplicates],
            "skipped": [fire_times.utc_iso(t) for t in self.skipped],
            "missed_from": None if self.missed_from is None else fire_times.utc_iso(self.missed_from),
            "error": self.error,
            "next_run_at": fire_times.utc_iso(self.next_run_at),
        }


@dataclass(frozen=True)
class SystemRun:
    """A system item (kind clawnsole.*) the scheduler ran itself after firing: how it ended.

    `outcome`: done, failed (for good), retry (failed with attempts left), released (the scheduler was
    stopping: back to pending, the attempt not charged) or lease_lost.
    """

    item_id: int
    kind: str | None
    outcome: str
    result: dict[str, Any] | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TickReport:
    """What one tick did: one entry per schedule it handled, and the system items it then ran."""

    fired: list[Fired]
    system: list[SystemRun] = field(default_factory=list)

    @property
    def enqueued(self) -> int:
        return sum(len(f.enqueued) for f in self.fired)

    @property
    def errors(self) -> int:
        return sum(1 for f in self.fired if f.error is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            "enqueued": self.enqueued,
            "skipped": sum(len(f.skipped) for f in self.fired),
            "errors": self.errors,
            "schedules": [f.to_json() for f in self.fired],
            "system_items": [r.to_json() for r in self.system],
        }


@dataclass(frozen=True)
class ImportReport:
    """What an import did (or, with dry_run, would do), by schedule name."""

    created: list[str]
    updated: dict[str, list[str]]
    unchanged: list[str]
    removed: list[str]
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
