"""Schedules over HTTP, with the routes of the scheduler plan (Phase 4): trailing slashes, `{id}` the
schedule's id or its name (thin over `clawnsole.schedules`).

A token sees and changes only the schedules whose queue is one of its own; creating one, or moving one, into
another queue is refused as if that queue did not exist (404).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict

from clawnsole.errors import NotFound
from clawnsole.queue import AsyncWorkQueue
from clawnsole.schedules.api import AsyncSchedules
from clawnsole.schedules.models import Schedule
from clawnsole.schedules.system import SYSTEM_QUEUE
from clawnsole.web.auth import Principal, mutation, queue_of, require
from clawnsole.web.mutations import as_agent

router = APIRouter(prefix="/api/v1/schedules", tags=["schedules"])
# `{id}` as the plan names it: the schedule's id or its name.
Ref = Annotated[str, Path(alias="id", description="The schedule's id or name.")]


class ScheduleChanges(BaseModel):
    """Fields of a schedule to change (those left out stay as they are; `cron` and `every` replace each
    other). The same fields as `clawnsole schedule update`."""

    model_config = ConfigDict(extra="forbid")
    queue: str | None = None
    title: str | None = None
    cron: str | None = None
    every: str | float | None = None
    timezone: str | None = None
    instructions: str | None = None
    kind: str | None = None
    payload: dict[str, Any] | None = None
    priority: int | str | None = None
    max_attempts: int | None = None
    catch_up: str | None = None
    overlap: str | None = None
    description: str | None = None
    paused: bool | None = None


class NewSchedule(ScheduleChanges):
    """A schedule to create: its name and the options of `clawnsole schedule add` (`system: "cleanup"` with
    `older_than` makes a retention schedule in the reserved `clawnsole` queue)."""

    name: str
    system: str | None = None
    older_than: str | float | None = None


def _json(schedule: Schedule, principal: Principal) -> dict[str, Any]:
    return schedule.to_json(with_instructions=principal.sees_instructions)


async def _find(schedules: AsyncSchedules, principal: Principal, ref: str) -> Schedule:
    """The schedule named `ref`, else the one whose id it is; 404 when none, or when its queue is not the
    token's."""
    try:
        found = await schedules.get(ref)
    except NotFound:
        if not ref.isdigit():
            raise
        found = next((s for s in await schedules.list() if s.id == int(ref)), None)  # type: ignore[assignment]
        if found is None:
            raise NotFound(f"no schedule with the id or name {ref!r}") from None
    principal.check_queue(found.queue, f"no schedule with the id or name {ref!r}")
    return found


@router.get("/")
async def list_schedules(
    status: str | None = None,
    last_run: bool = False,
    principal: Principal = Depends(require("read")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Every schedule of the token's queues by name, optionally only `active` or `paused` ones; with
    `last_run=true` each with its newest run-log entry (and the status of the item it names) or null."""
    schedules = AsyncSchedules(wq)
    found = [s for s in await schedules.list(status) if principal.can_see(s.queue)]
    if not last_run:
        return {"schedules": [_json(s, principal) for s in found]}
    latest = await schedules.latest_runs()
    return {
        "schedules": [
            _json(s, principal) | {"last_run": None if s.id not in latest else latest[s.id].to_json()} for s in found
        ]
    }


@router.post("/", status_code=201)
async def create_schedule(
    body: NewSchedule,
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Create a schedule (409 `conflict` when the name is taken)."""
    options = body.model_dump(exclude_unset=True, exclude={"name"})
    options["paused"] = bool(options.get("paused"))
    async with mutation(request, principal, "schedule.create", body.name, {"queue": body.queue}):
        target = SYSTEM_QUEUE if body.system is not None else body.queue
        if target is not None:  # none at all: the library says the queue is missing (400)
            principal.check_queue(target)
        created = await AsyncSchedules(wq).add(body.name, **options)
    return _json(created, principal)


@router.get("/{id}/")
async def show_schedule(
    ref: Ref, principal: Principal = Depends(require("read")), wq: AsyncWorkQueue = Depends(queue_of)
) -> dict[str, Any]:
    """One schedule by id or name."""
    return _json(await _find(AsyncSchedules(wq), principal, ref), principal)


@router.get("/{id}/runs/")
async def list_schedule_runs(
    ref: Ref,
    limit: int = Query(20, ge=1, le=200),
    principal: Principal = Depends(require("read")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """A schedule's newest run-log entries, newest first, each with the current status of the item it made."""
    schedules = AsyncSchedules(wq)
    name = (await _find(schedules, principal, ref)).name
    return {"runs": [r.to_json() for r in await schedules.runs(name, limit)]}


@router.patch("/{id}/")
async def update_schedule(
    ref: Ref,
    body: ScheduleChanges,
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Change fields of a schedule; a new timing re-times it from now."""
    changes = body.model_dump(exclude_unset=True)
    schedules = AsyncSchedules(wq)
    async with mutation(request, principal, "schedule.update", ref, {"fields": sorted(changes)}):
        current = await _find(schedules, principal, ref)
        if body.queue is not None:
            principal.check_queue(body.queue)
        updated = await schedules.update(current.name, **changes)
    return _json(updated, principal)


async def _act(action: str, ref: str, request: Request, principal: Principal, wq: AsyncWorkQueue) -> dict[str, Any]:
    """Find the schedule (404 outside the token's queues) and pause, resume or remove it, audited."""
    schedules = AsyncSchedules(wq)
    async with mutation(request, principal, f"schedule.{action}", ref):
        name = (await _find(schedules, principal, ref)).name
        changed: Schedule = await getattr(schedules, action)(name)
    return _json(changed, principal)


@router.delete("/{id}/")
async def delete_schedule(
    ref: Ref,
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Delete a schedule for good (the items it enqueued stay); answers the schedule as it was."""
    return await _act("remove", ref, request, principal, wq)


@router.post("/{id}/pause/")
async def pause_schedule(
    ref: Ref,
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Stop firing until resumed."""
    return await _act("pause", ref, request, principal, wq)


@router.post("/{id}/resume/")
async def resume_schedule(
    ref: Ref,
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Fire again from the next window after now (windows missed while paused are not caught up)."""
    return await _act("resume", ref, request, principal, wq)


@router.post("/{id}/run-now/")
async def run_schedule_now(
    ref: Ref,
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Enqueue the schedule's item now under its own dedupe key; answers the item with `created` (as
    `schedule run-now` prints it), recorded as run by the token."""
    async with mutation(request, principal, "schedule.run_now", ref) as detail:
        name = (await _find(AsyncSchedules(wq), principal, ref)).name
        outcome = await AsyncSchedules(as_agent(wq, principal)).run_now(name)
        detail["item_id"] = outcome.item.id
    return outcome.item.to_json(with_instructions=principal.sees_instructions) | {"created": outcome.created}
