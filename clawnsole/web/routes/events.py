"""`GET /api/v1/events`: item events as Server-Sent Events, limited to the token's queues.

Each SSE event's `id` is the item event's id, so a client that reconnects with `Last-Event-ID` gets
everything after it from the event history (none lost across a reconnect). Without one the stream starts
now. New events are found by reading the history after the last id sent: at once when an enqueue is
announced (LISTEN), else at least every `_POLL` seconds (claims and completions send no notification).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from sse_starlette.sse import EventSourceResponse

from clawnsole import feed
from clawnsole.errors import ClawnsoleError, InvalidInput
from clawnsole.queue import AsyncWorkQueue
from clawnsole.tokens.models import Principal
from clawnsole.web.auth import queue_of, require

router = APIRouter(prefix="/api/v1", tags=["events"])

_POLL = 1.0
_BATCH = 500


def _resume_from(last_event_id: str | None) -> int | None:
    if last_event_id is None or last_event_id.strip() == "":
        return None
    if not last_event_id.strip().isdigit():
        raise InvalidInput("Last-Event-ID", "must be the id of an event this stream sent")
    return int(last_event_id.strip())


@router.get("/events", name="events.stream", response_class=EventSourceResponse)
async def events(
    request: Request,
    wq: Annotated[AsyncWorkQueue, Depends(queue_of)],
    principal: Annotated[Principal, Depends(require("read"))],
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> EventSourceResponse:
    """Item events as they happen (`event:` the item event's name, `data:` its JSON with `queue`)."""
    after = _resume_from(last_event_id)
    if after is None:
        after = await wq.run_steps(feed.event_last())
    return EventSourceResponse(_stream(request, wq, principal, after), ping=15)


async def _stream(
    request: Request, wq: AsyncWorkQueue, principal: Principal, after: int
) -> AsyncIterator[dict[str, Any]]:
    wakeups = request.app.state.wakeups
    while True:
        try:
            batch = await wq.run_steps(feed.event_feed(after, visible=principal.queues, limit=_BATCH))
        except ClawnsoleError:
            # The database went away: the client keeps its Last-Event-ID and the stream goes on once it is back.
            batch = []
        for entry in batch:
            after = entry.event.id
            yield {"id": str(entry.event.id), "event": entry.event.event, "data": json.dumps(entry.to_json())}
        if len(batch) == _BATCH:
            continue
        if await request.is_disconnected():
            return
        await wakeups.wait(principal.queues, _POLL)
