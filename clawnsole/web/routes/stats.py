"""Stats and status over HTTP: how items ran (the event history) and what the queues hold now."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from clawnsole.queue import AsyncWorkQueue
from clawnsole.stats.api import AsyncStats
from clawnsole.web.auth import Principal, queue_of, require

router = APIRouter(prefix="/api/v1", tags=["stats"])


@router.get("/stats")
async def stats(
    queue: str | None = None,
    kind: str | None = None,
    since: str | None = None,
    principal: Principal = Depends(require("read")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Per queue and kind over `since` (default 24h): claimed, done, failed, retried, success rate, run and
    wait p50/p95 (what `workqueue stats --json` prints)."""
    if queue is not None:
        principal.check_queue(queue)
    found = await AsyncStats(wq).stats(queue=queue, kind=kind, since=since)
    return {"stats": [row.to_json() for row in found if principal.can_see(row.queue)]}


@router.get("/status")
async def status(
    queue: str | None = None, principal: Principal = Depends(require("read")), wq: AsyncWorkQueue = Depends(queue_of)
) -> dict[str, Any]:
    """Counts per queue and status (by kind and priority too), oldest pending age, expired leases (what
    `workqueue status --json` prints)."""
    if queue is not None:
        principal.check_queue(queue)
    counts = await wq.status(queue)
    return {"status": [c.to_json() for c in counts if principal.can_see(c.queue)]}


@router.get("/overview")
async def overview(
    principal: Principal = Depends(require("read")), wq: AsyncWorkQueue = Depends(queue_of)
) -> dict[str, Any]:
    """Every queue the token sees with its state, limits and counts now (pending, waiting, claimed, expired
    leases, failed) and over the last hour (done, failed attempts), each from an index."""
    found = await AsyncStats(wq).overview(visible=principal.queues)
    return {"queues": [row.to_json() for row in found]}


@router.get("/throughput")
async def throughput(
    window: str = "1h",
    bucket: str = "1m",
    queue: str | None = None,
    principal: Principal = Depends(require("read")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Items done and attempts failed per `bucket` over the last `window` (at most 1,000 buckets), in the
    token's queues (or one of them)."""
    if queue is not None:
        principal.check_queue(queue)
    found = await AsyncStats(wq).throughput(window, bucket, visible=principal.queues, queue=queue)
    return {"window": window, "bucket": bucket, "buckets": [b.to_json() for b in found]}
