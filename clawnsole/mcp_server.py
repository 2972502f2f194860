"""`clawnsole mcp`: the queue's agent tools as a Model Context Protocol server over stdio (the official SDK).

The tools are the scheduler plan's five (`schedule_create`, `schedule_pause`, `schedule_resume`,
`schedule_stop`, `schedule_list`) and the work queue's (`workqueue_enqueue`, `workqueue_claim_next`,
`workqueue_progress`, `workqueue_done`, `workqueue_fail`, `queue_status`, `dlq_list`). Each has typed
parameters (the SDK derives its JSON schema from the signature) and returns the object the CLI prints as
JSON for the same operation.

Two ways to reach the queue, chosen once at start: with $CLAWNSOLE_API_URL and $CLAWNSOLE_TOKEN, through the
HTTP API, acting with that token's scopes (the agent needs no database access); else directly on the
database the CLI would use. A refusal comes back as a tool error whose text starts with the CLI's exit-code
name (`invalid_input: title: …`, `lease_lost: …`), so an agent can tell "fix the input" from "claim again".
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from clawnsole.client import ApiClient
    from clawnsole.queue import WorkQueue

Json = dict[str, Any]


class Backend(Protocol):
    """What the tools need, over the database or over the HTTP API; every result is the CLI's JSON."""

    def enqueue(self, queue: str, title: str, **options: Any) -> Json: ...
    def claim_next(self, queue: str, *, lease: str, limit: int) -> builtins.list[Json]: ...
    def progress(self, item_id: int, lease_token: str, *, note: str | None, percent: int | None) -> Json: ...
    def done(self, item_id: int, lease_token: str, *, result: Any) -> Json: ...
    def fail(self, item_id: int, lease_token: str, *, error: str, retry: bool) -> Json: ...
    def queue_status(self, queue: str | None) -> builtins.list[Json]: ...
    def dlq_list(self, *, queue: str | None, kind: str | None, limit: int) -> builtins.list[Json]: ...
    def schedule_create(self, name: str, **options: Any) -> Json: ...
    def schedule_change(self, name: str, action: str) -> Json: ...
    def schedule_list(self, status: str | None) -> builtins.list[Json]: ...


class DatabaseBackend:
    """The tools on the database, through the library (one pooled `WorkQueue` for the server's life)."""

    def __init__(self, wq: WorkQueue) -> None:
        self._wq = wq

    def enqueue(self, queue: str, title: str, **options: Any) -> Json:
        outcome = self._wq.enqueue(queue, title, **{k: v for k, v in options.items() if v is not None})
        return outcome.item.to_json() | {"created": outcome.created}

    def claim_next(self, queue: str, *, lease: str, limit: int) -> builtins.list[Json]:
        return [item.to_json() for item in self._wq.claim_next(queue, lease=lease, limit=limit)]

    def progress(self, item_id: int, lease_token: str, *, note: str | None, percent: int | None) -> Json:
        return self._wq.progress(item_id, lease_token=lease_token, note=note, percent=percent).to_json()

    def done(self, item_id: int, lease_token: str, *, result: Any) -> Json:
        return self._wq.done(item_id, lease_token=lease_token, result=result).to_json()

    def fail(self, item_id: int, lease_token: str, *, error: str, retry: bool) -> Json:
        return self._wq.fail(item_id, error, lease_token=lease_token, retry=retry).to_json()

    def queue_status(self, queue: str | None) -> builtins.list[Json]:
        return [count.to_json() for count in self._wq.status(queue)]

    def dlq_list(self, *, queue: str | None, kind: str | None, limit: int) -> builtins.list[Json]:
        from clawnsole.deadletters import DeadLetters

        letters = DeadLetters(self._wq).list(queue=queue, kind=kind, limit=limit)
        return [item.to_json(with_instructions=False) for item in letters]

    def schedule_create(self, name: str, **options: Any) -> Json:
        from clawnsole.schedules.api import Schedules

        return Schedules(self._wq).add(name, **{k: v for k, v in options.items() if v is not None}).to_json()

    def schedule_change(self, name: str, action: str) -> Json:
        from clawnsole.schedules.api import Schedules

        return getattr(Schedules(self._wq), action)(name).to_json()  # type: ignore[no-any-return]

    def schedule_list(self, status: str | None) -> builtins.list[Json]:
        from clawnsole.schedules.api import Schedules

        return [s.to_json(with_instructions=False) for s in Schedules(self._wq).list(status)]


class ApiBackend:
    """The tools through `clawnsole serve`, with the token's scopes and queues."""

    def __init__(self, client: ApiClient) -> None:
        self._api = client

    def enqueue(self, queue: str, title: str, **options: Any) -> Json:
        return self._api.enqueue(queue, title, **options)

    def claim_next(self, queue: str, *, lease: str, limit: int) -> builtins.list[Json]:
        return self._api.claim(queue, lease=lease, limit=limit)

    def progress(self, item_id: int, lease_token: str, *, note: str | None, percent: int | None) -> Json:
        return self._api.progress(item_id, lease_token, note=note, percent=percent)

    def done(self, item_id: int, lease_token: str, *, result: Any) -> Json:
        return self._api.done(item_id, lease_token, result=result)

    def fail(self, item_id: int, lease_token: str, *, error: str, retry: bool) -> Json:
        return self._api.fail(item_id, lease_token, error=error, retry=retry)

    def queue_status(self, queue: str | None) -> builtins.list[Json]:
        return self._api.status(queue)

    def dlq_list(self, *, queue: str | None, kind: str | None, limit: int) -> builtins.list[Json]:
        return self._api.dead_letters(queue=queue, kind=kind, limit=limit)

    def schedule_create(self, name: str, **options: Any) -> Json:
        return self._api.schedule_create(name, **options)

    def schedule_change(self, name: str, action: str) -> Json:
        return self._api.schedule_change(name, action)

    def schedule_list(self, status: str | None) -> builtins.list[Json]:
        return self._api.schedules(status)


# The CLI's exit codes by name: the first word of a tool error, so an agent can branch on it.
_ERROR_NAMES = {2: "invalid_input", 3: "conflict", 4: "not_found", 5: "unavailable", 6: "unauthorized"}


def _refusal(error: Exception) -> Exception:
    """A tool error for a Clawnsole error: one line, its kind first (lease_lost, draining, invalid_input …)."""
    from mcp.server.mcpserver.exceptions import ToolError

    from clawnsole.db.connect import redact
    from clawnsole.errors import ClawnsoleError, LeaseLost, QueueDraining

    if not isinstance(error, ClawnsoleError):
        return error
    name = _ERROR_NAMES.get(error.exit_code, "error")
    if isinstance(error, LeaseLost):
        name = "lease_lost"
    elif isinstance(error, QueueDraining):
        name = "draining"
    return ToolError(f"{name}: {redact(str(error))}")


def build_server(backend: Backend) -> MCPServer:
    """The MCP server with every tool bound to `backend`."""
    from mcp.server.mcpserver import MCPServer

    server: MCPServer = MCPServer(
        "clawnsole",
        instructions="Clawnsole work queue: enqueue, claim and finish work items; manage recurring schedules.",
        # Each refused call would be logged on stderr at INFO; the caller has the error already.
        log_level="WARNING",
    )

    def guarded(call: Any) -> Any:
        from clawnsole.errors import ClawnsoleError

        try:
            return call()
        except ClawnsoleError as error:
            raise _refusal(error) from None

    @server.tool()
    def workqueue_enqueue(
        queue: str,
        title: str,
        instructions: str | None = None,
        kind: str | None = None,
        payload: dict[str, Any] | None = None,
        priority: int | str = 50,
        dedupe_key: str | None = None,
        cooldown: str | None = None,
        run_at: str | None = None,
        delay: str | None = None,
        max_attempts: int = 3,
        backoff: str = "10s",
        lease: str = "300",
        after: list[int] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Json:
        """Add a work item to a queue (idempotent per queue with dedupe_key). Returns the item with `created`
        (false: the dedupe key already held an item, which is returned). Durations: 90, 90s, 15m, 2h, 30d;
        priority: an integer (higher first) or critical/high/normal/low; run_at: ISO 8601 with an offset."""
        options = {
            "instructions": instructions, "kind": kind, "payload": payload, "priority": priority,
            "dedupe_key": dedupe_key, "cooldown": cooldown, "run_at": run_at, "delay": delay,
            "max_attempts": max_attempts, "backoff": backoff, "lease": lease, "after": after, "metadata": metadata,
        }  # fmt: skip
        return guarded(lambda: backend.enqueue(queue, title, **options))  # type: ignore[no-any-return]

    @server.tool()
    def workqueue_claim_next(queue: str, lease: str = "300", limit: int = 1) -> Json:
        """Claim the next due item(s) of a queue. Returns {"items": [...]} (empty: nothing is due); each item
        has its `lease_token`, which progress, done and fail need."""
        return {"items": guarded(lambda: backend.claim_next(queue, lease=lease, limit=limit))}

    @server.tool()
    def workqueue_progress(id: int, lease_token: str, note: str | None = None, percent: int | None = None) -> Json:
        """Record progress (a note, a percent 0-100) on a held item and renew its lease."""
        return guarded(lambda: backend.progress(id, lease_token, note=note, percent=percent))  # type: ignore[no-any-return]

    @server.tool()
    def workqueue_done(id: int, lease_token: str, result: Any = None) -> Json:
        """Finish a held item successfully, storing `result` (any JSON value)."""
        return guarded(lambda: backend.done(id, lease_token, result=result))  # type: ignore[no-any-return]

    @server.tool()
    def workqueue_fail(id: int, lease_token: str, error: str, retry: bool = True) -> Json:
        """Record a failed attempt: retried after a backoff while attempts remain (and retry is true), else the
        item is failed (the dead-letter state)."""
        return guarded(lambda: backend.fail(id, lease_token, error=error, retry=retry))  # type: ignore[no-any-return]

    @server.tool()
    def queue_status(queue: str | None = None) -> Json:
        """Counts per queue and status, the oldest pending age and expired leases: {"counts": [...]}."""
        return {"counts": guarded(lambda: backend.queue_status(queue))}

    @server.tool()
    def dlq_list(queue: str | None = None, kind: str | None = None, limit: int = 100) -> Json:
        """Dead letters (failed items), newest failure first: {"items": [...]} (instructions left out)."""
        return {"items": guarded(lambda: backend.dlq_list(queue=queue, kind=kind, limit=limit))}

    @server.tool()
    def schedule_create(
        name: str,
        queue: str,
        title: str,
        cron: str | None = None,
        every: str | None = None,
        timezone: str | None = None,
        instructions: str | None = None,
        kind: str | None = None,
        payload: dict[str, Any] | None = None,
        priority: int | str = 50,
        max_attempts: int = 3,
        paused: bool = False,
        description: str | None = None,
    ) -> Json:
        """Create a recurring schedule that enqueues an item into `queue` on a cron expression (with an IANA
        timezone) or every interval (e.g. 15m). Returns the schedule."""
        options = {
            "queue": queue, "title": title, "cron": cron, "every": every, "timezone": timezone,
            "instructions": instructions, "kind": kind, "payload": payload, "priority": priority,
            "max_attempts": max_attempts, "paused": paused, "description": description,
        }  # fmt: skip
        return guarded(lambda: backend.schedule_create(name, **options))  # type: ignore[no-any-return]

    @server.tool()
    def schedule_pause(name: str) -> Json:
        """Pause a schedule: it stops firing until resumed."""
        return guarded(lambda: backend.schedule_change(name, "pause"))  # type: ignore[no-any-return]

    @server.tool()
    def schedule_resume(name: str) -> Json:
        """Resume a paused schedule from its next window (windows missed while paused are not caught up)."""
        return guarded(lambda: backend.schedule_change(name, "resume"))  # type: ignore[no-any-return]

    @server.tool()
    def schedule_stop(name: str) -> Json:
        """Delete a schedule permanently (items it already enqueued stay). Returns the schedule as it was."""
        return guarded(lambda: backend.schedule_change(name, "remove"))  # type: ignore[no-any-return]

    @server.tool()
    def schedule_list(status: str | None = None) -> Json:
        """Every schedule by name, optionally only active or paused ones: {"schedules": [...]}."""
        return {"schedules": guarded(lambda: backend.schedule_list(status))}

    return server


def serve_stdio(backend: Backend) -> None:
    """Run the MCP server on stdin/stdout until the client closes it."""
    build_server(backend).run("stdio")
