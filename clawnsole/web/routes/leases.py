"""Leases over HTTP: who holds what, and taking leases back (thin over `clawnsole.incidents`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict

from clawnsole.errors import InvalidInput, NotFound
from clawnsole.incidents.api import AsyncIncidents
from clawnsole.incidents.models import Released
from clawnsole.queue import AsyncWorkQueue
from clawnsole.web.auth import Principal, mutation, queue_of, require

router = APIRouter(prefix="/api/v1/leases", tags=["leases"])


class Release(BaseModel):
    """Which leases to take back: one item's (`id`), or every one an agent holds (`agent`)."""

    model_config = ConfigDict(extra="forbid")
    id: int | None = None
    agent: str | None = None
    reason: str | None = None


@router.get("")
async def list_leases(
    queue: str | None = None,
    agent: str | None = None,
    expired: bool = False,
    limit: int = 1000,
    principal: Principal = Depends(require("read")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Leases held now, the soonest to expire first (what `clawnsole leases --json` prints)."""
    if queue is not None:
        principal.check_queue(queue)
    found = await AsyncIncidents(wq).leases(queue=queue, agent=agent, expired=expired, limit=limit)
    return {"leases": [lease.to_json() for lease in found if principal.can_see(lease.queue)]}


@router.post("/release")
async def release_leases(
    body: Release,
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Take leases back: the items go back to pending, the attempt not charged; the old holder's later writes
    are refused (409 `lease_lost`). 404 when nothing matching (in the token's queues) was held."""
    target = f"item {body.id}" if body.id is not None else f"agent {body.agent}"
    incidents = AsyncIncidents(wq)
    async with mutation(request, principal, "lease.release", target, {"reason": body.reason}):
        if (body.id is None) == (body.agent is None):
            raise InvalidInput("id", "give exactly one of id (an item) or agent (every lease it holds)")
        if body.id is not None:
            item = await wq.get(body.id)
            principal.check_queue(item.queue, f"no item {body.id}")
            released = await incidents.release(body.id, reason=body.reason, by=principal.name)
        elif principal.queues is None:
            released = await incidents.release(agent=body.agent, reason=body.reason, by=principal.name)
        else:
            released = await _release_visible(incidents, principal, body)
    return {"released": [r.to_json() for r in released]}


async def _release_visible(incidents: AsyncIncidents, principal: Principal, body: Release) -> list[Released]:
    """An agent's leases in the token's queues only, one fenced release each (a lease that went meanwhile,
    done or released by another, is skipped)."""
    released: list[Released] = []
    for lease in await incidents.leases(agent=body.agent, limit=10_000):
        if not principal.can_see(lease.queue):
            continue
        try:
            released += await incidents.release(lease.id, reason=body.reason, by=principal.name)
        except NotFound:
            continue
    if not released:
        raise NotFound(f"agent {body.agent!r} holds no lease in this token's queues")
    return released
