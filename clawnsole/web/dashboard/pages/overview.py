"""The overview at `/`: per queue what it holds and how it is doing, throughput over the last hour and day,
workers alive and alerts firing — the same library reads as `GET /api/v1/overview`, `/throughput`,
`/workers` and `/alerts`, each limited to the viewer's queues."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from clawnsole.alerts.api import AsyncAlerts
from clawnsole.incidents.api import AsyncIncidents
from clawnsole.stats.api import AsyncStats
from clawnsole.web.auth import queue_of
from clawnsole.web.dashboard.charts import bar_chart
from clawnsole.web.dashboard.render import page
from clawnsole.web.dashboard.session import Viewer, signed_in

router = APIRouter()


@router.get("/")
async def overview(request: Request, viewer: Viewer = Depends(signed_in)) -> HTMLResponse:
    wq = queue_of(request)
    principal = viewer.principal
    stats = AsyncStats(wq)
    queues, hour, day, workers, firing = await asyncio.gather(
        stats.overview(visible=principal.queues),
        stats.throughput("1h", "1m", visible=principal.queues),
        stats.throughput("24h", "30m", visible=principal.queues),
        AsyncIncidents(wq).workers(),
        AsyncAlerts(wq).alerts(state="firing"),
    )
    alive = [
        w for w in workers if w.gone is None and (principal.queues is None or any(map(principal.can_see, w.queues)))
    ]
    alerts = [
        a for a in firing if principal.queues is None or (a.subject_type == "queue" and principal.can_see(a.subject))
    ]
    totals = {
        key: sum(getattr(q, key) for q in queues)
        for key in ("pending", "waiting", "claimed", "expired", "failed", "done_1h", "failed_1h")
    }
    return page(
        request,
        viewer,
        "overview.html",
        queues=queues,
        totals=totals,
        hour=bar_chart(hour, label="%H:%M"),
        day=bar_chart(day, label="%H:%M"),
        workers=alive,
        alerts=alerts,
    )
