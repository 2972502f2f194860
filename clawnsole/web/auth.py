"""Who a request acts as: one decision per request, in one dependency (`require(scope)`), deny by default.

`Authorization: Bearer cln_…` is looked up by its hash (`clawnsole.tokens`); no token, an unknown, expired or
revoked one is 401; a token without the scope is 403; an item or queue outside the token's queues is 404, as
if it did not exist. Every mutation writes an audit row, allowed or refused (`audited`, `mutation`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Request

from clawnsole.errors import ClawnsoleError
from clawnsole.queue import AsyncWorkQueue
from clawnsole.tokens.api import AsyncAudit, AsyncTokens
from clawnsole.tokens.models import Forbidden, Principal, Unauthenticated
from clawnsole.web.errors import error_code

log = logging.getLogger("clawnsole.web")

__all__ = ["Principal", "audited", "mutation", "principal_of", "queue_of", "require"]


def queue_of(request: Request) -> AsyncWorkQueue:
    """The server's open work queue (one pool for the whole process), as a FastAPI dependency."""
    queue: AsyncWorkQueue = request.app.state.queue
    return queue


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated("missing bearer token: send `Authorization: Bearer <token>`")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthenticated("the Authorization header must be `Bearer <token>`")
    return secret.strip()


async def principal_of(request: Request) -> Principal:
    """The principal of the request's bearer token (cached on the request: one lookup per request)."""
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    principal = await AsyncTokens(queue_of(request)).authenticate(_bearer(request))
    request.state.principal = principal
    return principal


def require(scope: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency returning the request's Principal when its token grants `scope` (401, else 403).

    A refused mutation (any scope but read) is audited as `forbidden`."""

    async def dependency(request: Request) -> Principal:
        principal = await principal_of(request)
        if not principal.has(scope):
            if scope != "read":
                await audited(request, principal, _action(request), request.url.path, "forbidden", {"needs": scope})
            raise Forbidden(f"this token lacks the {scope!r} scope")
        return principal

    return dependency


def _action(request: Request) -> str:
    route = request.scope.get("route")
    name = getattr(route, "name", None)
    return str(name) if name else f"{request.method} {request.url.path}"


async def audited(
    request: Request,
    principal: Principal | None,
    action: str,
    target: str | None,
    outcome: str,
    detail: dict[str, Any] | None = None,
) -> None:
    """Write the audit row of a mutation (success or refusal). A failure to write it is logged, not raised:
    the refusal the caller is about to answer must not turn into a 500 (an outage is answered 503 anyway)."""
    try:
        await AsyncAudit(queue_of(request)).write(
            None if principal is None else principal.name, action, target, outcome, detail
        )
    except ClawnsoleError as error:
        log.warning("audit row for %s on %s not written: %s", action, target, error)


@asynccontextmanager
async def mutation(
    request: Request, principal: Principal, action: str, target: str | None, detail: dict[str, Any] | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Audit the block as one mutation: `ok` when it ends, else the error's code (`lease_lost`, …).
    The yielded dict may be filled with detail to record; setting its `changed` to False (a claim that found
    nothing) writes no row for a success, so an idle poller does not fill the log."""
    extra: dict[str, Any] = dict(detail or {})
    try:
        yield extra
    except ClawnsoleError as error:
        _, code = error_code(error)
        await audited(request, principal, action, target, code, extra or None)
        raise
    if extra.pop("changed", True):
        await audited(request, principal, action, target, "ok", extra or None)
