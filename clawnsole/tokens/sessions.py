"""Dashboard sign-in sessions: a token signs in once, the browser then holds a session secret of its own.

The session secret lives only in the browser's HttpOnly cookie (its sha256 is stored), and it is never
stronger than the token behind it: every request looks the token up again, so a revoked or expired token
ends its sessions at once. The CSRF token of a session is derived from its secret (HMAC), so forms can be
checked without storing anything more.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from clawnsole.errors import NotFound
from clawnsole.ops import Op, Step
from clawnsole.queue import AsyncWorkQueue
from clawnsole.tokens.models import Principal, Unauthenticated, secret_hash
from clawnsole.tokens.ops import authenticate

SESSION_PREFIX = "cls_"
# How long a session lasts at most (it ends sooner when its token does).
SESSION_SECONDS = 12 * 3600.0
_MAX_SECRET = 200


@dataclass(frozen=True)
class Session:
    """A new session: the secret for the cookie (the only copy) and who it acts as."""

    secret: str
    principal: Principal
    expires_at: datetime


def csrf_token(session_secret: str) -> str:
    """The CSRF token of a session: an HMAC of its secret (a page of the session shows it; another site
    cannot compute it)."""
    return hmac.new(session_secret.encode(), b"clawnsole-csrf", hashlib.sha256).hexdigest()


def csrf_ok(session_secret: str, given: str | None) -> bool:
    """Whether `given` is the session's CSRF token (compared in constant time)."""
    return given is not None and hmac.compare_digest(csrf_token(session_secret), given)


def open_session(token_secret: str, seconds: float = SESSION_SECONDS) -> Op[Session]:
    """Sign in with an API token: Unauthenticated when it is unknown, expired or revoked."""
    principal = yield from authenticate(token_secret)
    session_secret = SESSION_PREFIX + secrets.token_urlsafe(32)
    rows = yield Step(
        "dashboard_session_open",
        {"token_hash": secret_hash(token_secret), "session_hash": secret_hash(session_secret), "seconds": seconds},
    )
    if not rows:
        raise Unauthenticated("the token ended while signing in")
    return Session(session_secret, principal, rows[0]["expires_at"])


def session_principal(session_secret: str) -> Op[tuple[Principal, datetime]]:
    """Who a session acts as, and the database's clock; Unauthenticated when it (or its token) has ended."""
    if not session_secret.startswith(SESSION_PREFIX) or len(session_secret) > _MAX_SECRET:
        raise Unauthenticated("not a dashboard session")
    rows = yield Step("dashboard_session_principal", {"session_hash": secret_hash(session_secret)})
    if not rows:
        raise Unauthenticated("the session has ended: sign in again")
    row = rows[0]
    queues = None if row["queues"] is None else frozenset(row["queues"])
    return Principal(name=row["name"], scopes=frozenset(row["scopes"]), queues=queues), row["now"]


def close_session(session_secret: str) -> Op[str]:
    """Sign out: the session ends now; returns the token's name."""
    rows = yield Step("dashboard_session_close", {"session_hash": secret_hash(session_secret)})
    if not rows:
        raise NotFound("no such session")
    return str(rows[0]["token_name"])


class AsyncSessions:
    """Dashboard sessions over an open `AsyncWorkQueue`."""

    def __init__(self, queue: AsyncWorkQueue) -> None:
        self._queue = queue

    async def open(self, token_secret: str, seconds: float = SESSION_SECONDS) -> Session:
        """Sign in with an API token."""
        return await self._queue.run(open_session(token_secret, seconds))

    async def principal(self, session_secret: str) -> tuple[Principal, datetime]:
        """Who the session acts as and the database's clock, or raise `Unauthenticated`."""
        return await self._queue.run_steps(session_principal(session_secret))

    async def close(self, session_secret: str) -> str:
        """Sign out."""
        return await self._queue.run(close_session(session_secret))
