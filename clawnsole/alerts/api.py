"""`Alerts` (sync) and `AsyncAlerts` (asyncio): alert rules, settings and evaluation over a work queue.

Both are thin: every method runs one operation of `clawnsole.alerts.ops` through the queue's `run` (one
transaction each), and `evaluate` drives the round of `clawnsole.alerts.engine` (one transaction per rule).

    with WorkQueue(url) as wq:
        alerts = Alerts(wq)
        alerts.add("dlq-jobs", conditions={"dlqSize": 1}, severity="high", channels=["slack"])
        alerts.evaluate(every=30)   # what the daemon runs every --interval
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from clawnsole.alerts import engine
from clawnsole.alerts import ops as alert_ops
from clawnsole.alerts.engine import EvaluationReport
from clawnsole.alerts.ops import AlertState, ImportReport
from clawnsole.alerts.rules import AlertSettings, AlertsFile, Rule, RuleDef, check_conditions
from clawnsole.queue import AsyncWorkQueue, WorkQueue, notify_channel

T = TypeVar("T")


def alert_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel on which new outbox rows are announced (the payload is empty)."""
    return f"{notify_channel(schema)}:alerts"


def definition(
    name: str,
    *,
    conditions: dict[str, Any],
    severity: str = "medium",
    channels: Sequence[str] = (),
    group: str | None = None,
    description: str | None = None,
    enabled: bool = True,
) -> RuleDef:
    """A checked `RuleDef` from keyword options; the group is the one its condition belongs to."""
    if group is None:
        group, _ = check_conditions(conditions, None)
    return RuleDef(
        name=name,
        group=group,
        conditions=conditions,
        severity=severity,
        channels=tuple(channels),
        description=description,
        enabled=enabled,
    ).checked()


def _changes(options: dict[str, Any]) -> dict[str, Any]:
    if options.get("channels") is not None:
        options["channels"] = tuple(options["channels"])
    return options


class Alerts:
    """Alert rules stored in PostgreSQL, and their evaluation, run through an open `WorkQueue`."""

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue

    def settings(self) -> AlertSettings:
        """The alert settings."""
        return self._queue.run(alert_ops.get_settings())

    def update_settings(self, **changes: Any) -> AlertSettings:
        """Change settings (fields of `AlertSettings`; None keeps one)."""
        return self._queue.run(alert_ops.update_settings(changes))

    def enable_channel(self, channel: str) -> AlertSettings:
        """Let notices go out by this channel (slack, discord, email, webhook)."""
        return self._queue.run(alert_ops.set_channel(channel, True))

    def disable_channel(self, channel: str) -> AlertSettings:
        """Stop notices going out by this channel (rules naming it keep it, for when it is enabled again)."""
        return self._queue.run(alert_ops.set_channel(channel, False))

    def add(self, name: str, **options: Any) -> Rule:
        """Create a rule (options as `definition`: conditions, severity, channels, description, enabled)."""
        return self._queue.run(alert_ops.add(definition(name, **options)))

    def get(self, name: str) -> Rule:
        """One rule by name (NotFound when there is none)."""
        return self._queue.run(alert_ops.get(name))

    def list(self) -> builtins.list[Rule]:
        """Every rule, by name."""
        return self._queue.run(alert_ops.list_rules())

    def update(self, name: str, **changes: Any) -> Rule:
        """Change fields of a rule (as `definition`; None keeps one, '' clears the description)."""
        return self._queue.run(alert_ops.update(name, _changes(changes)))

    def enable(self, name: str) -> Rule:
        """Evaluate the rule again."""
        return self.update(name, enabled=True)

    def disable(self, name: str) -> Rule:
        """Stop evaluating the rule (its alerts keep their state until it is enabled again)."""
        return self.update(name, enabled=False)

    def remove(self, name: str) -> Rule:
        """Delete a rule and its alerts."""
        return self._queue.run(alert_ops.remove(name))

    def alerts(self, rule: str | None = None, state: str | None = None) -> builtins.list[AlertState]:
        """The alerts, firing first, optionally of one rule or in one state (firing, resolved)."""
        return self._queue.run(alert_ops.list_alerts(rule, state))

    def apply(
        self,
        rules: Sequence[RuleDef],
        settings: AlertSettings | None = None,
        *,
        prune: bool = False,
        dry_run: bool = False,
        source: str | None = None,
    ) -> ImportReport:
        """Upsert these rules (and settings) in one transaction (see `alert_ops.apply`)."""
        return self._queue.run(alert_ops.apply(rules, settings, prune=prune, dry_run=dry_run, source=source))

    def export(self) -> AlertsFile:
        """The settings and every rule, oldest first (what `apply` takes back unchanged)."""
        # In the order the rules were created: an imported file's own order.
        return AlertsFile(self.settings(), [r.definition for r in sorted(self.list(), key=lambda r: r.id)])

    def evaluate(
        self, *, every: float = 0.0, groups: Sequence[str] | None = None, now: datetime | None = None
    ) -> EvaluationReport:
        """One evaluation round: every rule not evaluated within `every` seconds, each by one evaluator."""
        return self._queue.run_plan(engine.evaluate(every=every, groups=groups, now=now))


class AsyncAlerts:
    """The asyncio twin of `Alerts`, run through an open `AsyncWorkQueue`."""

    def __init__(self, queue: AsyncWorkQueue) -> None:
        self._queue = queue

    async def settings(self) -> AlertSettings:
        """The alert settings."""
        return await self._queue.run(alert_ops.get_settings())

    async def update_settings(self, **changes: Any) -> AlertSettings:
        """Change settings (fields of `AlertSettings`; None keeps one)."""
        return await self._queue.run(alert_ops.update_settings(changes))

    async def enable_channel(self, channel: str) -> AlertSettings:
        """Let notices go out by this channel."""
        return await self._queue.run(alert_ops.set_channel(channel, True))

    async def disable_channel(self, channel: str) -> AlertSettings:
        """Stop notices going out by this channel."""
        return await self._queue.run(alert_ops.set_channel(channel, False))

    async def add(self, name: str, **options: Any) -> Rule:
        """Create a rule (options as `definition`)."""
        return await self._queue.run(alert_ops.add(definition(name, **options)))

    async def get(self, name: str) -> Rule:
        """One rule by name (NotFound when there is none)."""
        return await self._queue.run(alert_ops.get(name))

    async def list(self) -> builtins.list[Rule]:
        """Every rule, by name."""
        return await self._queue.run(alert_ops.list_rules())

    async def update(self, name: str, **changes: Any) -> Rule:
        """Change fields of a rule (as `definition`; None keeps one, '' clears the description)."""
        return await self._queue.run(alert_ops.update(name, _changes(changes)))

    async def enable(self, name: str) -> Rule:
        """Evaluate the rule again."""
        return await self.update(name, enabled=True)

    async def disable(self, name: str) -> Rule:
        """Stop evaluating the rule."""
        return await self.update(name, enabled=False)

    async def remove(self, name: str) -> Rule:
        """Delete a rule and its alerts."""
        return await self._queue.run(alert_ops.remove(name))

    async def alerts(self, rule: str | None = None, state: str | None = None) -> builtins.list[AlertState]:
        """The alerts, firing first, optionally of one rule or in one state."""
        return await self._queue.run(alert_ops.list_alerts(rule, state))

    async def apply(
        self,
        rules: Sequence[RuleDef],
        settings: AlertSettings | None = None,
        *,
        prune: bool = False,
        dry_run: bool = False,
        source: str | None = None,
    ) -> ImportReport:
        """Upsert these rules (and settings) in one transaction (see `alert_ops.apply`)."""
        return await self._queue.run(alert_ops.apply(rules, settings, prune=prune, dry_run=dry_run, source=source))

    async def export(self) -> AlertsFile:
        """The settings and every rule, oldest first (what `apply` takes back unchanged)."""
        return AlertsFile(await self.settings(), [r.definition for r in sorted(await self.list(), key=lambda r: r.id)])

    async def evaluate(
        self, *, every: float = 0.0, groups: Sequence[str] | None = None, now: datetime | None = None
    ) -> EvaluationReport:
        """One evaluation round (see `Alerts.evaluate`)."""
        return await self._queue.run_plan(engine.evaluate(every=every, groups=groups, now=now))


__all__ = ["Alerts", "AsyncAlerts", "alert_channel", "definition"]
