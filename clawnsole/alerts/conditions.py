"""The conditions: each rule's one condition is one SQL query (`alert_condition_*` in alerts.sql) over the
queue's own tables, returning the subjects for which it holds now. This module picks the statement, fills in
its parameters (the defaults of `rules.CONDITIONS`), and says in one line what a finding means.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clawnsole.alerts.rules import CONDITIONS, RuleDef
from clawnsole.ops import Op, Step

# condition -> (statement, the option holding its subject pattern)
STATEMENTS: dict[str, tuple[str, str]] = {
    "consecutiveFailures": ("alert_condition_consecutive_failures", "jobPattern"),
    "failureCount": ("alert_condition_failures", "jobPattern"),
    "timeouts": ("alert_condition_failures", "jobPattern"),
    "dlqSize": ("alert_condition_dlq_size", "queuePattern"),
    "pendingJobs": ("alert_condition_pending_jobs", "queuePattern"),
    "oldestPendingSeconds": ("alert_condition_oldest_pending", "queuePattern"),
    "paused": ("alert_condition_paused", "queuePattern"),
    "expiredLeases": ("alert_condition_expired_leases", "queuePattern"),
    "noWorkers": ("alert_condition_no_workers", "queuePattern"),
    "successRate": ("alert_condition_success_rate", "jobPattern"),
    "durationIncrease": ("alert_condition_duration_increase", "jobPattern"),
    "concurrencySaturation": ("alert_condition_concurrency_saturation", "queuePattern"),
    "missedRuns": ("alert_condition_missed_runs", "schedulePattern"),
    "notFinishedWithin": ("alert_condition_not_finished", "schedulePattern"),
}
# How many item ids a finding (and so a notice) carries.
MAX_ITEM_IDS = 20


@dataclass(frozen=True)
class Finding:
    """One subject for which a rule's condition holds now, with what a notice about it should show."""

    subject_type: str
    subject: str
    since: datetime | None
    item_ids: list[int]
    details: dict[str, Any]
    # What a new occurrence changes (a newer failure's event id); constant for a level such as a backlog.
    evidence: str | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.subject_type, self.subject)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Finding:
        # Newest first, each id once (an item that failed three times is one item to look at).
        ids = list(dict.fromkeys(int(i) for i in row["item_ids"] or ()))[:MAX_ITEM_IDS]
        return cls(row["subject_type"], row["subject"], row["since"], ids, dict(row["details"]), row["evidence"])


def step(rule: RuleDef, now: datetime | None) -> Step:
    """The statement that evaluates a (checked) rule's condition at `now`."""
    condition = rule.condition
    conditions = rule.conditions
    statement, pattern = STATEMENTS[condition]
    value = conditions[condition]
    return Step(
        statement,
        {
            "threshold": 1 if isinstance(value, bool) else value,
            "pattern": conditions.get(pattern),
            "window": float(conditions.get("timeWindow", CONDITIONS[condition].window or 0)),
            "min_runs": conditions.get("minRuns", 1),
            "for_seconds": float(conditions.get("forSeconds", 0)),
            "timeouts": condition == "timeouts",
            "now": now,
        },
    )


def find(rule: RuleDef, now: datetime | None = None) -> Op[list[Finding]]:
    """Every subject for which the rule's condition holds at `now` (the database clock when None)."""
    rows = yield step(rule, now)
    return [Finding.from_row(r) for r in rows]


def _seconds(value: Any) -> str:
    seconds = float(value)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def summary(rule: RuleDef, finding: Finding) -> str:
    """What a finding means, in one line."""
    d = finding.details
    name = finding.subject
    condition = rule.condition
    c = rule.conditions
    window = _seconds(c.get("timeWindow", CONDITIONS[condition].window or 0))
    lines = {
        "consecutiveFailures": lambda: f"job {name} failed its last {d.get('failures')} attempts",
        "failureCount": lambda: f"job {name} failed {d.get('failures')} times in {window}",
        "timeouts": lambda: f"job {name} timed out {d.get('failures')} times in {window}",
        "dlqSize": lambda: f"queue {name} has {d.get('failed')} dead-lettered items",
        "pendingJobs": lambda: f"queue {name} has {d.get('pending')} pending items",
        "oldestPendingSeconds": lambda: (
            f"queue {name}'s oldest due item has waited {_seconds(d.get('oldest_pending_seconds', 0))}"
        ),
        "paused": lambda: f"queue {name} is {d.get('state')} (for {_seconds(d.get('for_seconds', 0))})",
        "expiredLeases": lambda: f"queue {name} has {d.get('expired_leases')} expired leases",
        "noWorkers": lambda: f"queue {name} has {d.get('pending_due')} due items and no live worker",
        "successRate": lambda: (
            f"job {name} succeeded in {d.get('succeeded')} of {d.get('runs')} attempts in {window} "
            f"({float(d.get('success_rate', 0)):.0%} < {float(c['successRate']):.0%})"
        ),
        "durationIncrease": lambda: (
            f"job {name} runs {d.get('factor')}x slower: median {d.get('median_seconds')}s in {window}, "
            f"{d.get('baseline_median_seconds')}s in the 24h before"
        ),
        "concurrencySaturation": lambda: (
            f"queue {name} has {d.get('claimed')} of {d.get('limit')} concurrent slots claimed"
        ),
        "missedRuns": lambda: f"schedule {name} missed {d.get('missed')} runs in {window}",
        "notFinishedWithin": lambda: (
            f"schedule {name} has {d.get('late')} items not done {_seconds(c['notFinishedWithin'])} after they fired"
        ),
    }
    return lines[condition]()


def command(rule: RuleDef, finding: Finding) -> str:
    """The command to run first about a finding."""
    name = shlex.quote(finding.subject)
    if finding.subject_type == "schedule":
        return f"clawnsole schedule show {name}"
    if finding.subject_type == "queue":
        if rule.condition == "dlqSize":
            return f"clawnsole dlq list --queue {name}"
        return f"clawnsole workqueue status --queue {name}"
    # A job is an item kind, or the queue of items without one.
    where = "--kind" if finding.details.get("by_kind", True) else "--queue"
    return f"clawnsole dlq list {where} {name}"
