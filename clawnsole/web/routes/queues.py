"""Queue controls over HTTP: list, show, pause, resume, drain, limits (thin over `clawnsole.queues`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from clawnsole.queue import AsyncWorkQueue
from clawnsole.queues.api import AsyncQueues
from clawnsole.web.auth import Principal, mutation, queue_of, require

router = APIRouter(prefix="/api/v1/queues", tags=["queues"])


class Limits(BaseModel):
    """New limits for a queue; a field left out stays as it is (`concurrency: 0` / `rate: "none"` clear one)."""

    model_config = ConfigDict(extra="forbid")
    concurrency: int | None = None
    rate: str | None = None


@router.get("")
async def list_queues(
    principal: Principal = Depends(require("read")), wq: AsyncWorkQueue = Depends(queue_of)
) -> dict[str, Any]:
    """Every queue the token may see, with its state, limits and counts (what `queue list --json` prints)."""
    summaries = await AsyncQueues(wq).list()
    return {"queues": [s.to_json() for s in summaries if principal.can_see(s.name)]}


@router.get("/{queue}")
async def show_queue(
    queue: str, principal: Principal = Depends(require("read")), wq: AsyncWorkQueue = Depends(queue_of)
) -> dict[str, Any]:
    """One queue's controls (active and unlimited when it was never controlled)."""
    principal.check_queue(queue)
    return (await AsyncQueues(wq).get(queue)).to_json()


@router.get("/{queue}/rate")
async def rate_usage(
    queue: str, principal: Principal = Depends(require("read")), wq: AsyncWorkQueue = Depends(queue_of)
) -> dict[str, Any]:
    """How much of the queue's current rate window its claims have used and when the window ends
    (`rate: null` when it has no rate limit)."""
    principal.check_queue(queue)
    usage = await AsyncQueues(wq).rate_usage(queue)
    return {"rate": None} if usage is None else usage.to_json()


async def _control(
    action: str, queue: str, request: Request, principal: Principal, wq: AsyncWorkQueue, **extra: Any
) -> dict[str, Any]:
    async with mutation(request, principal, f"queue.{action}", queue, extra or None):
        principal.check_queue(queue)
        control = await getattr(AsyncQueues(wq), action)(queue, by=principal.name, **extra)
    return control.to_json()  # type: ignore[no-any-return]


@router.post("/{queue}/pause")
async def pause_queue(
    queue: str,
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Stop claims from the queue until it is resumed (enqueues are still accepted)."""
    return await _control("pause", queue, request, principal, wq)


@router.post("/{queue}/resume")
async def resume_queue(
    queue: str,
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Make a paused or draining queue active again."""
    return await _control("resume", queue, request, principal, wq)


@router.post("/{queue}/drain")
async def drain_queue(
    queue: str,
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Refuse enqueues into the queue (409 `draining`) while its claimed items finish."""
    return await _control("drain", queue, request, principal, wq)


@router.put("/{queue}/limits")
async def set_limits(
    queue: str,
    body: Limits,
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Set or clear the queue's concurrency limit and/or claim rate."""
    return await _control("limit", queue, request, principal, wq, concurrency=body.concurrency, rate=body.rate)
