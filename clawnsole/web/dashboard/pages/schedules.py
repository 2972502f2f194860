"""Schedules: every schedule with its timing in words, its next runs in its own zone and in UTC, its last
run and how it went; create and edit (the timing fields preview the next fire times as you type); pause /
resume, run now, delete; a schedule's run history with links to the items it made.

Thin over `clawnsole.schedules` (the calls the API's routes/schedules.py makes, with its action names): a
token sees and changes only the schedules whose queue is one of its own.

Statements: the list runs `schedule_list` and `schedule_run_latest`; a schedule's page `schedule_get` and
`schedule_run_list` (by the schedule's id, newest first, LIMIT 50); the preview runs none (pure fire-time
math on the database clock the session lookup read). None touches `items` beyond primary-key lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from clawnsole import validate
from clawnsole.errors import ClawnsoleError, InvalidInput
from clawnsole.queue import AsyncWorkQueue
from clawnsole.schedules import fire_times
from clawnsole.schedules.api import AsyncSchedules
from clawnsole.schedules.models import Schedule
from clawnsole.tokens.models import Forbidden
from clawnsole.web.auth import queue_of
from clawnsole.web.dashboard import session
from clawnsole.web.dashboard.render import ENV, ago, page, pretty
from clawnsole.web.dashboard.session import Viewer, signed_in
from clawnsole.web.errors import error_code
from clawnsole.web.mutations import as_agent

router = APIRouter()

# How many fire times a preview and a schedule's page show, and how many run-log entries.
UPCOMING = 5
RUNS = 50
_SCOPE = "operate"
# What a new schedule's form starts with (the library's defaults).
_NEW = {
    "cron": "0 * * * *",
    "timezone": "UTC",
    "priority": "50",
    "max_attempts": "3",
    "catch_up": "latest",
    "overlap": "allow",
    "payload": "{}",
}


@dataclass(frozen=True)
class FireTime:
    """One fire time as a person reads it: in the schedule's zone and in UTC."""

    at: datetime
    local: str
    utc: str


def fire_time(instant: datetime, zone: ZoneInfo) -> FireTime:
    """`instant` on the schedule's wall clock ("Mon 2026-03-02 09:30 CET") and in UTC."""
    return FireTime(
        instant,
        instant.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z"),
        instant.astimezone(UTC).strftime("%a %Y-%m-%d %H:%M UTC"),
    )


def next_runs(schedule: Schedule) -> list[FireTime]:
    """The schedule's next fire times (its stored next run first); none while it is paused."""
    if schedule.status != "active":
        return []
    first = schedule.next_run_at
    later = fire_times.upcoming(schedule.timing, first, UPCOMING - 1, anchor=first)
    return [fire_time(t, schedule.timing.zone) for t in [first, *later]]


def preview(cron: str, every: str, timezone: str, now: datetime) -> dict[str, Any]:
    """What the form's timing would do if saved at `now`: its description and next fire times, or the error
    (as `{"error": InvalidInput}`) that saving it would give."""
    try:
        timing = fire_times.timing(cron or None, timezone or None, every or None)
    except InvalidInput as error:
        return {"error": error}
    first = fire_times.first_run(timing, now)
    later = fire_times.upcoming(timing, first, UPCOMING - 1, anchor=first)
    return {
        "words": fire_times.describe(timing),
        "zone": timing.timezone,
        "times": [fire_time(t, timing.zone) for t in [first, *later]],
    }


@cache
def _zones() -> list[str]:
    return sorted(available_timezones())


async def _find(wq: AsyncWorkQueue, viewer: Viewer, name: str) -> Schedule:
    """The schedule named `name`; NotFound when there is none, or when its queue is not the token's."""
    found = await AsyncSchedules(wq).get(name)
    viewer.principal.check_queue(found.queue, f"no schedule named {name!r}")
    return found


def _needs_operate(viewer: Viewer) -> None:
    if not viewer.can(_SCOPE):
        raise Forbidden(f"this token lacks the {_SCOPE!r} scope")


# --- the form ------------------------------------------------------------------------------------------


def _text(form: dict[str, Any], key: str) -> str:
    """A posted field as text ('' when absent); a field given twice is refused."""
    value = form.get(key, "")
    if not isinstance(value, str):
        raise InvalidInput(key, "must be given once")
    # Browsers send CRLF line ends from a textarea; a definition keeps what the CLI would.
    return value.replace("\r\n", "\n")


def _options(form: dict[str, Any], viewer: Viewer, *, creating: bool) -> dict[str, Any]:
    """The library's options (as `definition` / `update` take them) from the posted form.

    An empty field: on create, the library's default; on update, an empty kind or description clears it
    and an empty cron with an empty interval is refused. Instructions are taken only from a token that sees
    them, and on update only when their field was revealed (a field never shown keeps them)."""
    cron, every = _text(form, "cron").strip(), _text(form, "every").strip()
    if not creating and not cron and not every:
        raise InvalidInput("cron", "give a cron expression (e.g. '0 * * * *') or an interval (e.g. 15m)")
    max_attempts = _text(form, "max_attempts").strip()
    try:
        attempts = int(max_attempts) if max_attempts else None
    except ValueError:
        raise InvalidInput("max_attempts", f"{max_attempts!r} is not a whole number") from None
    payload = _text(form, "payload").strip()
    # An empty optional text clears it on update (''), and is simply absent on create (None).
    cleared = None if creating else ""
    options: dict[str, Any] = {
        # Required: empty on create is "missing"; on update '' is refused by the library as it is.
        "queue": _text(form, "queue").strip() or cleared,
        "title": _text(form, "title") or cleared,
        "cron": cron or None,
        "every": every or None,
        "timezone": _text(form, "timezone").strip() or None,
        "kind": _text(form, "kind").strip() or cleared,
        "payload": validate.payload(payload) if payload else {},
        "priority": _text(form, "priority").strip() or None,
        "max_attempts": attempts,
        "catch_up": _text(form, "catch_up") or None,
        "overlap": _text(form, "overlap") or None,
        "description": _text(form, "description").strip() or cleared,
    }
    if creating:
        # `definition` takes no None for these: its own defaults instead.
        options = {k: v for k, v in options.items() if v is not None or k in ("queue", "title", "cron", "every")}
    if viewer.principal.sees_instructions and (creating or "instructions" in form):
        options["instructions"] = _text(form, "instructions") or cleared
    if creating:
        options["paused"] = form.get("paused") == "1"
    return options


def _values(schedule: Schedule) -> dict[str, str]:
    """A stored schedule as the form's field values (instructions stay out until revealed)."""
    return {
        "queue": schedule.queue,
        "title": schedule.title,
        "cron": schedule.cron or "",
        "every": "" if schedule.interval_seconds is None else fire_times.format_interval(schedule.interval_seconds),
        "timezone": schedule.timezone,
        "kind": schedule.kind or "",
        "payload": pretty(schedule.payload),
        "priority": str(schedule.priority),
        "max_attempts": str(schedule.max_attempts),
        "catch_up": schedule.catch_up,
        "overlap": schedule.overlap,
        "description": schedule.description or "",
    }


def _form_page(
    request: Request,
    viewer: Viewer,
    *,
    values: dict[str, Any],
    name: str | None,
    error: ClawnsoleError | None = None,
    revealed: bool = False,
) -> HTMLResponse:
    """The create (name None) or edit form; with `error`, answered with that error's status."""
    status = 200 if error is None else error_code(error)[0]
    field = error.field if isinstance(error, InvalidInput) else None
    if field == "schedule":
        # The library names a cron-or-interval mistake "schedule": it belongs beside the cron field.
        field = "cron"
    shown = preview(values.get("cron", ""), values.get("every", ""), values.get("timezone", ""), viewer.now)
    return page(
        request,
        viewer,
        "schedule_form.html",
        status_code=status,
        name=name,
        values=values,
        error=error,
        error_field=field,
        error_text=error.message if isinstance(error, InvalidInput) else (str(error) if error else None),
        preview=shown,
        zones=_zones(),
        revealed=revealed,
    )


def _posted_values(form: dict[str, Any]) -> dict[str, Any]:
    """What was typed, to show it again in a refused form."""
    return {k: v.replace("\r\n", "\n") for k, v in form.items() if isinstance(v, str) and k != "csrf"}


def _next_text(schedule: Schedule, now: datetime) -> str:
    if schedule.status != "active":
        return "paused"
    shown = fire_time(schedule.next_run_at, schedule.timing.zone)
    return f"next run {ago(schedule.next_run_at, now)} ({shown.local})"


# --- pages ---------------------------------------------------------------------------------------------


@router.get("/schedules")
async def schedules_page(
    request: Request, status: str | None = None, viewer: Viewer = Depends(signed_in)
) -> HTMLResponse:
    wq = queue_of(request)
    schedules = AsyncSchedules(wq)
    shown = [s for s in await schedules.list(status or None) if viewer.principal.can_see(s.queue)]
    latest = await schedules.latest_runs() if shown else {}
    rows = [
        {
            "s": s,
            "next": fire_time(s.next_run_at, s.timing.zone) if s.status == "active" else None,
            "last": latest.get(s.id),
        }
        for s in shown
    ]
    return page(request, viewer, "schedules.html", rows=rows, status=status or "")


@router.get("/schedules/preview")
async def preview_fragment(
    request: Request, cron: str = "", every: str = "", timezone: str = "", viewer: Viewer = Depends(signed_in)
) -> HTMLResponse:
    """The timing fields' live preview (an htmx fragment): the next fire times, or the error saving would give."""
    shown = preview(cron.strip(), every.strip(), timezone.strip(), viewer.now)
    html = ENV.get_template("schedule_preview.html").render(
        request=request, viewer=viewer, now=viewer.now, preview=shown
    )
    return HTMLResponse(html)


@router.get("/schedules/new")
async def new_page(request: Request, viewer: Viewer = Depends(signed_in)) -> HTMLResponse:
    _needs_operate(viewer)
    return _form_page(request, viewer, values=dict(_NEW, queue=request.query_params.get("queue", "")), name=None)


@router.post("/schedules")
async def create(request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    form = await session.form_of(request)
    name = _text(form, "name").strip() if isinstance(form.get("name", ""), str) else ""
    refused: list[ClawnsoleError] = []

    async def do(wq: AsyncWorkQueue) -> str:
        try:
            options = _options(form, viewer, creating=True)
            if options["queue"] is not None:  # none at all: the library says the queue is missing
                viewer.principal.check_queue(options["queue"])
            created = await AsyncSchedules(wq).add(name, **options)
        except ClawnsoleError as error:
            refused.append(error)
            raise
        return f"Created schedule {created.name}: {_next_text(created, viewer.now)}."

    response = await session.act(
        request, viewer, _SCOPE, "schedule.create", name or None, do, back=f"/schedules/{name}", form=form
    )
    if refused:
        # Nothing was saved: the form again, with what was typed and the error beside its field.
        values = _posted_values(form)
        return _form_page(request, viewer, values=values, name=None, error=refused[0], revealed=True)
    return response


@router.get("/schedules/{name}")
async def schedule_page(request: Request, name: str, viewer: Viewer = Depends(signed_in)) -> HTMLResponse:
    wq = queue_of(request)
    schedule = await _find(wq, viewer, name)
    runs = await AsyncSchedules(wq).runs(schedule.name, RUNS)
    return page(request, viewer, "schedule.html", s=schedule, upcoming=next_runs(schedule), runs=runs, keep=RUNS)


@router.get("/schedules/{name}/instructions")
async def instructions_fragment(
    request: Request, name: str, edit: bool = False, viewer: Viewer = Depends(signed_in)
) -> HTMLResponse:
    """A schedule's instructions, revealed on click (an htmx fragment; `edit`: as the form's field)."""
    if not viewer.principal.sees_instructions:
        raise Forbidden("this token does not see instructions")
    if edit:
        _needs_operate(viewer)
    schedule = await _find(queue_of(request), viewer, name)
    html = ENV.get_template("schedule_instructions.html").render(
        request=request, viewer=viewer, now=viewer.now, s=schedule, edit=edit
    )
    return HTMLResponse(html)


@router.get("/schedules/{name}/edit")
async def edit_page(request: Request, name: str, viewer: Viewer = Depends(signed_in)) -> HTMLResponse:
    _needs_operate(viewer)
    schedule = await _find(queue_of(request), viewer, name)
    return _form_page(request, viewer, values=_values(schedule), name=schedule.name)


@router.post("/schedules/{name}")
async def update(request: Request, name: str, viewer: Viewer = Depends(signed_in)) -> Response:
    form = await session.form_of(request)
    refused: list[ClawnsoleError] = []

    async def do(wq: AsyncWorkQueue) -> str:
        current = await _find(wq, viewer, name)
        try:
            changes = _options(form, viewer, creating=False)
            if changes["queue"]:
                viewer.principal.check_queue(changes["queue"])
            updated = await AsyncSchedules(wq).update(current.name, **changes)
        except ClawnsoleError as error:
            refused.append(error)
            raise
        return f"Saved schedule {updated.name}: {_next_text(updated, viewer.now)}."

    response = await session.act(
        request, viewer, _SCOPE, "schedule.update", name, do, back=f"/schedules/{name}", form=form
    )
    if refused:
        values = _posted_values(form)
        return _form_page(request, viewer, values=values, name=name, error=refused[0], revealed="instructions" in form)
    return response


@router.post("/schedules/{name}/pause")
async def pause(request: Request, name: str, viewer: Viewer = Depends(signed_in)) -> Response:
    async def do(wq: AsyncWorkQueue) -> str:
        await AsyncSchedules(wq).pause((await _find(wq, viewer, name)).name)
        return f"Paused schedule {name}: it fires no more until resumed."

    return await session.act(request, viewer, _SCOPE, "schedule.pause", name, do, back=f"/schedules/{name}")


@router.post("/schedules/{name}/resume")
async def resume(request: Request, name: str, viewer: Viewer = Depends(signed_in)) -> Response:
    async def do(wq: AsyncWorkQueue) -> str:
        resumed = await AsyncSchedules(wq).resume((await _find(wq, viewer, name)).name)
        return f"Resumed schedule {name}: {_next_text(resumed, viewer.now)}."

    return await session.act(request, viewer, _SCOPE, "schedule.resume", name, do, back=f"/schedules/{name}")


@router.post("/schedules/{name}/run-now")
async def run_now(request: Request, name: str, viewer: Viewer = Depends(signed_in)) -> Response:
    async def do(wq: AsyncWorkQueue) -> tuple[str, dict[str, Any]]:
        found = (await _find(wq, viewer, name)).name
        # Recorded in the run log as run by the token, as the API's run-now is.
        outcome = await AsyncSchedules(as_agent(wq, viewer.principal)).run_now(found)
        # The audit row names the item, as the API's does.
        detail = {"item_id": outcome.item.id}
        if outcome.created:
            return f"Ran schedule {name} now: item #{outcome.item.id} enqueued.", detail
        return f"Schedule {name} already ran this second: item #{outcome.item.id}.", detail

    return await session.act(request, viewer, _SCOPE, "schedule.run_now", name, do, back=f"/schedules/{name}")


@router.post("/schedules/{name}/delete")
async def delete(request: Request, name: str, viewer: Viewer = Depends(signed_in)) -> Response:
    form = await session.form_of(request)
    if form.get("confirm") != "1":
        # First what it will touch, then the real POST (with confirm=1) from the confirmation's button.
        _needs_operate(viewer)
        schedule = await _find(queue_of(request), viewer, name)
        return page(request, viewer, "schedule_delete.html", s=schedule)

    async def do(wq: AsyncWorkQueue) -> str:
        removed = await AsyncSchedules(wq).remove((await _find(wq, viewer, name)).name)
        return f"Deleted schedule {name}; the items it enqueued ({removed.run_count}) stay in {removed.queue}."

    return await session.act(request, viewer, _SCOPE, "schedule.remove", name, do, back="/schedules", form=form)


__all__ = ["FireTime", "fire_time", "next_runs", "preview", "router"]
