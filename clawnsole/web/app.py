"""`create_app`: the FastAPI application `clawnsole serve` runs.

One `AsyncWorkQueue` (one connection pool) per process in `app.state.queue`, one LISTEN connection in
`app.state.wakeups`; every module of `clawnsole.web.routes` that defines a `router` is included, so a new
route module needs no edit here.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from clawnsole.errors import ClawnsoleError
from clawnsole.queue import AsyncWorkQueue
from clawnsole.web import dashboard, errors, routes
from clawnsole.web.wakeups import Wakeups

log = logging.getLogger("clawnsole.web")

# Connections of the server's pool: autocommit, as the library's own pool (each item statement commits by
# itself). A request waits at most _POOL_WAIT seconds for a connection, so an outage answers 503 promptly.
_POOL_KWARGS: dict[str, Any] = {"connect_timeout": 5, "autocommit": True}
_POOL_WAIT = 5.0
_POOL_SIZE = 20


def create_app(url: str, schema: str, *, metrics_public: bool = False, behind_proxy: bool = False) -> FastAPI:
    """The API app over the database at `url` (its schema `schema`). `metrics_public`: `/metrics` without a
    token; `behind_proxy`: the server runs behind a reverse proxy (`clawnsole serve` trusts its
    X-Forwarded-* headers)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from psycopg_pool import AsyncConnectionPool

        # Opened without waiting: a server started while the database is down still answers (503, and
        # /readyz says why), and the pool connects once the database is back.
        pool = AsyncConnectionPool(
            url, min_size=1, max_size=_POOL_SIZE, open=False, timeout=_POOL_WAIT, kwargs=_POOL_KWARGS
        )
        await pool.open(wait=False)
        queue = AsyncWorkQueue(pool, schema=schema, agent="clawnsole-serve")
        try:
            await queue.open()
        except ClawnsoleError as error:
            log.warning("clawnsole serve: %s (answering 503 until it is)", error)
        app.state.queue = queue
        app.state.wakeups = Wakeups(url, schema)
        app.state.wakeups.start()
        try:
            yield
        finally:
            await app.state.wakeups.stop()
            await pool.close()

    app = FastAPI(
        title="Clawnsole",
        summary="A PostgreSQL-native, lease-based work queue: the HTTP API of `clawnsole serve`.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.schema = schema
    app.state.metrics_public = metrics_public
    app.state.behind_proxy = behind_proxy
    errors.install(app)

    @app.get("/healthz", tags=["server"])
    async def healthz() -> dict[str, str]:
        """The process is up (whatever the database's state)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["server"], responses={503: {"description": "database down or schema not current"}})
    async def readyz(request: Request) -> JSONResponse:
        """The database answers and its schema is the one this version needs."""
        try:
            # `open()` of a queue over a pool only checks the schema version again.
            await request.app.state.queue.open()
        except ClawnsoleError as error:
            return errors.error_response(503, "unavailable", str(error))
        return JSONResponse({"status": "ready"})

    for module in _route_modules():
        router = getattr(module, "router", None)
        if router is not None:
            app.include_router(router)
    dashboard.install(app)
    return app


def _route_modules() -> list[Any]:
    """Every module of `clawnsole.web.routes`, in name order (so the OpenAPI document is stable)."""
    names = sorted(m.name for m in pkgutil.iter_modules(routes.__path__) if not m.name.startswith("_"))
    return [importlib.import_module(f"{routes.__name__}.{name}") for name in names]
