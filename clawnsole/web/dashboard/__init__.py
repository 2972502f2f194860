"""The dashboard `clawnsole serve` shows at `/`: server-rendered pages (Jinja2) with htmx, both inside the
package, live by Server-Sent Events with polling as the fallback.

Read in order: `session` (sign-in cookie → Principal, CSRF, the one `act` every form goes through),
`render` (templates, filters, security headers), then `pages/` — one module per page, each a thin layer
over the same library calls as the API's routes. Every module of `pages` that defines a `router` is
included, so a new page needs no edit here.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib import resources

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from clawnsole.web.dashboard import pages
from clawnsole.web.dashboard.render import SecurityHeaders, error_page
from clawnsole.web.dashboard.session import SignInNeeded


async def _as_page(request: Request) -> None:
    # Set first (a router dependency runs before the page's own): any error of this request is a page.
    request.state.error_page = error_page


async def _sign_in_first(request: Request, error: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.headers.get("hx-request"):
        # An htmx request (a live region) cannot follow a redirect into a whole page: tell htmx to go.
        return Response(status_code=204, headers={"HX-Redirect": "/sign-in"})
    from urllib.parse import quote

    return RedirectResponse(f"/sign-in?next={quote(target, safe='/')}", status_code=303)


def install(app: FastAPI) -> None:
    """Add the dashboard's pages, static files and security headers to the app."""
    router = APIRouter(dependencies=[Depends(_as_page)], include_in_schema=False)
    for name in sorted(m.name for m in pkgutil.iter_modules(pages.__path__) if not m.name.startswith("_")):
        module = importlib.import_module(f"{pages.__name__}.{name}")
        page_router = getattr(module, "router", None)
        if page_router is not None:
            router.include_router(page_router)
    app.include_router(router)
    static = resources.files("clawnsole.web.dashboard").joinpath("static")
    app.mount("/static", StaticFiles(directory=str(static)), name="static")
    app.add_exception_handler(SignInNeeded, _sign_in_first)
    app.add_middleware(SecurityHeaders)
