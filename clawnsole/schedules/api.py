"""`Schedules` (sync) and `AsyncSchedules` (asyncio): recurring enqueues, driven through a work queue.

Both are thin: every method runs one operation of `clawnsole.schedules.ops` through the queue's `run` (one
transaction each), so an application or an agent tool can create, pause, resume, remove and list
schedules with exactly the logic the CLI uses.

    with WorkQueue(url) as wq:
        schedules = Schedules(wq)
        schedules.add("hourly-pr-review", queue="dev-team", title="Review open PRs", cron="0 * * * *")
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

import psycopg

from clawnsole.models import Enqueued
from clawnsole.queue import AsyncWorkQueue, WorkQueue, notify_channel
from clawnsole.schedules import ops as schedule_ops
from clawnsole.schedules.models import ImportReport, Schedule, ScheduleDef, ScheduleRun, TickReport

T = TypeVar("T")


def schedule_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel on which schedule changes are announced (the payload is the name)."""
    return f"{notify_channel(schema)}:schedules"


def definition(
    name: str,
    *,
    queue: str | None = None,
    title: str | None = None,
    cron: str | None = None,
    every: float | str | None = None,
    timezone: str | None = None,
    instructions: str | None = None,
    kind: str | None = None,
    payload: dict[str, Any] | str | None = None,
    priority: int | str = 50,
    max_attempts: int = 3,
    catch_up: str = "latest",
    overlap: str = "allow",
    paused: bool = False,
    description: str | None = None,
    system: str | None = None,
    older_than: float | str | None = None,
) -> ScheduleDef:
    """A checked `ScheduleDef` from keyword options (the shape of `schedule add`).

    `system="cleanup"` (with `older_than`, e.g. "30d") makes a system schedule: its items go to the reserved
    queue `clawnsole` as kind `clawnsole.cleanup`, and the scheduler runs them itself (`schedules.system`);
    `payload` may add the cleanup's other options (statuses, queue, batch), `title` replaces the default one.
    """
    from clawnsole import validate
    from clawnsole.errors import InvalidInput
    from clawnsole.schedules import fire_times
    from clawnsole.schedules.system import system_fields

    if system is not None:
        for field, value in (("queue", queue), ("kind", kind)):
            if value is not None:
                raise InvalidInput(field, "a system schedule's items go to the clawnsole queue with a kind of its own")
        made = system_fields(system, older_than=older_than, payload=validate.payload(payload or {}))
        queue, kind, payload, title = made["queue"], made["kind"], made["payload"], title or made["title"]
    elif older_than is not None:
        raise InvalidInput("older_than", "only applies to a system schedule (--system cleanup)")
    if queue is None:
        raise InvalidInput("queue", "missing: give the queue the items go to")
    if title is None:
        raise InvalidInput("title", "missing: give the items' title")
    when = fire_times.timing(cron, timezone, every)
    return ScheduleDef(
        name=name,
        queue=queue,
        title=title,
        cron=when.cron,
        timezone=when.timezone,
        interval_seconds=when.interval_seconds,
        instructions=instructions,
        kind=kind,
        payload=validate.payload(payload if payload is not None else {}),
        priority=validate.priority(priority),
        max_attempts=max_attempts,
        catch_up=catch_up,
        overlap=overlap,
        status="paused" if paused else "active",
        description=description,
    ).checked()


def _changes(options: dict[str, Any]) -> dict[str, Any]:
    paused = options.pop("paused", None)
    if paused is not None:
        options["status"] = "paused" if paused else "active"
    return options


class Schedules:
    """Recurring enqueues stored in PostgreSQL, run through an open `WorkQueue`."""

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue

    def add(
        self, name: str, *, now: datetime | None = None, conn: psycopg.Connection[Any] | None = None, **options: Any
    ) -> Schedule:
        """Create a schedule (options as `definition`: queue, title, cron or every, timezone, …)."""
        return self._queue.run(schedule_ops.add(definition(name, **options), now=now), conn)

    def get(self, name: str) -> Schedule:
        """One schedule by name (NotFound when there is none)."""
        return self._queue.run(schedule_ops.get(name))

    def list(self, status: str | None = None) -> builtins.list[Schedule]:
        """Every schedule by name, optionally only `active` or `paused` ones."""
        return self._queue.run(schedule_ops.list_schedules(status))

    def update(
        self, name: str, *, now: datetime | None = None, conn: psycopg.Connection[Any] | None = None, **changes: Any
    ) -> Schedule:
        """Change fields (as `definition`; None keeps one, '' clears optional text); a new timing re-times it."""
        return self._queue.run(schedule_ops.update(name, _changes(changes), now=now), conn)

    def pause(self, name: str, *, conn: psycopg.Connection[Any] | None = None) -> Schedule:
        """Stop firing until resumed."""
        return self._queue.run(schedule_ops.pause(name), conn)

    def resume(
        self, name: str, *, now: datetime | None = None, conn: psycopg.Connection[Any] | None = None
    ) -> Schedule:
        """Fire again from the next window after now (windows missed while paused are not caught up)."""
        return self._queue.run(schedule_ops.resume(name, now=now), conn)

    def remove(self, name: str, *, conn: psycopg.Connection[Any] | None = None) -> Schedule:
        """Delete a schedule for good (the items it enqueued stay)."""
        return self._queue.run(schedule_ops.remove(name), conn)

    def run_now(
        self, name: str, *, now: datetime | None = None, conn: psycopg.Connection[Any] | None = None
    ) -> Enqueued:
        """Enqueue the schedule's item immediately under its own dedupe key."""
        return self._queue.run(schedule_ops.run_now(name, agent=self._queue.agent, now=now), conn)

    def runs(self, name: str, limit: int = 20) -> builtins.list[ScheduleRun]:
        """The newest run-log entries of a schedule, newest first."""
        return self._queue.run(schedule_ops.runs(name, limit))

    def latest_runs(self) -> dict[int, ScheduleRun]:
        """The newest run-log entry of each schedule that has one, by schedule id."""
        return self._queue.run(schedule_ops.latest_runs())

    def apply(
        self,
        definitions: Sequence[ScheduleDef],
        *,
        prune: bool = False,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> ImportReport:
        """Upsert these definitions by name in one transaction (see `schedule_ops.apply`)."""
        return self._queue.run(schedule_ops.apply(definitions, prune=prune, dry_run=dry_run, now=now))

    def export(self) -> builtins.list[ScheduleDef]:
        """Every schedule's definition, by name (what `apply` takes back unchanged)."""
        return [s.definition for s in self.list()]

    def tick(self, *, now: datetime | None = None) -> TickReport:
        """Fire every due schedule once; safe to run from any number of processes at once."""
        return self._queue.run_plan(schedule_ops.tick(agent=self._queue.agent, now=now))

    def seconds_until_due(self) -> float | None:
        """Seconds until the earliest active schedule is due (None: there is none)."""
        return self._queue.run(schedule_ops.seconds_until_due())


class AsyncSchedules:
    """The asyncio twin of `Schedules`, run through an open `AsyncWorkQueue`."""

    def __init__(self, queue: AsyncWorkQueue) -> None:
        self._queue = queue

    async def add(
        self,
        name: str,
        *,
        now: datetime | None = None,
        conn: psycopg.AsyncConnection[Any] | None = None,
        **options: Any,
    ) -> Schedule:
        """Create a schedule (options as `definition`: queue, title, cron or every, timezone, …)."""
        return await self._queue.run(schedule_ops.add(definition(name, **options), now=now), conn)

    async def get(self, name: str) -> Schedule:
        """One schedule by name (NotFound when there is none)."""
        return await self._queue.run(schedule_ops.get(name))

    async def list(self, status: str | None = None) -> builtins.list[Schedule]:
        """Every schedule by name, optionally only `active` or `paused` ones."""
        return await self._queue.run(schedule_ops.list_schedules(status))

    async def update(
        self,
        name: str,
        *,
        now: datetime | None = None,
        conn: psycopg.AsyncConnection[Any] | None = None,
        **changes: Any,
    ) -> Schedule:
        """Change fields (as `definition`; None keeps one, '' clears optional text); a new timing re-times it."""
        return await self._queue.run(schedule_ops.update(name, _changes(changes), now=now), conn)

    async def pause(self, name: str, *, conn: psycopg.AsyncConnection[Any] | None = None) -> Schedule:
        """Stop firing until resumed."""
        return await self._queue.run(schedule_ops.pause(name), conn)

    async def resume(
        self, name: str, *, now: datetime | None = None, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> Schedule:
        """Fire again from the next window after now (windows missed while paused are not caught up)."""
        return await self._queue.run(schedule_ops.resume(name, now=now), conn)

    async def remove(self, name: str, *, conn: psycopg.AsyncConnection[Any] | None = None) -> Schedule:
        """Delete a schedule for good (the items it enqueued stay)."""
        return await self._queue.run(schedule_ops.remove(name), conn)

    async def run_now(
        self, name: str, *, now: datetime | None = None, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> Enqueued:
        """Enqueue the schedule's item immediately under its own dedupe key."""
        return await self._queue.run(schedule_ops.run_now(name, agent=self._queue.agent, now=now), conn)

    async def runs(self, name: str, limit: int = 20) -> builtins.list[ScheduleRun]:
        """The newest run-log entries of a schedule, newest first."""
        return await self._queue.run(schedule_ops.runs(name, limit))

    async def latest_runs(self) -> dict[int, ScheduleRun]:
        """The newest run-log entry of each schedule that has one, by schedule id."""
        return await self._queue.run(schedule_ops.latest_runs())

    async def apply(
        self,
        definitions: Sequence[ScheduleDef],
        *,
        prune: bool = False,
        dry_run: bool = False,
        now: datetime | None = None,
    ) -> ImportReport:
        """Upsert these definitions by name in one transaction (see `schedule_ops.apply`)."""
        return await self._queue.run(schedule_ops.apply(definitions, prune=prune, dry_run=dry_run, now=now))

    async def export(self) -> builtins.list[ScheduleDef]:
        """Every schedule's definition, by name (what `apply` takes back unchanged)."""
        return [s.definition for s in await self.list()]

    async def tick(self, *, now: datetime | None = None) -> TickReport:
        """Fire every due schedule once; safe to run from any number of processes at once."""
        return await self._queue.run_plan(schedule_ops.tick(agent=self._queue.agent, now=now))

    async def seconds_until_due(self) -> float | None:
        """Seconds until the earliest active schedule is due (None: there is none)."""
        return await self._queue.run(schedule_ops.seconds_until_due())


__all__ = ["AsyncSchedules", "Schedules", "definition", "schedule_channel"]
