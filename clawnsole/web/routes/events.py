"""`GET /api/v1/events`: item, queue, schedule and alert events as Server-Sent Events, limited to the token's
queues.

What streams (see `clawnsole.feed`): every item event (`event:` its name: `enqueued`, `claimed`, `done`, …);
queue control changes (`queue.paused`, `queue.resumed`, `queue.draining`, `queue.limits`); schedules created
or changed (`schedule.created`, `schedule.updated`) and their runs (`schedule.enqueued`, `schedule.duplicate`,
`schedule.skipped`, `schedule.missed`, `schedule.error`, `schedule.run_now`); alerts (`alert.fired`,
`alert.resolved`; a token limited to some queues sees those about its queues). `?kinds=item,queue` narrows it.

Each event's `id` resumes the stream: a client that reconnects with `Last-Event-ID` gets everything after it
(from the event history, the run log and the rows' change times), none lost across a reconnect. The id is the
bare item event id while a stream has sent only item events, as it always was, else the positions of every
source (`i12.q….s….r3.a…`). Without one the stream starts now. New events are found by reading after the
last positions sent: at once when an enqueue (or a queue resumed) is announced (LISTEN), else at least every
`_POLL` seconds (claims, completions and the other sources send no notification here).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from sse_starlette.sse import EventSourceResponse

from clawnsole import feed
from clawnsole.errors import ClawnsoleError
from clawnsole.queue import AsyncWorkQueue
from clawnsole.tokens.models import Principal
from clawnsole.web.auth import queue_of, require

router = APIRouter(prefix="/api/v1", tags=["events"])

_POLL = 1.0
_BATCH = 500


@router.get("/events", name="events.stream", response_class=EventSourceResponse)
async def events(
    request: Request,
    wq: Annotated[AsyncWorkQueue, Depends(queue_of)],
    principal: Annotated[Principal, Depends(require("read"))],
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    kinds: Annotated[
        str | None, Query(description="Comma-separated kinds to stream: item, queue, schedule, alert (default all).")
    ] = None,
) -> EventSourceResponse:
    """Events as they happen (`event:` the event's name, `data:` its JSON with its `queue`)."""
    wanted = feed.kinds(kinds)
    resume = feed.resume_point(last_event_id)
    if resume is None:
        cursor = await wq.run_steps(feed.cursor_now())
    elif isinstance(resume, int):
        cursor = await wq.run_steps(feed.cursor_at(resume))
    else:
        cursor = resume
    # Bare item event ids for as long as the stream sends item events only (see the module's docstring).
    bare = "item" in wanted and not isinstance(resume, feed.Cursor)
    return EventSourceResponse(_stream(request, wq, principal, cursor, wanted, bare=bare), ping=15)


async def _stream(
    request: Request,
    wq: AsyncWorkQueue,
    principal: Principal,
    cursor: feed.Cursor,
    wanted: frozenset[str],
    *,
    bare: bool,
) -> AsyncIterator[dict[str, Any]]:
    wakeups = request.app.state.wakeups
    while True:
        try:
            found = await wq.run_steps(feed.changes(cursor, visible=principal.queues, wanted=wanted, limit=_BATCH))
        except ClawnsoleError:
            # The database went away: the client keeps its Last-Event-ID and the stream goes on once it is back.
            found = feed.Changes([], more=False)
        for change in found.changes:
            cursor = cursor.past(change)
            bare = bare and change.source == "i"
            event_id = str(cursor.item) if bare else cursor.event_id()
            yield {"id": event_id, "event": change.event, "data": json.dumps(change.data)}
        if found.more:
            continue
        if await request.is_disconnected():
            return
        await wakeups.wait(principal.queues, _POLL)
