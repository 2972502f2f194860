"""One JSON error shape for every failure: `{"error": {"code", "message", "field"?}}`, with the status that
mirrors the CLI's exit code (2→400, 3→409, 4→404, 5→503; 401/403 for tokens, 413 for large bodies).

A dashboard page (`request.state.error_page` set) gets the same status as an HTML page instead.
Never a traceback: an unexpected exception is logged here and answered 500 `internal`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clawnsole.db.connect import redact
from clawnsole.errors import (
    ClawnsoleError,
    Conflict,
    DatabaseError,
    InvalidInput,
    LeaseLost,
    NotFound,
    QueueDraining,
)
from clawnsole.tokens.models import Forbidden, Unauthenticated

log = logging.getLogger("clawnsole.web")

MAX_BODY = 1024 * 1024

# Most specific first: LeaseLost and QueueDraining are Conflicts.
_STATUS: tuple[tuple[type[ClawnsoleError], int, str], ...] = (
    (InvalidInput, 400, "invalid_input"),
    (Unauthenticated, 401, "unauthenticated"),
    (Forbidden, 403, "forbidden"),
    (NotFound, 404, "not_found"),
    (LeaseLost, 409, "lease_lost"),
    (QueueDraining, 409, "draining"),
    (Conflict, 409, "conflict"),
    (DatabaseError, 503, "unavailable"),
)


def error_code(error: ClawnsoleError) -> tuple[int, str]:
    """The HTTP status and error code of a Clawnsole error."""
    for kind, status, code in _STATUS:
        if isinstance(error, kind):
            return status, code
    return 500, "error"


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The error document (passwords in a quoted URL redacted)."""
    body: dict[str, Any] = {"code": code, "message": redact(message)}
    if field is not None:
        body["field"] = field
    return {"error": body}


def error_response(status: int, code: str, message: str, field: str | None = None) -> JSONResponse:
    """A JSON error response; a 401 also says which scheme to use."""
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)


async def _clawnsole_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ClawnsoleError)
    status, code = error_code(error)
    page = getattr(request.state, "error_page", None)
    if page is not None:
        # A dashboard page: the same status, as a page a person can read.
        return page(request, status, error)  # type: ignore[no-any-return]
    if isinstance(error, InvalidInput):
        return error_response(status, code, error.message, error.field)
    return error_response(status, code, str(error))


def _field(loc: Sequence[Any]) -> str:
    # ("body", "lease") → "lease"; ("query", "limit") → "limit"; a whole-body error → "body".
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0] if error.errors() else {"loc": ("body",), "msg": "is not valid"}
    message = str(first.get("msg", "is not valid"))
    if first.get("type") == "extra_forbidden":
        message = "is not a known field"
    elif first.get("type") == "json_invalid":
        message = "the body is not valid JSON"
    return error_response(400, "invalid_input", message, _field(first.get("loc", ("body",))))


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    page = getattr(request.state, "error_page", None)
    if page is not None:
        return page(request, error.status_code, error)  # type: ignore[no-any-return]
    codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
    return error_response(error.status_code, codes.get(error.status_code, "error"), str(error.detail))


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    log.error("unexpected error on %s %s: %s", request.method, request.url.path, type(error).__name__, exc_info=error)
    return error_response(500, "internal", "internal error (logged by the server)")


def install(app: FastAPI) -> None:
    """Register the handlers and the body-size limit on the app."""
    app.add_exception_handler(ClawnsoleError, _clawnsole_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(BodyLimit, limit=MAX_BODY)


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413: by Content-Length before reading, and while
    reading a chunked body (the route never sees a partial body)."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0
        too_large = False

        async def counted() -> Message:
            nonlocal seen, too_large
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    too_large = True
                    raise _TooLarge
            return message

        async def unless_too_large(message: Message) -> None:
            # Whatever the app answers to a body it could not read in full (FastAPI turns the error into a
            # 400 of its own) is replaced by the 413 below.
            if not too_large:
                await send(message)

        try:
            await self.app(scope, counted, unless_too_large)
        except Exception:
            if not too_large:
                raise
        if too_large:
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(413, "too_large", f"the request body is larger than {self.limit // 1024 // 1024} MiB")
        await response(scope, receive, send)


class _TooLarge(Exception):
    """Raised inside the app's receive when the body passes the limit."""
