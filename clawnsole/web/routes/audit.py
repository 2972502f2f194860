"""The audit log over HTTP: who changed what through the API and the dashboard (thin over `AsyncAudit`).

Reading it needs `admin` over every queue: the log spans all tokens and all queues (it has no queue column
to narrow it by), so a token limited to some queues — or an operator of them — would learn of queues and
tokens it is otherwise told nothing about. `clawnsole audit` reads the same rows from the database.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from clawnsole.queue import AsyncWorkQueue
from clawnsole.tokens.api import AsyncAudit
from clawnsole.tokens.models import Forbidden
from clawnsole.web.auth import Principal, queue_of, require

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

SCOPE = "admin"


def check_reader(principal: Principal) -> None:
    """Refuse (403) a token that may not read the whole log: only admin over every queue may."""
    if not principal.has(SCOPE):
        raise Forbidden(f"reading the audit log needs the {SCOPE!r} scope")
    if principal.queues is not None:
        raise Forbidden("the audit log spans every queue: reading it needs an admin token over all queues")


@router.get("")
async def list_audit(
    since: str | None = None,
    token: str | None = None,
    before: int | None = None,
    limit: int = 100,
    principal: Principal = Depends(require(SCOPE)),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Audit rows newest first (as `clawnsole audit --json`), since a time or a duration (1h, 7d), of one
    token; `next_before` pages on (pass it as `before`), null on the last page."""
    check_reader(principal)
    rows = await AsyncAudit(wq).list(since=since, token=token, limit=limit, before=before)
    return {
        "audit": [r.to_json() for r in rows],
        "next_before": rows[-1].id if len(rows) == limit else None,
    }
