"""Leases and workers at `/leases`: who holds which item, since when and for how long yet, its last progress;
taking a lease back (operate); and the workers, alive and gone, last seen by the database's clock.

The same calls as `/api/v1/leases` and `/api/v1/workers` (`AsyncIncidents`): a token limited to some queues
reads the leases of each of its queues and sees the workers serving one of them.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from clawnsole.incidents.api import AsyncIncidents
from clawnsole.incidents.models import HeldLease
from clawnsole.queue import AsyncWorkQueue
from clawnsole.web.auth import queue_of
from clawnsole.web.dashboard.render import page
from clawnsole.web.dashboard.session import Viewer, act, signed_in

router = APIRouter()

# Leases listed at most, the soonest to expire first (expired ones at the top): the page stays light however
# many are held; the CLI and the API list them all.
LEASES = 100


@router.get("/leases")
async def leases(request: Request, viewer: Viewer = Depends(signed_in)) -> HTMLResponse:
    incidents = AsyncIncidents(queue_of(request))
    principal = viewer.principal
    held: list[HeldLease] = []
    for queue in [None] if principal.queue_list is None else principal.queue_list:
        held += await incidents.leases(queue=queue, limit=LEASES + 1)
    held.sort(key=lambda lease: (lease.lease_expires_at, lease.id))
    workers = [w for w in await incidents.workers(include_stopped=True) if any(principal.can_see(q) for q in w.queues)]
    # Alive first, then the silent ones (gone without a clean stop: worth a look), then the stopped.
    workers.sort(key=lambda w: ({None: 0, "silent": 1}.get(w.gone, 2), w.agent))
    return page(
        request,
        viewer,
        "leases.html",
        leases=held[:LEASES],
        truncated=len(held) > LEASES,
        expired=sum(1 for lease in held[:LEASES] if lease.lease_left_seconds < 0),
        workers=workers,
        alive=sum(1 for w in workers if w.gone is None),
    )


@router.post("/leases/{item_id}/release")
async def release_lease(item_id: int, request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    """Take the lease on the item back (as `POST /api/v1/leases/release` with its id): the item goes back to
    pending, the attempt not charged, and its holder's later writes are refused."""

    async def release(wq: AsyncWorkQueue) -> str:
        item = await wq.get(item_id)
        viewer.principal.check_queue(item.queue, f"no item {item_id}")
        [released] = await AsyncIncidents(wq).release(item_id, by=viewer.name)
        holder = f" from {released.holder}" if released.holder else ""
        return f"took the lease on item {item_id}{holder} back: it is pending again, the attempt not charged"

    return await act(
        request, viewer, "operate", "lease.release", f"item {item_id}", release, back="/leases", detail={"reason": None}
    )
