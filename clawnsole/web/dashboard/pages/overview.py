"""The overview at `/`: per queue what it holds and how it is doing, throughput, workers, alerts firing."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from clawnsole.web.dashboard.render import page
from clawnsole.web.dashboard.session import Viewer, signed_in

router = APIRouter()


@router.get("/")
async def overview(request: Request, viewer: Viewer = Depends(signed_in)) -> HTMLResponse:
    return page(request, viewer, "overview.html")
