"""Item routes: enqueue, list, show, claim (with `wait` by LISTEN), progress, done, fail, release, step,
cancel, retry.

Thin: authorise (`require`), check the item's queue against the token's, call the library, return the same
JSON `clawnsole workqueue … --json` prints. The token's name is the agent of its claims, and every write of a
held item is fenced by the lease token and that agent.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from clawnsole import feed, ops, validate
from clawnsole.dependencies.api import AsyncDependencies
from clawnsole.errors import InvalidInput, LeaseLost
from clawnsole.models import Item
from clawnsole.queue import AsyncWorkQueue
from clawnsole.stats.ops import record_step
from clawnsole.tokens.models import Principal
from clawnsole.web.auth import mutation, queue_of, require

router = APIRouter(prefix="/api/v1", tags=["items"])

Queue = Annotated[AsyncWorkQueue, Depends(queue_of)]
MAX_WAIT = 30.0
MAX_CLAIM = 100
# A claim that waits looks again at least this often, whatever the notifications: an item coming due after
# a delay sends none, and a notification can be missed while the listener reconnects.
_WAIT_POLL = 1.0


class _Body(BaseModel):
    # An unknown field is refused by name (a misspelt option must not be silently ignored).
    model_config = ConfigDict(extra="forbid")


class EnqueueBody(_Body):
    """The options of `WorkQueue.enqueue` (see `clawnsole workqueue enqueue --help`)."""

    title: Any = Field(description="Short human title.")
    kind: Any = None
    instructions: Any = Field(None, description="What to do; shown only to work/operate/admin tokens.")
    payload: Any = None
    priority: Any = 50
    dedupe_key: Any = None
    key: Any = None
    cooldown: Any = None
    run_at: Any = None
    delay: Any = None
    max_attempts: Any = 3
    backoff: Any = "10s"
    lease: Any = "300"
    after: list[Any] | None = None
    metadata: Any = None


class ClaimBody(_Body):
    """How to claim: the lease length, how many items, how long to wait for one (0-30 s)."""

    lease: Any = "300"
    limit: Any = 1
    wait: Any = 0


class ProgressBody(_Body):
    """A progress report on a held item."""

    lease_token: Any = Field(description="The lease token the claim returned.")
    note: Any = None
    percent: Any = None
    extend: Any = None


class DoneBody(_Body):
    """Finishing a held item."""

    lease_token: Any = Field(description="The lease token the claim returned.")
    result: Any = None


class FailBody(_Body):
    """A failed attempt of a held item."""

    lease_token: Any = Field(description="The lease token the claim returned.")
    error: Any = Field(description="What went wrong.")
    retry: Any = True
    backoff: Any = None


class ReleaseBody(_Body):
    """Giving a held item back (a worker stopping)."""

    lease_token: Any = Field(description="The lease token the claim returned.")
    reason: Any = None


class StepBody(_Body):
    """A timed step of a held item's handler (what `ctx.timed` and `clawnsole:step` lines record)."""

    lease_token: Any = Field(description="The lease token the claim returned.")
    step: Any = Field(description="The step's name (letters, digits, '.', '_', '-', ':').")
    seconds: Any = Field(description="How long the step took.")
    error: Any = None


class CancelBody(_Body):
    """Why an item is cancelled (kept in its history)."""

    reason: Any = None


def item_json(item: Item, principal: Principal) -> dict[str, Any]:
    """The item as the CLI prints it; instructions only for tokens that act on it."""
    return item.to_json(with_instructions=principal.sees_instructions)


async def _visible_item(wq: AsyncWorkQueue, principal: Principal, item_id: int) -> Item:
    """The item, or NotFound when it does not exist or is in a queue the token may not see."""
    item = await wq.get(validate.item_id(item_id))
    principal.check_queue(item.queue, f"no item with id {item_id}")
    return item


def _flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(field, "must be true or false")
    return value


@router.post("/queues/{queue}/items", status_code=201, name="item.enqueue")
async def enqueue(
    queue: str,
    body: EnqueueBody,
    request: Request,
    response: Response,
    wq: Queue,
    principal: Annotated[Principal, Depends(require("enqueue"))],
) -> dict[str, Any]:
    """Add an item (201), or return the item holding the dedupe key (200, `created: false`)."""
    async with mutation(request, principal, "item.enqueue", f"queue:{queue}") as detail:
        principal.check_queue(validate.queue_name(queue))
        options = body.model_dump()
        title = options.pop("title")
        if principal.queues is not None:
            for prerequisite in options["after"] or []:
                await _visible_item(wq, principal, prerequisite)
        outcome = await wq.enqueue(queue, title, agent=principal.name, **options)
        detail.update(item=outcome.item.id, created=outcome.created)
    if not outcome.created:
        response.status_code = 200
    return item_json(outcome.item, principal) | {"created": outcome.created}


@router.get("/items", name="item.list")
async def list_items(
    wq: Queue,
    principal: Annotated[Principal, Depends(require("read"))],
    queue: str | None = None,
    status: str | None = None,
    kind: str | None = None,
    text: str | None = None,
    created_since: str | None = None,
    created_before: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """Items newest first, a page at a time: pass `next_cursor` back as `cursor` for the next page, until it
    is null. `text` matches inside the title, `created_since` / `created_before` (ISO 8601) the creation
    time. A filtered page that no index serves (anything but a status other than done) looks at the newest
    10,000 items below the cursor only (`searched_to`: down to which id), so it may hold fewer items than
    `limit`, even none, while `next_cursor` goes on."""
    if queue is not None and not principal.can_see(validate.queue_name(queue)):
        return {"items": [], "next_cursor": None, "searched_to": None}
    page = await wq.run_steps(
        feed.item_page(
            visible=principal.queues,
            queue=queue,
            status=status,
            kind=kind,
            text=text,
            created_since=created_since,
            created_before=created_before,
            limit=limit,
            cursor=cursor,
        )
    )
    return {
        "items": [item_json(i, principal) for i in page.items],
        "next_cursor": page.next_cursor,
        "searched_to": page.searched_to,
    }


@router.get("/items/{item_id}", name="item.show")
async def show(item_id: int, wq: Queue, principal: Annotated[Principal, Depends(require("read"))]) -> dict[str, Any]:
    """One item with its prerequisites and dependents (those the token may see) and its history."""
    item = await _visible_item(wq, principal, item_id)
    links = (await AsyncDependencies(wq).of(item_id)).to_json()
    for side in ("prerequisites", "dependents"):
        links[side] = [link for link in links[side] if principal.can_see(link["queue"])]
    events = await wq.history(item_id)
    return item_json(item, principal) | links | {"history": [e.to_json() for e in events]}


@router.post("/queues/{queue}/claim", name="item.claim")
async def claim(
    queue: str,
    request: Request,
    wq: Queue,
    principal: Annotated[Principal, Depends(require("work"))],
    body: ClaimBody | None = None,
) -> dict[str, Any]:
    """Claim up to `limit` due items for the token (its name is the agent); with `wait`, block up to that many
    seconds (at most 30) for one. Each item carries its `lease_token`."""
    options = body or ClaimBody()
    async with mutation(request, principal, "item.claim", f"queue:{queue}") as detail:
        principal.check_queue(validate.queue_name(queue))
        wait = validate.duration(options.wait, "wait", allow_zero=True)
        if wait > MAX_WAIT:
            raise InvalidInput("wait", f"must be at most {MAX_WAIT:g} seconds")
        limit = validate.positive_int(options.limit, "limit", maximum=MAX_CLAIM)
        lease = validate.duration(options.lease, "lease")
        deadline = time.monotonic() + wait
        while True:
            items = await wq.claim_next(queue, agent=principal.name, lease=lease, limit=limit)
            remaining = deadline - time.monotonic()
            if items or remaining <= 0:
                break
            await request.app.state.wakeups.wait([queue], min(remaining, _WAIT_POLL))
        detail.update(items=[i.id for i in items], changed=bool(items))
    return {"items": [item_json(i, principal) for i in items]}


@router.post("/items/{item_id}/progress", name="item.progress")
async def progress(
    item_id: int,
    body: ProgressBody,
    request: Request,
    wq: Queue,
    principal: Annotated[Principal, Depends(require("work"))],
) -> dict[str, Any]:
    """Record progress on a held item and renew its lease (409 `lease_lost` when it is no longer held)."""
    async with mutation(request, principal, "item.progress", f"item:{item_id}"):
        await _visible_item(wq, principal, item_id)
        item = await wq.progress(
            item_id,
            agent=principal.name,
            lease_token=_lease_token(body.lease_token),
            note=body.note,
            percent=body.percent,
            extend=body.extend,
        )
    return item_json(item, principal)


@router.post("/items/{item_id}/done", name="item.done")
async def done(
    item_id: int,
    body: DoneBody,
    request: Request,
    wq: Queue,
    principal: Annotated[Principal, Depends(require("work"))],
) -> dict[str, Any]:
    """Finish a held item successfully."""
    async with mutation(request, principal, "item.done", f"item:{item_id}"):
        await _visible_item(wq, principal, item_id)
        item = await wq.done(
            item_id, agent=principal.name, lease_token=_lease_token(body.lease_token), result=body.result
        )
    return item_json(item, principal)


@router.post("/items/{item_id}/fail", name="item.fail")
async def fail(
    item_id: int,
    body: FailBody,
    request: Request,
    wq: Queue,
    principal: Annotated[Principal, Depends(require("work"))],
) -> dict[str, Any]:
    """Record a failed attempt: retried after a backoff while attempts remain (`retry: false`: fail now)."""
    async with mutation(request, principal, "item.fail", f"item:{item_id}"):
        await _visible_item(wq, principal, item_id)
        item = await wq.fail(
            item_id,
            validate.text(body.error, "error"),
            agent=principal.name,
            lease_token=_lease_token(body.lease_token),
            retry=_flag(body.retry, "retry"),
            backoff=body.backoff,
        )
    return item_json(item, principal)


@router.post("/items/{item_id}/release", name="item.release")
async def release(
    item_id: int,
    body: ReleaseBody,
    request: Request,
    wq: Queue,
    principal: Annotated[Principal, Depends(require("work"))],
) -> dict[str, Any]:
    """Give a held item back without charging the attempt (a worker shutting down): pending again at once,
    woken workers claim it. 409 `lease_lost` when it is no longer held with that lease."""
    async with mutation(request, principal, "item.release", f"item:{item_id}"):
        await _visible_item(wq, principal, item_id)
        token = validate.lease_token(_lease_token(body.lease_token), "lease_token")
        reason = validate.optional_text(body.reason, "reason", 1000) or "released"
        released = await wq.run_steps(ops.release([(item_id, str(token))], agent=principal.name, reason=reason))
        if not released:
            raise LeaseLost(f"lease lost: item {item_id} is no longer held by {principal.name!r} with that lease")
        item = await wq.get(item_id)
    return item_json(item, principal)


@router.post("/items/{item_id}/step", name="item.step")
async def step(
    item_id: int,
    body: StepBody,
    request: Request,
    wq: Queue,
    principal: Annotated[Principal, Depends(require("work"))],
) -> dict[str, Any]:
    """Record that a held item's handler spent `seconds` in `step` (a `step` event in its history);
    `recorded: false` when the lease is no longer held."""
    async with mutation(request, principal, "item.step", f"item:{item_id}"):
        await _visible_item(wq, principal, item_id)
        recorded = await wq.run_steps(
            record_step(
                item_id,
                lease_token=_lease_token(body.lease_token),
                step=body.step,
                seconds=body.seconds,
                error=body.error,
            )
        )
    return {"recorded": recorded}


@router.post("/items/{item_id}/cancel", name="item.cancel")
async def cancel(
    item_id: int,
    request: Request,
    wq: Queue,
    principal: Annotated[Principal, Depends(require("operate"))],
    body: CancelBody | None = None,
) -> dict[str, Any]:
    """Cancel a pending or waiting item (what waits for it is cancelled too)."""
    async with mutation(request, principal, "item.cancel", f"item:{item_id}"):
        await _visible_item(wq, principal, item_id)
        reason = None if body is None else body.reason
        item = await wq.run_steps(ops.cancel(item_id, agent=principal.name, reason=reason))
    return item_json(item, principal)


@router.post("/items/{item_id}/retry", name="item.retry")
async def retry(
    item_id: int, request: Request, wq: Queue, principal: Annotated[Principal, Depends(require("operate"))]
) -> dict[str, Any]:
    """Requeue a failed or cancelled item with fresh attempts."""
    async with mutation(request, principal, "item.retry", f"item:{item_id}"):
        await _visible_item(wq, principal, item_id)
        item = await wq.run_steps(ops.retry(item_id, agent=principal.name))
    return item_json(item, principal)


def _lease_token(value: Any) -> str:
    if value is None:
        raise InvalidInput("lease_token", "give the lease token the claim returned")
    if not isinstance(value, str):
        raise InvalidInput("lease_token", "must be text (the lease token the claim returned)")
    return value


__all__ = ["router"]
