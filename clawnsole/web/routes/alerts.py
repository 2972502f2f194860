"""Alerts over HTTP, with the routes of the worker app's notes (`/api/alerts/config`, `/api/alerts/history`,
also under `/api/v1/alerts/`), rule edits and a test notice (thin over `clawnsole.alerts`).

Rules and settings apply to every queue, so changing them takes an `operate` token over all queues (403 for a
token limited to some). A limited token reads the rules, and of the history only the notices about its queues.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal, TypeVar, cast

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from clawnsole.alerts import delivery
from clawnsole.alerts.api import AsyncAlerts
from clawnsole.alerts.delivery import HistoryEntry
from clawnsole.errors import InvalidInput
from clawnsole.ops import Op
from clawnsole.queue import AsyncWorkQueue, WorkQueue
from clawnsole.tokens.models import Forbidden
from clawnsole.web.auth import Principal, mutation, queue_of, require

router = APIRouter(tags=["alerts"])
T = TypeVar("T")


class NewRule(BaseModel):
    """A rule to create: the options of `clawnsole alert add`."""

    model_config = ConfigDict(extra="forbid")
    name: str
    conditions: dict[str, Any]
    severity: str = "medium"
    channels: list[str] = []
    group: str | None = None
    description: str | None = None
    enabled: bool = True


class RuleChanges(BaseModel):
    """Fields of a rule to change (those left out stay as they are)."""

    model_config = ConfigDict(extra="forbid")
    conditions: dict[str, Any] | None = None
    severity: str | None = None
    channels: list[str] | None = None
    description: str | None = None
    enabled: bool | None = None


class TestNotice(BaseModel):
    """Send a test notice through these channels (default: the settings' channels, else the configured ones)."""

    model_config = ConfigDict(extra="forbid")
    channels: list[str] = Field(default_factory=list)
    severity: str = "low"


def whole_installation(principal: Principal) -> None:
    """Forbidden unless the token is over every queue (rules and settings apply to all of them)."""
    if principal.queues is not None:
        raise Forbidden("alert rules apply to every queue: this token is limited to some queues")


def visible(entry: HistoryEntry, principal: Principal) -> bool:
    """Whether the token may see this notice: every notice, or only those about its queues."""
    subject = entry.message.get("subject")
    if principal.queues is None:
        return True
    return isinstance(subject, dict) and subject.get("type") == "queue" and principal.can_see(str(subject.get("name")))


async def config(
    principal: Principal = Depends(require("read")), wq: AsyncWorkQueue = Depends(queue_of)
) -> dict[str, Any]:
    """The alert settings and every rule, each with its firing alerts (as `alert list --json`)."""
    alerts = AsyncAlerts(wq)
    settings = await alerts.settings()
    rules = await alerts.list()
    firing = await alerts.alerts(state="firing")
    return {
        "settings": settings.to_json(),
        "rules": [
            r.to_json()
            | {
                "firing": [
                    a.to_json() for a in firing if a.rule == r.name and sees(principal, a.subject_type, a.subject)
                ]
            }
            for r in rules
        ],
    }


def sees(principal: Principal, subject_type: str, subject: str) -> bool:
    """Whether the token may see an alert about this subject: every one, or only those about its queues."""
    return principal.queues is None or (subject_type == "queue" and principal.can_see(subject))


async def history(
    limit: int = 50,
    severity: str | None = None,
    jobId: str | None = None,  # the notes spell it so
    rule: str | None = None,
    principal: Principal = Depends(require("read")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """The notices sent, retrying or given up, newest first (as `alert history --json`); `jobId` keeps the
    notices about that job, queue or schedule name."""
    entries = await wq.run(delivery.history(limit=limit, severity=severity, rule=rule, subject=jobId))
    return {"history": [e.to_json() for e in entries if visible(e, principal)]}


for prefix in ("/api/alerts", "/api/v1/alerts"):
    suffix = "" if prefix == "/api/alerts" else "_v1"
    router.add_api_route(f"{prefix}/config", config, methods=["GET"], operation_id=f"alerts_config{suffix}")
    router.add_api_route(f"{prefix}/history", history, methods=["GET"], operation_id=f"alerts_history{suffix}")


@router.get("/api/v1/alerts/rules/{name}")
async def show_rule(
    name: str, principal: Principal = Depends(require("read")), wq: AsyncWorkQueue = Depends(queue_of)
) -> dict[str, Any]:
    """One rule with its alerts, firing first (as `alert show`)."""
    alerts = AsyncAlerts(wq)
    rule = await alerts.get(name)
    states = [a for a in await alerts.alerts(rule=name) if sees(principal, a.subject_type, a.subject)]
    return rule.to_json() | {"alerts": [a.to_json() for a in states]}


@router.post("/api/v1/alerts/rules", status_code=201)
async def create_rule(
    body: NewRule,
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Create a rule (400 naming `name` when it is taken, as `alert add`)."""
    async with mutation(request, principal, "alert.rule.create", body.name):
        whole_installation(principal)
        rule = await AsyncAlerts(wq).add(body.name, **body.model_dump(exclude={"name"}))
    return rule.to_json()


@router.patch("/api/v1/alerts/rules/{name}")
async def update_rule(
    name: str,
    body: RuleChanges,
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Change fields of a rule (`enabled: false` stops evaluating it)."""
    changes = body.model_dump(exclude_unset=True)
    async with mutation(request, principal, "alert.rule.update", name, {"fields": sorted(changes)}):
        whole_installation(principal)
        rule = await AsyncAlerts(wq).update(name, **changes)
    return rule.to_json()


@router.delete("/api/v1/alerts/rules/{name}")
async def delete_rule(
    name: str,
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Delete a rule and its alerts; answers the rule as it was."""
    async with mutation(request, principal, "alert.rule.delete", name):
        whole_installation(principal)
        rule = await AsyncAlerts(wq).remove(name)
    return rule.to_json()


class _Bridge:
    """What the sync `Sender` needs of a WorkQueue (`run`, `agent`), run from a worker thread on the app's
    async pool: each statement is handed to the event loop and waited for."""

    def __init__(self, queue: AsyncWorkQueue, loop: asyncio.AbstractEventLoop, agent: str) -> None:
        self._queue = queue
        self._loop = loop
        self.agent = agent

    def run(self, op: Op[T]) -> T:
        return asyncio.run_coroutine_threadsafe(self._queue.run(op), self._loop).result()


def _send_tests(bridge: _Bridge, names: Sequence[str], severity: str) -> list[dict[str, Any]]:
    from clawnsole.alerts.channels import Channels

    channels = Channels.from_environment()
    try:
        sender = delivery.Sender(cast(WorkQueue, bridge), channels, agent=bridge.agent)
        wanted = list(dict.fromkeys(names or channels.configured()))
        if not wanted:
            raise InvalidInput(
                "channels", "no channel to test: none is configured on the server, and the settings name none"
            )
        # Each channel name and the severity are checked by `insert_test` before anything is written.
        results = [sender.test(name, severity) for name in wanted]
    finally:
        channels.close()
    return [
        outcome.to_json() | {"ok": outcome.ok, "outbox_id": entry.id, "sent_at": entry.to_json()["sent_at"]}
        for outcome, entry in results
    ]


async def send_tests(wq: AsyncWorkQueue, agent: str, names: Sequence[str], severity: str) -> list[dict[str, Any]]:
    """Send a test notice through each channel (none named: the settings' channels, else the configured
    ones) from this server, by the real path; each channel's outcome as the API answers it."""
    names = list(names) or list((await AsyncAlerts(wq).settings()).channels)
    bridge = _Bridge(wq, asyncio.get_running_loop(), agent)
    return await asyncio.to_thread(_send_tests, bridge, names, severity)


@router.post("/api/v1/alerts/test")
async def send_test(
    body: TestNotice,
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Send a test notice through the real path (outbox, channel, attempt recorded) from this server, with
    the channels configured in its environment; each channel's outcome (`ok` false: the reason in `error`)."""
    async with mutation(request, principal, "alert.test", ",".join(body.channels) or "(settings)") as detail:
        whole_installation(principal)
        results = await send_tests(wq, principal.name, body.channels, body.severity)
        detail["ok"] = all(r["ok"] for r in results)
    return {"results": results}


@router.post("/api/v1/alerts/channels/{channel}/{switch}")
async def switch_channel(
    channel: str,
    switch: Literal["enable", "disable"],
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Let notices go out by a channel (`enable`) or stop them (`disable`); answers the settings. Whether the
    server can reach the channel (its credentials) is the environment's business, as `alert status` shows."""
    async with mutation(request, principal, f"alert.channel.{switch}", channel):
        whole_installation(principal)
        alerts = AsyncAlerts(wq)
        settings = await (alerts.enable_channel(channel) if switch == "enable" else alerts.disable_channel(channel))
    return {"settings": settings.to_json()}
