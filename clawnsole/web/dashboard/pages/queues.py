"""One queue at `/queues/{queue}`: its state and limits (with how much of the rate window is used), what it
holds now, its items newest first (a page at a time, by status), and the controls: pause, resume, drain and
the concurrency and rate limits.

The same calls as `/api/v1/queues/{queue}`, `/rate`, `/api/v1/overview` and `/api/v1/items?queue=`
(`AsyncQueues`, `AsyncStats.overview`, `feed.item_page`); each action is the API's (`queue.pause`, …,
`queue.limit`), audited alike.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from clawnsole import feed, validate
from clawnsole.errors import InvalidInput
from clawnsole.models import STATUSES
from clawnsole.queue import AsyncWorkQueue
from clawnsole.queues.api import AsyncQueues
from clawnsole.stats.api import AsyncStats
from clawnsole.web.auth import queue_of
from clawnsole.web.dashboard.render import page
from clawnsole.web.dashboard.session import Viewer, act, form_of, signed_in

router = APIRouter()

PAGE = 50
# What each control does, as the flash message after it says.
_DONE = {
    "pause": "paused {q}: workers stop claiming from it (enqueues are still accepted)",
    "resume": "resumed {q}: workers claim from it again",
    "drain": "{q} is draining: enqueues are refused while its claimed items finish",
}


def queue_url(queue: str, **query: Any) -> str:
    """The queue's page, with the query given (None values left out)."""
    given = urlencode({k: v for k, v in query.items() if v is not None})
    return f"/queues/{quote(queue, safe='')}" + (f"?{given}" if given else "")


@router.get("/queues/{queue}")
async def queue_page(
    queue: str,
    request: Request,
    status: str | None = None,
    cursor: str | None = None,
    viewer: Viewer = Depends(signed_in),
) -> HTMLResponse:
    principal = viewer.principal
    validate.queue_name(queue)
    principal.check_queue(queue)
    status = status or None
    wq = queue_of(request)
    queues = AsyncQueues(wq)
    control, usage, overview, items = await asyncio.gather(
        queues.get(queue),
        queues.rate_usage(queue),
        AsyncStats(wq).overview(visible=[queue]),
        wq.run_steps(feed.item_page(queue=queue, status=status, cursor=_cursor(cursor), limit=PAGE)),
    )
    counts = overview[0] if overview else None
    return page(
        request,
        viewer,
        "queue.html",
        queue=queue,
        control=control,
        usage=usage,
        counts=counts,
        items=items,
        status=status,
        statuses=STATUSES,
        queue_url=queue_url,
        next_url=queue_url(queue, status=status, cursor=items.next_cursor) if items.next_cursor else None,
    )


def _cursor(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput("cursor", f"{value!r} is not an item id") from None


async def _control(action: str, queue: str, request: Request, viewer: Viewer) -> Response:
    async def do(wq: AsyncWorkQueue) -> str:
        viewer.principal.check_queue(queue)
        await getattr(AsyncQueues(wq), action)(queue, by=viewer.name)
        return _DONE[action].format(q=queue)

    return await act(request, viewer, "operate", f"queue.{action}", queue, do, back=queue_url(queue))


@router.post("/queues/{queue}/pause")
async def pause(queue: str, request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    return await _control("pause", queue, request, viewer)


@router.post("/queues/{queue}/resume")
async def resume(queue: str, request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    return await _control("resume", queue, request, viewer)


@router.post("/queues/{queue}/drain")
async def drain(queue: str, request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    return await _control("drain", queue, request, viewer)


@router.post("/queues/{queue}/limits")
async def limits(queue: str, request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    """Set the limits the form gives: a blank field stays as it is, `0` / `none` clears one (as
    `PUT /api/v1/queues/{queue}/limits`)."""
    form = await form_of(request)
    concurrency, rate = _field(form, "concurrency"), _field(form, "rate")

    async def do(wq: AsyncWorkQueue) -> str:
        viewer.principal.check_queue(queue)
        number = None if concurrency is None else _whole(concurrency)
        control = await AsyncQueues(wq).limit(queue, concurrency=number, rate=rate, by=viewer.name)
        limit = control.concurrency_limit
        at_once = f"at most {limit} at once" if limit else "no concurrency limit"
        per = f"at most {control.rate}" if control.rate else "no rate limit"
        return f"limits of {queue}: {at_once}, {per}"

    detail = {"concurrency": concurrency, "rate": rate}
    return await act(
        request, viewer, "operate", "queue.limit", queue, do, back=queue_url(queue), form=form, detail=detail
    )


def _field(form: dict[str, Any], name: str) -> str | None:
    value = form.get(name)
    return value.strip() or None if isinstance(value, str) else None


def _whole(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidInput("concurrency", f"{value!r} is not a whole number (0 clears the limit)") from None
