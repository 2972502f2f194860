"""Who a dashboard request acts as: the session cookie → the token's Principal, with the CSRF check of
every form and the one place an action is authorised, audited and answered.

A page without a live session redirects to the sign-in page; a form without the session's CSRF token, from
another origin, or of a token without the action's scope is refused 403 (and audited), so what the page
hides the server refuses again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from clawnsole.errors import ClawnsoleError
from clawnsole.queue import AsyncWorkQueue
from clawnsole.tokens.models import Forbidden, Principal, Unauthenticated
from clawnsole.tokens.sessions import AsyncSessions, csrf_ok, csrf_token
from clawnsole.web.auth import audited, mutation, queue_of

COOKIE = "clawnsole_session"
FLASH = "clawnsole_flash"


class SignInNeeded(Exception):
    """No live session: the page answers with a redirect to the sign-in page."""


@dataclass(frozen=True)
class Viewer:
    """The signed-in token of a dashboard request, its CSRF token and the database's clock."""

    principal: Principal
    csrf: str
    now: datetime
    session: str

    @property
    def name(self) -> str:
        return self.principal.name

    def can(self, scope: str) -> bool:
        """Whether the page shows the controls that need `scope` (the server checks again)."""
        return self.principal.has(scope)


def secure_cookie(request: Request) -> bool:
    """Whether cookies get `Secure`: the request came over TLS (directly, or through the trusted proxy)."""
    return request.url.scheme == "https"


async def signed_in(request: Request) -> Viewer:
    """The request's Viewer (a FastAPI dependency of every dashboard page); SignInNeeded without one."""
    secret = request.cookies.get(COOKIE)
    if not secret:
        raise SignInNeeded
    wq = queue_of(request)
    try:
        principal, now = await AsyncSessions(wq).principal(secret)
    except Unauthenticated as error:
        raise SignInNeeded from error
    viewer = Viewer(principal, csrf_token(secret), now, secret)
    request.state.viewer = viewer
    return viewer


def same_origin(request: Request) -> bool:
    """A form posted from this server's own pages: its Origin (or Referer) names this host."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        # Browsers send Origin on every cross-site POST; a client that sends neither is not a browser page
        # of another site, and the CSRF token still has to match.
        return True
    host = request.headers.get("x-forwarded-host") if request.app.state.behind_proxy else None
    return urlsplit(origin).netloc == (host or request.headers.get("host"))


def from_this_dashboard(request: Request, session_secret: str, form: dict[str, Any]) -> bool:
    """A POST made by a page of this session: the session's CSRF token in the form (or the htmx header), from
    this server's own origin."""
    given = form.get("csrf") or request.headers.get("x-csrf-token")
    return csrf_ok(session_secret, given if isinstance(given, str) else None) and same_origin(request)


async def form_of(request: Request) -> dict[str, Any]:
    """The posted form as a dict (a repeated field as a list)."""
    form = await request.form()
    out: dict[str, Any] = {}
    for key in form:
        values = form.getlist(key)
        out[key] = values if len(values) > 1 or key.endswith("[]") else values[0]
    return out


def filters_of(values: Any, names: tuple[str, ...]) -> dict[str, str]:
    """The filter fields among `names` that are given (non-empty), stripped, from a query or a form."""
    found = {}
    for name in names:
        value = values.get(name)
        if isinstance(value, str) and value.strip():
            found[name] = value.strip()
    return found


def url_of(path: str, where: dict[str, str], **more: Any) -> str:
    """`path` with the filter `where` and more query fields (None values left out)."""
    query = urlencode(where | {k: v for k, v in more.items() if v is not None})
    return path + (f"?{query}" if query else "")


def redirect(to: str, message: str | None = None, level: str = "ok") -> RedirectResponse:
    """A 303 to `to` (a path of this server only) carrying a one-time flash message."""
    target = to if to.startswith("/") and not to.startswith("//") else "/"
    response = RedirectResponse(target, status_code=303)
    if message:
        response.set_cookie(FLASH, quote(f"{level}:{message}"[:500]), max_age=60, httponly=True, samesite="strict")
    return response


def flash_of(request: Request) -> tuple[str, str] | None:
    """The flash message the previous redirect left, as (level, text)."""
    raw = request.cookies.get(FLASH)
    if not raw:
        return None
    level, _, text = unquote(raw).partition(":")
    return (level if level in ("ok", "error") else "ok"), text


async def act(
    request: Request,
    viewer: Viewer,
    scope: str,
    action: str,
    target: str | None,
    do: Callable[[AsyncWorkQueue], Awaitable[str | tuple[str, dict[str, Any]]]],
    *,
    back: str,
    form: dict[str, Any] | None = None,
    detail: dict[str, Any] | None = None,
) -> Response:
    """Run one dashboard action: CSRF and origin checked, scope enforced, audited as a mutation (as the API
    does), then a redirect to `back` with the message `do` returned, or with the error it raised. `do` may
    return (message, detail) to add to the audit row what only the action knows (the item it made, …)."""
    posted = form if form is not None else await form_of(request)
    if not from_this_dashboard(request, viewer.session, posted):
        await audited(request, viewer.principal, action, target, "forbidden", {"why": "csrf"})
        raise Forbidden("this form is not from this dashboard (missing or wrong CSRF token): reload the page")
    if not viewer.can(scope):
        await audited(request, viewer.principal, action, target, "forbidden", {"needs": scope})
        raise Forbidden(f"this token lacks the {scope!r} scope")
    try:
        async with mutation(request, viewer.principal, action, target, detail) as recorded:
            outcome = await do(queue_of(request))
            message, more = outcome if isinstance(outcome, tuple) else (outcome, {})
            recorded.update(more)
    except (Forbidden, Unauthenticated):
        raise
    except ClawnsoleError as error:
        return redirect(back, str(error), "error")
    return redirect(back, message)
