"""The workers registry over HTTP (thin over `clawnsole.incidents`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from clawnsole.incidents.api import AsyncIncidents
from clawnsole.queue import AsyncWorkQueue
from clawnsole.web.auth import Principal, queue_of, require

router = APIRouter(prefix="/api/v1/workers", tags=["workers"])


@router.get("")
async def list_workers(
    all: bool = False, principal: Principal = Depends(require("read")), wq: AsyncWorkQueue = Depends(queue_of)
) -> dict[str, Any]:
    """The registered workers, alive and gone silent (`all=true`: cleanly stopped ones too), as
    `clawnsole workers --json` prints them. A token limited to some queues sees the workers serving one."""
    found = await AsyncIncidents(wq).workers(include_stopped=all)
    return {"workers": [w.to_json() for w in found if any(principal.can_see(q) for q in w.queues)]}
