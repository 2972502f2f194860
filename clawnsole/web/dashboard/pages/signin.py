"""Signing in and out: an API token in, an HttpOnly SameSite=Strict session cookie out."""

from __future__ import annotations

import contextlib
from datetime import UTC

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from clawnsole.errors import ClawnsoleError
from clawnsole.tokens.models import Unauthenticated
from clawnsole.tokens.sessions import AsyncSessions
from clawnsole.web.auth import audited, queue_of
from clawnsole.web.dashboard.render import page
from clawnsole.web.dashboard.session import COOKIE, form_of, from_this_dashboard, redirect, same_origin, secure_cookie

router = APIRouter()


def _next(value: object) -> str:
    # Only a path of this server: never an open redirect to another site.
    text = value if isinstance(value, str) else "/"
    return text if text.startswith("/") and not text.startswith("//") and "\\" not in text else "/"


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str = "/") -> HTMLResponse:
    return page(request, None, "sign_in.html", next=_next(next))


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await form_of(request)
    target = _next(form.get("next"))
    if not same_origin(request):
        return page(request, None, "sign_in.html", 403, next=target, error="this form is not from this dashboard")
    secret = form.get("token")
    try:
        session = await AsyncSessions(queue_of(request)).open(secret.strip() if isinstance(secret, str) else "")
    except Unauthenticated as error:
        await audited(request, None, "dashboard.sign_in", None, "unauthenticated")
        return page(request, None, "sign_in.html", 401, next=target, error=f"Not signed in: {error}")
    await audited(request, session.principal, "dashboard.sign_in", session.principal.name, "ok")
    response = redirect(target)
    response.set_cookie(
        COOKIE,
        session.secret,
        expires=session.expires_at.astimezone(UTC),
        httponly=True,
        samesite="strict",
        secure=secure_cookie(request),
        path="/",
    )
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    form = await form_of(request)
    secret = request.cookies.get(COOKIE)
    response = redirect("/sign-in", "Signed out.")
    if secret and from_this_dashboard(request, secret, form):
        # A session that ended already: the cookie goes either way.
        with contextlib.suppress(ClawnsoleError):
            await AsyncSessions(queue_of(request)).close(secret)
        response.delete_cookie(COOKIE, path="/")
    return response
