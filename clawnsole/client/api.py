"""`ApiClient`: the item operations of `clawnsole serve` over HTTP (httpx, sync), for the CLI and `clawnsole mcp`.

Every method returns the JSON object the CLI prints for the same operation (the server builds it with the
library's own `to_json`), and every refusal comes back as the library's exception: 400 InvalidInput naming
the field, 401/403 Unauthorized, 404 NotFound, 409 LeaseLost / QueueDraining / Conflict, 503 and a server
that does not answer ApiUnavailable. So a command behaves the same, exit codes included, whichever way it
reaches the queue.

The token is a secret: it travels only in the Authorization header, and never appears in a repr or in an
error message (text quoted from a reply is scrubbed of it too).
"""

from __future__ import annotations

import builtins
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import httpx

from clawnsole.errors import (
    ClawnsoleError,
    Conflict,
    DatabaseUnavailable,
    InvalidInput,
    LeaseLost,
    NotFound,
    QueueDraining,
    Unauthorized,
)

# The server holds a claim's `wait` up to 30 s; a reply gets this much longer before the client gives up.
_TIMEOUT = 30.0
_WAIT_GRACE = 15.0


class ApiUnavailable(DatabaseUnavailable):
    """The API does not answer (connection refused, a timeout) or answers 503 (its database is down): exit 5,
    like a database the CLI cannot reach."""


def _printable(base_url: str) -> str:
    """The base URL without any user:password part, fit to go in an error message."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


class ApiClient:
    """A client of one `clawnsole serve` at `base_url`, acting with one bearer token.

    Use it as a context manager (or call `close()`): it keeps one HTTP connection open across calls.
    """

    def __init__(self, base_url: str, token: str, *, timeout: float = _TIMEOUT) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput("api_url", "must be an http:// or https:// URL, e.g. http://127.0.0.1:8765")
        if not token or not token.strip():
            raise InvalidInput("token", "is empty: give the secret `clawnsole token create` printed")
        self.base_url = base_url.rstrip("/")
        self._where = _printable(self.base_url)
        self._token = token.strip()
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
            timeout=timeout,
            # The API is reached directly: a proxy from the environment would see the bearer token.
            trust_env=False,
        )

    def __repr__(self) -> str:
        return f"ApiClient({self._where!r})"  # never the token

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection."""
        self._http.close()

    # -- items -------------------------------------------------------------------------------------------

    def enqueue(self, queue: str, title: str, **options: Any) -> dict[str, Any]:
        """Add an item (options as `WorkQueue.enqueue`, `key` included; None ones are left out): the item with
        `created`. Options given as command-line text (a priority name, "15m", JSON) are sent as the values
        they stand for, checked by the library's own validators, so bad input is refused before a request."""
        body = _enqueue_body(title, options)
        return self._call("POST", f"/api/v1/queues/{_segment(queue, 'queue')}/items", json=body, queue=queue)  # type: ignore[no-any-return]

    def claim(self, queue: str, *, lease: str | float = 300, limit: int = 1, wait: float = 0) -> list[dict[str, Any]]:
        """Claim up to `limit` due items of one queue as the token's agent, waiting up to `wait` seconds (the
        server allows 30) for one to come due; [] when none did. Each item carries its `lease_token`."""
        body = {"lease": lease, "limit": limit, "wait": wait}
        reply = self._call(
            "POST",
            f"/api/v1/queues/{_segment(queue, 'queue')}/claim",
            json=body,
            queue=queue,
            timeout=max(_TIMEOUT, float(wait) + _WAIT_GRACE),
        )
        return list(reply["items"])

    def progress(
        self,
        item_id: int,
        lease_token: str,
        *,
        note: str | None = None,
        percent: int | None = None,
        extend: str | float | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Record progress on a held item and renew its lease (fenced by the lease token); `timeout` bounds
        the request (a heartbeat must not hang past its interval)."""
        body = {"lease_token": lease_token, "note": note, "percent": percent, "extend": extend}
        return self._item_action(item_id, "progress", body, timeout=timeout)

    def done(self, item_id: int, lease_token: str, *, result: Any = None) -> dict[str, Any]:
        """Finish a held item successfully, storing `result` (any JSON value)."""
        return self._item_action(item_id, "done", {"lease_token": lease_token, "result": result})

    def fail(
        self, item_id: int, lease_token: str, *, error: str, retry: bool = True, backoff: str | float | None = None
    ) -> dict[str, Any]:
        """Record a failed attempt: retried after a backoff while attempts remain (and `retry`), else failed."""
        body = {"lease_token": lease_token, "error": error, "retry": retry, "backoff": backoff}
        return self._item_action(item_id, "fail", body)

    def release(self, item_id: int, lease_token: str, *, reason: str | None = None) -> dict[str, Any]:
        """Give a held item back without charging the attempt (a worker stopping): pending again at once."""
        return self._item_action(item_id, "release", {"lease_token": lease_token, "reason": reason})

    def step(self, item_id: int, lease_token: str, *, step: str, seconds: float, error: str | None = None) -> bool:
        """Record that a held item's handler spent `seconds` in `step`; False when the lease is gone."""
        body = {"lease_token": lease_token, "step": step, "seconds": seconds, "error": error}
        return bool(self._item_action(item_id, "step", body)["recorded"])

    def cancel(self, item_id: int, *, reason: str | None = None) -> dict[str, Any]:
        """Cancel a pending or waiting item."""
        return self._item_action(item_id, "cancel", {"reason": reason})

    def retry(self, item_id: int) -> dict[str, Any]:
        """Requeue a failed or cancelled item with fresh attempts."""
        return self._item_action(item_id, "retry", {})

    def show(self, item_id: int) -> dict[str, Any]:
        """One item with its prerequisites, dependents and history."""
        return self._call("GET", f"/api/v1/items/{_item_id(item_id)}")  # type: ignore[no-any-return]

    def list(
        self,
        *,
        queue: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        limit: int = 100,
    ) -> builtins.list[dict[str, Any]]:
        """Items, newest first, at most `limit` (following the server's pages; instructions left out)."""
        from clawnsole import validate

        wanted = validate.positive_int(limit, "limit")
        items: builtins.list[dict[str, Any]] = []
        cursor: str | None = None
        while len(items) < wanted:
            params = {"queue": queue, "status": status, "kind": kind, "limit": wanted - len(items), "cursor": cursor}
            page = self._call("GET", "/api/v1/items", params={k: v for k, v in params.items() if v is not None})
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not cursor:  # a searched page may be empty while the search goes on (feed.item_page)
                break
        return [{k: v for k, v in i.items() if k != "instructions"} for i in items[:wanted]]

    def queue(self, name: str) -> dict[str, Any]:
        """One queue's controls, as `queue show --json` prints them (404 outside the token's queues)."""
        return self._call("GET", f"/api/v1/queues/{_segment(name, 'queue')}", queue=name)  # type: ignore[no-any-return]

    def ready(self) -> None:
        """Return when the server and its database answer (`/readyz`); ApiUnavailable when they do not."""
        self._call("GET", "/readyz")

    def status(self, queue: str | None = None) -> builtins.list[dict[str, Any]]:
        """Counts per queue and status, as `workqueue status --json` prints them."""
        params = {} if queue is None else {"queue": queue}
        return _listed(self._call("GET", "/api/v1/status", params=params), "status")

    # -- dead letters and schedules (what `clawnsole mcp` offers besides items) --------------------------

    def dead_letters(
        self, *, queue: str | None = None, kind: str | None = None, limit: int = 100
    ) -> builtins.list[dict[str, Any]]:
        """Dead letters (failed items), newest failure first, as `dlq list --json` prints them."""
        params = {"queue": queue, "kind": kind, "limit": limit}
        reply = self._call("GET", "/api/v1/dlq", params={k: v for k, v in params.items() if v is not None})
        return _listed(reply, "dead_letters")

    def schedules(self, status: str | None = None) -> builtins.list[dict[str, Any]]:
        """Every schedule the token may see, as `schedule list --json` prints them."""
        reply = self._call("GET", "/api/v1/schedules/", params={} if status is None else {"status": status})
        return _listed(reply, "schedules")

    def schedule_create(self, name: str, **options: Any) -> dict[str, Any]:
        """Create a schedule (options as `Schedules.add`; None ones left out)."""
        body = {"name": name} | {k: v for k, v in options.items() if v is not None}
        return self._call("POST", "/api/v1/schedules/", json=body, queue=options.get("queue"))  # type: ignore[no-any-return]

    def schedule_change(self, name: str, action: str) -> dict[str, Any]:
        """Pause, resume or remove a schedule by name; the schedule as it is (or was, once removed)."""
        path = f"/api/v1/schedules/{_segment(name, 'name')}/"
        if action == "remove":
            return self._call("DELETE", path)  # type: ignore[no-any-return]
        if action not in ("pause", "resume"):
            raise InvalidInput("action", "must be pause, resume or remove")
        return self._call("POST", f"{path}{action}/")  # type: ignore[no-any-return]

    # -- plumbing ----------------------------------------------------------------------------------------

    def _item_action(
        self, item_id: int, action: str, body: dict[str, Any], *, timeout: float | None = None
    ) -> dict[str, Any]:
        sent = {k: v for k, v in body.items() if v is not None}
        request: dict[str, Any] = {"json": sent} if timeout is None else {"json": sent, "timeout": timeout}
        return self._call("POST", f"/api/v1/items/{_item_id(item_id)}/{action}", **request)  # type: ignore[no-any-return]

    def _call(self, method: str, path: str, *, queue: str | None = None, **request: Any) -> Any:
        try:
            reply = self._http.request(method, path, **request)
        except httpx.TimeoutException:
            raise ApiUnavailable(f"the API at {self._where} did not answer in time") from None
        except httpx.HTTPError as error:
            raise ApiUnavailable(f"the API at {self._where} is unreachable: {self._scrub(str(error))}") from None
        if reply.is_success:
            try:
                return reply.json()
            except ValueError:
                raise ApiUnavailable(f"the API at {self._where} answered {reply.status_code} without JSON") from None
        raise self._error(reply, queue)

    def _error(self, reply: httpx.Response, queue: str | None) -> ClawnsoleError:
        """The library's exception for an error reply (`{"error": {"code", "field", "message"}}`)."""
        try:
            detail = reply.json().get("error") or {}
        except (ValueError, AttributeError):
            detail = {}
        if not isinstance(detail, dict):
            detail = {}
        code = str(detail.get("code") or "")
        message = self._scrub(str(detail.get("message") or reply.reason_phrase or f"HTTP {reply.status_code}"))
        status = reply.status_code
        if status in (400, 413, 422):
            field = str(detail.get("field") or ("body" if status == 413 else "input"))
            return InvalidInput(field, message)
        if status in (401, 403):
            what = "refused the token" if status == 401 else "refused: the token lacks the scope"
            return Unauthorized(f"the API at {self._where} {what}: {message}")
        if status == 404:
            return NotFound(message)
        if status == 409:
            if code == "lease_lost":
                return LeaseLost(message)
            if code == "draining" and queue is not None:
                return QueueDraining(queue)
            return Conflict(message)
        if status == 503:
            return ApiUnavailable(f"the API at {self._where} is unavailable: {message}")
        return ApiUnavailable(f"the API at {self._where} answered {status}: {message}")

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***")


def _listed(reply: Any, key: str) -> list[dict[str, Any]]:
    """The list of a reply that is either the list itself or an object holding it under `key`."""
    return list(reply[key] if isinstance(reply, dict) else reply)


def _enqueue_body(title: str, options: dict[str, Any]) -> dict[str, Any]:
    """The JSON body of an enqueue: the options as typed values (what the server's model takes)."""
    from clawnsole import item_options, validate

    given = {k: v for k, v in options.items() if v is not None}
    key = given.pop("key", None)
    if key is not None:
        if "dedupe_key" in given:
            raise InvalidInput("key", "give either key fields or a dedupe key, not both")
        given["dedupe_key"] = item_options.key_from_fields(key)
    if "run_at" in given and "delay" in given:
        raise InvalidInput("run_at", "give either a run time or a delay, not both")
    converters: dict[str, Any] = {
        "payload": validate.payload,
        "metadata": item_options.metadata,
        "priority": lambda v: validate.priority(v),
        "cooldown": lambda v: validate.duration(v, "cooldown", allow_zero=True),
        "delay": lambda v: validate.duration(v, "delay", allow_zero=True),
        "backoff": lambda v: validate.duration(v, "backoff", allow_zero=True),
        "lease": lambda v: validate.duration(v, "lease"),
        "run_at": lambda v: validate.timestamp(v, "run_at").isoformat(),
        "after": item_options.prerequisites,
    }
    body: dict[str, Any] = {"title": title}
    for name, value in given.items():
        convert = converters.get(name)
        body[name] = value if convert is None else convert(value)
    if body.get("after") == []:
        del body["after"]
    return body


def _segment(value: str, field: str) -> str:
    """A path segment (a queue name) percent-encoded, so a name cannot reach another route."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(field, "must be a non-empty name")
    return quote(value, safe="")


def _item_id(value: int) -> int:
    from clawnsole import validate

    return validate.item_id(value, "id")
