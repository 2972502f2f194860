"""`GET /ui/events`: what makes the pages live. One SSE event `changed` (data: the queues that changed)
whenever the item event history grows in the viewer's queues, at most one a second however busy the
queues are; the live regions refresh on it (and poll every 15 s when the stream is down)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from sse_starlette.sse import EventSourceResponse

from clawnsole import feed
from clawnsole.errors import ClawnsoleError
from clawnsole.queue import AsyncWorkQueue
from clawnsole.web.auth import queue_of
from clawnsole.web.dashboard.session import Viewer, signed_in

router = APIRouter()

_DEBOUNCE = 1.0
_POLL = 2.0


@router.get("/ui/events")
async def events(request: Request, viewer: Viewer = Depends(signed_in)) -> EventSourceResponse:
    wq = queue_of(request)
    after = await wq.run_steps(feed.event_last())
    return EventSourceResponse(_changes(request, wq, viewer, after), ping=15)


async def _changes(request: Request, wq: AsyncWorkQueue, viewer: Viewer, after: int) -> AsyncIterator[dict[str, Any]]:
    wakeups = request.app.state.wakeups
    queues = viewer.principal.queues
    # The page was rendered before this stream began (and a reconnecting stream was down a while): what
    # changed in between has no event here, so the live regions refresh once at the start.
    yield {"event": "changed", "data": "[]"}
    while True:
        try:
            batch = await wq.run_steps(feed.event_feed(after, visible=queues, limit=1000))
        except ClawnsoleError:
            batch = []
        if batch:
            after = batch[-1].event.id
            changed = sorted({entry.queue for entry in batch})
            yield {"event": "changed", "data": json.dumps(changed)}
            # Debounced: a busy queue refreshes a page once a second, not once an event.
            await asyncio.sleep(_DEBOUNCE)
            continue
        if await request.is_disconnected():
            return
        await wakeups.wait(queues, _POLL)
