"""Pages: one Jinja2 environment (templates inside the package), the filters pages share, and `page()`.

`page()` renders a whole page, or only its `live` block when the request is the live region refreshing
itself (htmx, `HX-Target: live`): one template and one handler serve both, so a live update can never
show something the page itself would not. Every response carries a strict Content-Security-Policy: the
pages load only this server's own scripts and styles, and nothing inline.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clawnsole.web.dashboard.session import FLASH, Viewer, flash_of

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


def ago(value: datetime | None, now: datetime) -> str:
    """`value` relative to the database's `now`: "3 min ago", "in 2 h", "—" for none."""
    if value is None:
        return "—"
    seconds = (now - value).total_seconds()
    text = span(abs(seconds))
    if abs(seconds) < 1:
        return "just now"
    return f"{text} ago" if seconds >= 0 else f"in {text}"


def span(seconds: float | timedelta | None) -> str:
    """A duration, short: "850 ms", "42 s", "7 min", "3 h 5 min", "2 d 4 h"."""
    if seconds is None:
        return "—"
    s = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s // 60:.0f} min"
    if s < 86400:
        hours, minutes = divmod(int(s) // 60, 60)
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(int(s) // 3600, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def exact(value: datetime | None) -> str:
    """The exact time in UTC, for a tooltip and a `<time datetime>`."""
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty(value: Any) -> str:
    """JSON, indented, for a payload or a result."""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("clawnsole.web.dashboard", "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["span"] = span
    env.filters["pretty"] = pretty
    env.filters["exact"] = exact
    env.globals["ago"] = ago
    return env


ENV = _environment()


def page(
    request: Request, viewer: Viewer | None, template: str, status_code: int = 200, **context: Any
) -> HTMLResponse:
    """Render `template` (or only its `live` block, for the live region's own refresh) for `viewer`."""
    tpl = ENV.get_template(template)
    values = {"request": request, "viewer": viewer, "now": viewer.now if viewer else None, **context}
    if request.headers.get("hx-target") == "live" and "live" in tpl.blocks:
        # A block rendered alone skips the page's top-level `import "macros.html" as m`: give it `m` here.
        values["m"] = ENV.get_template("macros.html").make_module(values)
        body = "".join(tpl.blocks["live"](tpl.new_context(values)))
        return HTMLResponse(body, status_code=status_code)
    values["flash"] = flash_of(request)
    response = HTMLResponse(tpl.render(values), status_code=status_code)
    if values["flash"] is not None:
        response.delete_cookie(FLASH)
    return response


def error_page(request: Request, status: int, error: Exception) -> HTMLResponse:
    """A dashboard error (404, 403, 503 …) as a page that says what happened."""
    viewer = getattr(request.state, "viewer", None)
    message = getattr(error, "detail", None) or str(error) or "something went wrong"
    titles = {400: "Not accepted", 401: "Signed out", 403: "Not allowed", 404: "Not found", 409: "Conflict"}
    title = titles.get(status, "Unavailable" if status == 503 else "Error")
    return page(request, viewer, "error.html", status_code=status, title=title, message=str(message), status=status)


class SecurityHeaders:
    """Adds the CSP and its companions to every dashboard response (the API's JSON gets them too: harmless,
    and one less way to frame or sniff anything this server sends), and `Server-Timing: app;dur=<ms>`, the
    server's time to the response's first byte (what `benchmarks/dashboard_pages.py` reads)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith("/api/docs"):
            await self.app(scope, receive, send)
            return

        started = time.perf_counter()

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = f"app;dur={(time.perf_counter() - started) * 1000:.1f}".encode()
                message["headers"] = [*message.get("headers", []), *_HEADERS, (b"server-timing", took)]
            await send(message)

        await self.app(scope, receive, with_headers)
