"""Every schedule operation once, as a generator of named statements (sans-I/O), like `ops`.

Each operation runs in one transaction when driven by `WorkQueue.run` / `AsyncWorkQueue.run`. A tick is
more than one transaction (each due schedule is fired in its own, so one failure never undoes another's
work): `tick` is a *plan*, a generator of operations that the `Schedules` drivers run one by one, throwing
an operation's error back into the plan so it can record the failure and go on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from datetime import datetime
from typing import Any, TypeAlias, TypeVar

from psycopg.types.json import Jsonb

from clawnsole import ops
from clawnsole.errors import ClawnsoleError, InvalidInput, NotFound
from clawnsole.models import Enqueued
from clawnsole.ops import Op, Plan, Step
from clawnsole.schedules import fire_times
from clawnsole.schedules.models import (
    Fired,
    ImportReport,
    Schedule,
    ScheduleDef,
    ScheduleRun,
    TickReport,
)

T = TypeVar("T")

# How many run-log entries a schedule keeps (the newest).
RUN_LOG_KEEP = 200
# How many due schedules one listing hands to a tick before it lists again.
TICK_BATCH = 100
OPEN_STATUSES = ("waiting", "pending", "claimed")
_UPDATABLE = {f.name for f in fields(ScheduleDef)} - {"name"}


def _clock(now: datetime | None) -> Op[datetime]:
    rows = yield Step("schedule_clock", {"now": now})
    at: datetime = rows[0]["now"]
    return at


def _row_params(definition: ScheduleDef, next_run_at: datetime, now: datetime | None) -> dict[str, Any]:
    return {
        "name": definition.name,
        "queue": definition.queue,
        "kind": definition.kind,
        "title": definition.title,
        "instructions": definition.instructions,
        "payload": Jsonb(definition.payload),
        "priority": definition.priority,
        "max_attempts": definition.max_attempts,
        "cron": definition.cron,
        "timezone": definition.timezone,
        "interval_seconds": definition.interval_seconds,
        "status": definition.status,
        "catch_up": definition.catch_up,
        "overlap": definition.overlap,
        "description": definition.description,
        "next_run_at": next_run_at,
        "now": now,
    }


def _locked(name: str) -> Op[Schedule]:
    rows = yield Step("schedule_lock", {"name": name})
    if not rows:
        raise NotFound(f"no schedule named {name!r}")
    return Schedule.from_row(rows[0])


# --- defining schedules ----------------------------------------------------------------------------------


def add(definition: ScheduleDef, *, now: datetime | None = None) -> Op[Schedule]:
    """Create a schedule; its first run is its next fire time (an interval's: one interval from now)."""
    checked = definition.checked()
    at = yield from _clock(now)
    rows = yield Step("schedule_insert", _row_params(checked, fire_times.first_run(checked.timing, at), now))
    if not rows:
        # The bad-input table puts a taken name on add with bad input (exit 2), not conflict.
        raise InvalidInput("name", f"a schedule named {checked.name!r} already exists")
    return Schedule.from_row(rows[0])


def _rewrite(current: Schedule, new: ScheduleDef, now: datetime | None) -> Op[Schedule]:
    """Store a new definition for a locked schedule, re-timing it only when its timing or status changed."""
    changed = new.changed_fields(current.definition)
    if not changed:
        return current
    at = yield from _clock(now)
    retimed = any(f in changed for f in ("cron", "interval_seconds")) or (
        new.cron is not None and "timezone" in changed
    )
    next_run_at = current.next_run_at
    if retimed:
        next_run_at = fire_times.first_run(new.timing, at)
    elif "status" in changed and new.status == "active":
        next_run_at = fire_times.resume_run(new.timing, current.next_run_at, at)
    rows = yield Step("schedule_update", _row_params(new, next_run_at, now) | {"id": current.id})
    return Schedule.from_row(rows[0])


def changed_definition(current: ScheduleDef, changes: Mapping[str, Any]) -> ScheduleDef:
    """`current` with `changes` applied: `cron` and `every` replace each other; None leaves a field as is."""
    updates = {k: v for k, v in changes.items() if v is not None}
    unknown = set(updates) - _UPDATABLE - {"every"}
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "is not a field of a schedule")
    if "cron" in updates and "every" in updates:
        raise InvalidInput("schedule", "give either a cron expression or an interval (every), not both")
    if "every" in updates:
        updates["interval_seconds"] = fire_times.parse_interval(updates.pop("every"))
        updates["cron"] = None
    elif "cron" in updates:
        updates["interval_seconds"] = None
    return replace(current, **updates).checked()


def update(name: str, changes: Mapping[str, Any], *, now: datetime | None = None) -> Op[Schedule]:
    """Change some fields of a schedule (see `changed_definition`); a new timing restarts from now."""
    current = yield from _locked(name)
    return (yield from _rewrite(current, changed_definition(current.definition, changes), now))


def pause(name: str, *, now: datetime | None = None) -> Op[Schedule]:
    """Stop firing a schedule until it is resumed (pausing a paused schedule changes nothing)."""
    return (yield from update(name, {"status": "paused"}, now=now))


def resume(name: str, *, now: datetime | None = None) -> Op[Schedule]:
    """Fire a paused schedule again from its next window after now; windows missed while paused are not caught up."""
    return (yield from update(name, {"status": "active"}, now=now))


def remove(name: str) -> Op[Schedule]:
    """Delete a schedule and its run log; the items it already enqueued stay in their queues."""
    rows = yield Step("schedule_delete", {"name": name})
    if not rows:
        raise NotFound(f"no schedule named {name!r}")
    return Schedule.from_row(rows[0])


def get(name: str) -> Op[Schedule]:
    """One schedule by name."""
    rows = yield Step("schedule_get", {"name": name})
    if not rows:
        raise NotFound(f"no schedule named {name!r}")
    return Schedule.from_row(rows[0])


def list_schedules(status: str | None = None) -> Op[list[Schedule]]:
    """Every schedule by name, optionally only the active or the paused ones."""
    if status is not None:
        fire_times.parse_choice(status, "status", fire_times.SCHEDULE_STATUSES)
    rows = yield Step("schedule_list", {"status": status})
    return [Schedule.from_row(r) for r in rows]


def runs(name: str, limit: int = 20) -> Op[list[ScheduleRun]]:
    """A schedule's newest run-log entries (newest first), with the status of the items they name."""
    schedule = yield from get(name)
    rows = yield Step("schedule_run_list", {"schedule_id": schedule.id, "limit": limit})
    return [ScheduleRun.from_row(r) for r in rows]


def latest_runs() -> Op[dict[int, ScheduleRun]]:
    """The newest run-log entry of each schedule that has one, by schedule id (a list's "last run")."""
    rows = yield Step("schedule_run_latest", {})
    return {run.schedule_id: run for run in (ScheduleRun.from_row(r) for r in rows)}


def apply(
    definitions: Sequence[ScheduleDef], *, prune: bool = False, dry_run: bool = False, now: datetime | None = None
) -> Op[ImportReport]:
    """Make the stored schedules match `definitions` by name (an idempotent upsert), all or nothing.

    Unchanged schedules are not touched (their next run stays). With `prune`, schedules not named are
    removed. With `dry_run`, nothing is written and the report says what would be.
    """
    checked: list[ScheduleDef] = []
    for index, definition in enumerate(definitions):
        try:
            checked.append(definition.checked())
        except InvalidInput as error:
            raise InvalidInput(f"schedules[{index}] ({definition.name!r}) {error.field}", error.message) from None
    names = [d.name for d in checked]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InvalidInput("name", f"{twice[0]!r} is defined more than once")
    yield Step("schedule_import_lock", {})
    existing = {s.name: s for s in (yield from list_schedules())}
    created: list[str] = []
    updated: dict[str, list[str]] = {}
    unchanged: list[str] = []
    for definition in checked:
        current = existing.get(definition.name)
        if current is None:
            created.append(definition.name)
            if not dry_run:
                yield from add(definition, now=now)
            continue
        changed = definition.changed_fields(current.definition)
        if not changed:
            unchanged.append(definition.name)
            continue
        updated[definition.name] = changed
        if not dry_run:
            locked = yield from _locked(definition.name)
            yield from _rewrite(locked, definition, now)
    removed = sorted(set(existing) - set(names)) if prune else []
    if not dry_run:
        for name in removed:
            yield from remove(name)
    return ImportReport(created, updated, unchanged, removed, dry_run)


# --- firing ----------------------------------------------------------------------------------------------


def _enqueue(schedule: Schedule, key: str) -> Op[Enqueued]:
    # The item's history names the schedule as the agent that enqueued it.
    return (
        yield from ops.enqueue(
            schedule.queue,
            schedule.title,
            agent=f"schedule:{schedule.name}",
            kind=schedule.kind,
            instructions=schedule.instructions,
            payload=schedule.payload,
            priority=schedule.priority,
            dedupe_key=key,
            max_attempts=schedule.max_attempts,
        )
    )


_LogEntry: TypeAlias = tuple[datetime, str, int | None, dict[str, Any] | None]


def _record(schedule_id: int, log: list[_LogEntry], agent: str, now: datetime | None) -> Op[None]:
    if not log:
        return
    yield Step(
        "schedule_run_record",
        {
            "schedule_id": schedule_id,
            "fire_ats": [e[0] for e in log],
            "outcomes": [e[1] for e in log],
            "item_ids": [e[2] for e in log],
            "details": [None if e[3] is None else Jsonb(e[3]) for e in log],
            "agent": agent,
            "keep": RUN_LOG_KEEP,
            "now": now,
        },
    )


def run_now(name: str, *, agent: str, now: datetime | None = None) -> Op[Enqueued]:
    """Enqueue a schedule's item immediately, paused or not, under its own key (never a window's)."""
    schedule = yield from _locked(name)
    at = yield from _clock(now)
    outcome = yield from _enqueue(schedule, fire_times.run_now_key(schedule.name, at))
    yield from _record(
        schedule.id, [(at, "run_now" if outcome.created else "duplicate", outcome.item.id, None)], agent, now
    )
    yield Step(
        "schedule_advance",
        {
            "id": schedule.id,
            "next_run_at": schedule.next_run_at,
            "last_run_at": at,
            "last_item_id": outcome.item.id,
            "runs": int(outcome.created),
            "skips": 0,
            "errors": 0,
            "last_error": None,
            "now": now,
        },
    )
    return outcome


def list_due(*, now: datetime | None = None, limit: int = TICK_BATCH) -> Op[list[int]]:
    """Ids of the active schedules due at `now` (the database clock when None), most overdue first."""
    rows = yield Step("schedule_list_due", {"now": now, "limit": limit})
    return [int(r["id"]) for r in rows]


def fire(schedule_id: int, *, agent: str, now: datetime | None = None) -> Op[Fired | None]:
    """Fire one due schedule: enqueue its windows by catch-up and overlap policy, then advance it.

    Returns None when it is no longer due or another scheduler holds it. Runs in one transaction under the
    schedule's row lock, so the enqueues and the advance commit together or not at all.
    """
    rows = yield Step("schedule_lock_due", {"id": schedule_id, "now": now})
    if not rows:
        return None
    schedule = Schedule.from_row(rows[0])
    at: datetime = rows[0]["now"]
    last_status: str | None = rows[0]["last_item_status"]
    windows = fire_times.due_windows(schedule.timing, schedule.next_run_at, at, schedule.catch_up)
    log: list[_LogEntry] = []
    if windows.missed_from is not None:
        until = None if windows.missed_until is None else fire_times.utc_iso(windows.missed_until)
        log.append((windows.missed_from, "missed", None, {"until": until, "catch_up": schedule.catch_up}))
    enqueued: list[tuple[datetime, int]] = []
    duplicates: list[tuple[datetime, int]] = []
    skipped: list[datetime] = []
    error: str | None = None
    last_item: int | None = None
    last_run: datetime | None = None
    for index, fire_at in enumerate(windows.fire):
        if schedule.overlap == "skip" and last_status in OPEN_STATUSES:
            skipped.append(fire_at)
            log.append((fire_at, "skipped", None, {"open_item": last_item or schedule.last_item_id}))
            continue
        try:
            outcome = yield from _enqueue(schedule, fire_times.dedupe_key(schedule.name, fire_at))
        except ClawnsoleError as failure:
            # Raised by the enqueue's own checks before any statement ran (e.g. a bad target queue), so
            # the transaction is intact: record it and advance; later windows would fail the same way.
            error = str(failure)
            log.append((fire_at, "error", None, {"error": error, "windows": len(windows.fire) - index}))
            break
        item_id = outcome.item.id
        (enqueued if outcome.created else duplicates).append((fire_at, item_id))
        log.append((fire_at, "enqueued" if outcome.created else "duplicate", item_id, None))
        last_item, last_run, last_status = item_id, fire_at, outcome.item.status
    yield from _record(schedule.id, log, agent, now)
    yield Step(
        "schedule_advance",
        {
            "id": schedule.id,
            "next_run_at": windows.next_run_at,
            "last_run_at": last_run,
            "last_item_id": last_item,
            "runs": len(enqueued),
            "skips": len(skipped),
            "errors": int(error is not None),
            "last_error": error,
            "now": now,
        },
    )
    return Fired(schedule.name, enqueued, duplicates, skipped, windows.missed_from, error, windows.next_run_at)


def record_error(schedule_id: int, message: str, *, agent: str, now: datetime | None = None) -> Op[Fired | None]:
    """After a fire failed in the database (its transaction rolled back): count the error and advance.

    The windows are skipped rather than retried on every tick, so one broken schedule never holds up a
    scheduler; error_count/last_error and the run log say what happened.
    """
    rows = yield Step("schedule_lock_due", {"id": schedule_id, "now": now})
    if not rows:
        return None
    schedule = Schedule.from_row(rows[0])
    at: datetime = rows[0]["now"]
    windows = fire_times.due_windows(schedule.timing, schedule.next_run_at, at, schedule.catch_up)
    fire_at = windows.fire[-1] if windows.fire else schedule.next_run_at
    detail = {"error": message, "windows": max(len(windows.fire), 1)}
    yield from _record(schedule.id, [(fire_at, "error", None, detail)], agent, now)
    yield Step(
        "schedule_advance",
        {
            "id": schedule.id,
            "next_run_at": windows.next_run_at,
            "last_run_at": None,
            "last_item_id": None,
            "runs": 0,
            "skips": 0,
            "errors": 1,
            "last_error": message,
            "now": now,
        },
    )
    return Fired(schedule.name, [], [], [], windows.missed_from, message, windows.next_run_at)


def seconds_until_due(*, now: datetime | None = None) -> Op[float | None]:
    """Seconds until the earliest active schedule is due (<= 0: due now; None: no active schedule)."""
    rows = yield Step("schedule_next_due", {"now": now})
    seconds = rows[0]["seconds"] if rows else None
    return None if seconds is None else float(seconds)


def tick(*, agent: str, now: datetime | None = None, batch: int = TICK_BATCH) -> Plan[TickReport]:
    """Fire every due schedule, each in its own transaction (a plan of operations, see the module doc).

    Any number of ticks may run at once on any number of machines: each schedule is fired by whichever
    locks it first, and the others skip it.
    """
    fired: list[Fired] = []
    while True:
        due: list[int] = yield list_due(now=now, limit=batch)
        progressed = False
        for schedule_id in due:
            try:
                result: Fired | None = yield fire(schedule_id, agent=agent, now=now)
            except ClawnsoleError as failure:
                result = yield record_error(schedule_id, str(failure), agent=agent, now=now)
            if result is not None:
                fired.append(result)
                progressed = True
        # Stop when the listing was the last of them, or when every due schedule was held by another
        # scheduler (it will fire them; listing again would only spin).
        if len(due) < batch or not progressed:
            return TickReport(fired)
