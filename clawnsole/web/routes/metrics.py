"""`GET /metrics`: Prometheus text exposition (see `clawnsole.web.metrics`). A token with `read`, or no token
at all when the server runs with `--metrics-public`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from clawnsole.queue import AsyncWorkQueue
from clawnsole.web.auth import queue_of, require
from clawnsole.web.metrics import CONTENT_TYPE, MetricsCache, page

router = APIRouter(tags=["metrics"])
_READ = require("read")


def _cache(request: Request) -> MetricsCache:
    # One cache per app (a test process may run several apps), made on first use.
    cache = getattr(request.app.state, "metrics_cache", None)
    if not isinstance(cache, MetricsCache):
        cache = request.app.state.metrics_cache = MetricsCache()
    return cache


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE: {}}}})
async def metrics(request: Request, wq: AsyncWorkQueue = Depends(queue_of)) -> Response:
    """The queue's gauges and the last day's history metrics, computed at most every few seconds."""
    can_see = None
    if not getattr(request.app.state, "metrics_public", False):
        principal = await _READ(request)
        can_see = None if principal.queues is None else principal.can_see
    families = await _cache(request).families(wq)
    return Response(page(families, can_see), media_type=CONTENT_TYPE)
