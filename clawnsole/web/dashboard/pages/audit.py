"""The audit log at `/audit`: who did what, when, and how it ended — newest first, by token and since a
time, a page at a time by keyset (`before`: the last id shown).

It needs what `GET /api/v1/audit` needs (`check_reader`: admin over every queue); any other token gets a
403 page saying so.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse

from clawnsole.errors import InvalidInput
from clawnsole.tokens.api import AsyncAudit
from clawnsole.tokens.models import AuditEntry
from clawnsole.web.auth import queue_of
from clawnsole.web.dashboard.render import page
from clawnsole.web.dashboard.session import Viewer, signed_in, url_of
from clawnsole.web.routes.audit import check_reader

router = APIRouter()

PAGE = 50


@router.get("/audit")
async def audit(
    request: Request, token: str = "", since: str = "", before: str = "", viewer: Viewer = Depends(signed_in)
) -> HTMLResponse:
    check_reader(viewer.principal)
    where = {k: v.strip() for k, v in (("token", token), ("since", since)) if v.strip()}
    rows: list[AuditEntry] = []
    error = None
    try:
        older = _before(before)
        # One row more than shown: whether an older page exists, without counting.
        rows = await AsyncAudit(queue_of(request)).list(limit=PAGE + 1, before=older, **where)
    except InvalidInput as bad:
        error = str(bad)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return page(
        request,
        viewer,
        "audit.html",
        rows=rows,
        where=where,
        error=error,
        next_url=_link(where | {"before": str(rows[-1].id)}) if more else None,
        first_url=_link(where) if before.strip() else None,
        outcome_class=outcome_class,
    )


def _link(query: dict[str, str]) -> str:
    return url_of("/audit", query)


def _before(value: str) -> int | None:
    if not value.strip():
        return None
    if not value.strip().isdigit():
        raise InvalidInput("before", f"{value!r} is not an audit row id")
    return int(value)


def outcome_class(outcome: str) -> str:
    """The colour of an outcome: ok, forbidden (refused: no or a wrong token, a missing scope), other."""
    if outcome == "ok":
        return "ok"
    return "forbidden" if outcome in ("forbidden", "unauthenticated") else "other"
