"""The evaluation round: each enabled rule's condition is run, and its alerts fire, stay, or resolve.

A round is a *plan* (like the scheduler's tick): a generator of operations, each rule evaluated in a
transaction of its own so one broken rule never undoes another's work. A rule's transaction

1. locks the rule row `FOR UPDATE SKIP LOCKED`, only if it is enabled and was not evaluated within `every`
   seconds — so any number of evaluators (daemons, workers with alerts on) share the rules, each rule
   evaluated by one of them per interval, in id order;
2. runs its condition (one query, `conditions`), and locks the rule's alerts in id order;
3. decides for each subject (`decide`, pure): an alert *fires* when its condition becomes true and
   *resolves* when it stops being true; while it stays true a new occurrence (a newer failure) asks for a
   new notice, which the throttle holds back before `minInterval` since the last one and beyond
   `maxAlertsPerJobPerHour` fired notices about one subject (across rules) — held-back notices are counted
   and the next notice says how many. A resolve is announced only when its firing was;
4. writes the alerts and, for every notice, one outbox row per channel (the rule's channels that settings
   enable), and records the evaluation — all in that one transaction, so a notice exists exactly when the
   state change it announces does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from psycopg.types.json import Jsonb

from clawnsole.alerts import conditions
from clawnsole.alerts.conditions import Finding
from clawnsole.alerts.ops import get_settings
from clawnsole.alerts.rules import CHANNELS, GROUPS, AlertSettings, Rule
from clawnsole.errors import ClawnsoleError, Conflict, InvalidInput
from clawnsole.ops import Op, Plan, Step

T = TypeVar("T")
Row = dict[str, Any]

HOUR = timedelta(hours=1)
# The columns of `alerts` a decision sets.
STATE_COLUMNS = (
    "state",
    "fired_at",
    "resolved_at",
    "notified",
    "last_sent_at",
    "sent_count",
    "hour_started_at",
    "hour_sent",
    "suppressed",
    "last_values",
    "evidence",
    "sent_evidence",
)


@dataclass(frozen=True)
class Decision:
    """What one round does to one alert: its new columns, and the notice to send (None: none)."""

    values: dict[str, Any]
    notice: str | None
    # How many held-back notices the notice tells of.
    told_suppressed: int
    # fired, resolved, updated (a new occurrence sent), suppressed (held back), firing (nothing new).
    change: str


def _fresh(now: datetime) -> dict[str, Any]:
    return {
        "state": "firing",
        "fired_at": now,
        "resolved_at": None,
        "notified": False,
        "last_sent_at": None,
        "sent_count": 0,
        "hour_started_at": None,
        "hour_sent": 0,
        "suppressed": 0,
        "last_values": None,
        "evidence": None,
        "sent_evidence": None,
    }


def _sent(values: dict[str, Any], now: datetime, *, fired: bool) -> dict[str, Any]:
    """`values` after a notice went out at `now` (a fired one counts against the subject's hour)."""
    sent = values | {"last_sent_at": now, "sent_count": values["sent_count"] + 1, "suppressed": 0}
    if fired:
        started = values["hour_started_at"]
        if started is None or now - started >= HOUR:
            sent |= {"hour_started_at": now, "hour_sent": 1}
        else:
            sent |= {"hour_sent": values["hour_sent"] + 1}
    return sent


def decide(
    current: Mapping[str, Any] | None,
    finding: Finding | None,
    snapshot: dict[str, Any] | None,
    *,
    now: datetime,
    settings: AlertSettings,
    hour_sent: int,
) -> Decision | None:
    """The change one round makes to one alert (None: nothing to store).

    `current` is the stored alert (None: this rule never fired for the subject), `finding` what the condition
    found now (None: it no longer holds), `snapshot` what to remember of the finding, `hour_sent` the fired
    notices about the subject in its current hour window across every rule.
    """
    if finding is None:
        if current is None or current["state"] != "firing":
            return None
        values = {c: current[c] for c in STATE_COLUMNS} | {"state": "resolved", "resolved_at": now}
        if not current["notified"]:
            # Never announced (held back by the throttle): resolving it says nothing either. What was held
            # back stays counted for the next notice.
            return Decision(values, None, 0, "resolved")
        told = int(current["suppressed"])
        return Decision(_sent(values, now, fired=False), "resolved", told, "resolved")
    new_episode = current is None or current["state"] != "firing"
    values = _fresh(now) if current is None else {c: current[c] for c in STATE_COLUMNS}
    if new_episode:
        values |= {"state": "firing", "fired_at": now, "resolved_at": None, "notified": False}
    new_occurrence = new_episode or finding.evidence != values["evidence"]
    values |= {"last_values": snapshot, "evidence": finding.evidence}
    wanted = not values["notified"] or finding.evidence != values["sent_evidence"]
    if not wanted:
        return Decision(values, None, 0, "firing")
    last = values["last_sent_at"]
    if (last is None or now - last >= timedelta(seconds=settings.min_interval_seconds)) and (
        hour_sent < settings.max_alerts_per_job_per_hour
    ):
        told = int(values["suppressed"])
        change = "fired" if not values["notified"] else "updated"
        sent = _sent(values, now, fired=True) | {"notified": True, "sent_evidence": finding.evidence}
        return Decision(sent, "fired", told, change)
    if new_occurrence:
        values["suppressed"] = int(values["suppressed"]) + 1
    return Decision(values, None, 0, "suppressed" if new_occurrence else "firing")


@dataclass(frozen=True)
class Change:
    """What a round did to one alert."""

    rule: str
    subject_type: str
    subject: str
    change: str
    notice: str | None
    channels: list[str]
    suppressed: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RuleEvaluation:
    """One rule's evaluation in a round: the subjects it holds for, the changes made, or its error."""

    rule: str
    firing: int
    changes: list[Change] = field(default_factory=list)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "firing": self.firing,
            "changes": [c.to_json() for c in self.changes],
            "error": self.error,
        }


@dataclass(frozen=True)
class EvaluationReport:
    """What a round did: the rules it evaluated (the others were due for another evaluator, or not due)."""

    enabled: bool
    rules: list[RuleEvaluation]

    @property
    def notices(self) -> int:
        """Notices written to the outbox (one per alert, whatever its number of channels)."""
        return sum(1 for r in self.rules for c in r.changes if c.notice is not None)

    def to_json(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "notices": self.notices, "rules": [r.to_json() for r in self.rules]}


def _channels(rule: Rule, settings: AlertSettings) -> list[str]:
    """Where a rule's notices go: its channels (all of the settings' when it names none) that settings enable."""
    wanted = set(rule.definition.channels or settings.channels)
    return [c for c in CHANNELS if c in wanted and c in settings.channels]


def _snapshot(rule: Rule, finding: Finding) -> dict[str, Any]:
    """What an alert remembers of its finding: enough for the resolved notice."""
    return {
        "summary": conditions.summary(rule.definition, finding),
        "command": conditions.command(rule.definition, finding),
        "details": finding.details,
        "item_ids": finding.item_ids,
        "started_at": None if finding.since is None else finding.since.isoformat(),
    }


def message(rule: Rule, alert: Mapping[str, Any], kind: str, told_suppressed: int) -> dict[str, Any]:
    """The outbox row's message for a notice about `alert` (see the migration's outbox comment)."""
    snapshot = alert["last_values"] or {}
    summary = snapshot.get("summary") or f"{alert['subject_type']} {alert['subject']}"
    details = dict(snapshot.get("details") or {})
    if snapshot.get("started_at") is not None:
        details["started_at"] = snapshot["started_at"]
    return {
        "rule": rule.name,
        "description": rule.definition.description,
        "severity": rule.definition.severity,
        "state": kind,
        "subject": {"type": alert["subject_type"], "name": alert["subject"]},
        "summary": summary if kind == "fired" else f"resolved: {summary} no longer holds",
        "details": details,
        "since": alert["fired_at"].isoformat(),
        "item_ids": list(snapshot.get("item_ids") or []),
        "command": snapshot.get("command"),
        "suppressed": told_suppressed,
    }


def list_due(*, every: float, groups: Sequence[str] | None, now: datetime | None) -> Op[list[int]]:
    """Ids of the enabled rules not evaluated within `every` seconds, in id order."""
    rows = yield Step("alert_rule_list_due", {"every": every, "groups": groups, "now": now})
    return [int(r["id"]) for r in rows]


def _key(subject_type: str, subject: str) -> str:
    return f"{subject_type}:{subject}"


def evaluate_rule(rule_id: int, *, every: float = 0.0, now: datetime | None = None) -> Op[RuleEvaluation | None]:
    """Evaluate one rule in one transaction (see the module doc); None when it is not due or another
    evaluator holds it."""
    rows = yield Step("alert_rule_lock_due", {"id": rule_id, "every": every, "now": now})
    if not rows:
        return None
    rule = Rule.from_row(rows[0])
    settings = AlertSettings.from_row(rows[0]["settings"])
    at: datetime = rows[0]["now"]
    findings = {f.key: f for f in (yield from conditions.find(rule.definition, at))}
    alerts = {(r["subject_type"], r["subject"]): r for r in (yield Step("alert_state_lock", {"rule_id": rule.id}))}
    hour_sent: dict[tuple[str, str], int] = {}
    if findings:
        keys = sorted(findings)
        yield Step("alert_subject_lock", {"keys": [_key(*k) for k in keys]})
        sent_rows = yield Step(
            "alert_subject_hour_sent",
            {"types": [k[0] for k in keys], "subjects": [k[1] for k in keys], "now": at},
        )
        hour_sent = {(r["subject_type"], r["subject"]): int(r["sent"]) for r in sent_rows}
    channels = _channels(rule, settings)
    changes: list[Change] = []
    for key in sorted(set(findings) | set(alerts)):
        finding = findings.get(key)
        current = alerts.get(key)
        snapshot = None if finding is None else _snapshot(rule, finding)
        decision = decide(current, finding, snapshot, now=at, settings=settings, hour_sent=hour_sent.get(key, 0))
        if decision is None:
            continue
        stored = yield from _store(rule, key, current, decision, at)
        if decision.notice is not None and channels:
            yield Step(
                "alert_outbox_insert",
                {
                    "alert_id": stored["id"],
                    "channels": channels,
                    "kind": decision.notice,
                    "message": Jsonb(message(rule, stored, decision.notice, decision.told_suppressed)),
                },
            )
        if decision.change != "firing":
            changes.append(
                Change(
                    rule.name,
                    key[0],
                    key[1],
                    decision.change,
                    decision.notice,
                    channels if decision.notice is not None else [],
                    decision.told_suppressed if decision.notice is not None else int(decision.values["suppressed"]),
                )
            )
    yield from _evaluated(rule.id, None, at)
    return RuleEvaluation(rule.name, len(findings), changes)


def _store(rule: Rule, key: tuple[str, str], current: Row | None, decision: Decision, at: datetime) -> Op[Row]:
    values = decision.values | {"last_values": Jsonb(decision.values["last_values"]), "now": at}
    if current is None:
        rows = yield Step("alert_insert", values | {"rule_id": rule.id, "subject_type": key[0], "subject": key[1]})
    else:
        rows = yield Step("alert_save", values | {"id": current["id"], "expected_state": current["state"]})
    if not rows:
        # The rule's row lock keeps other evaluators out, so only a change outside the engine gets here.
        raise Conflict(f"alert {rule.name!r} for {key[0]} {key[1]!r} changed during its evaluation")
    return rows[0]


def _evaluated(rule_id: int, error: str | None, at: datetime | None) -> Op[None]:
    rows = yield Step("alert_rule_evaluated", {"id": rule_id, "error": error, "now": at})
    if not rows:
        raise Conflict(f"alert rule {rule_id} vanished during its evaluation")


def record_error(
    rule_id: int, error: str, *, every: float = 0.0, now: datetime | None = None
) -> Op[RuleEvaluation | None]:
    """After a rule's evaluation failed in the database (its transaction rolled back): record the error and
    count it as evaluated, so a broken rule is retried next interval rather than on every pass."""
    rows = yield Step("alert_rule_lock_due", {"id": rule_id, "every": every, "now": now})
    if not rows:
        return None
    yield from _evaluated(rule_id, error, rows[0]["now"])
    return RuleEvaluation(rows[0]["name"], 0, [], error)


def evaluate(
    *, every: float = 0.0, groups: Sequence[str] | None = None, now: datetime | None = None
) -> Plan[EvaluationReport]:
    """One round over every due rule (optionally only some groups), each in its own transaction.

    Safe from any number of processes at once: a rule another evaluator holds is skipped, and with `every`
    (the evaluators' interval) one evaluated within it is not evaluated again.
    """
    if every < 0:
        raise InvalidInput("every", "must be zero or more seconds")
    for group in groups or ():
        if group not in GROUPS:
            raise InvalidInput("group", f"{group!r} is not one of {', '.join(GROUPS)}")
    settings: AlertSettings = yield get_settings()
    if not settings.enabled:
        return EvaluationReport(False, [])
    due: list[int] = yield list_due(every=every, groups=None if groups is None else list(groups), now=now)
    results: list[RuleEvaluation] = []
    for rule_id in due:
        try:
            result: RuleEvaluation | None = yield evaluate_rule(rule_id, every=every, now=now)
        except ClawnsoleError as failure:
            result = yield record_error(rule_id, str(failure), every=every, now=now)
        if result is not None:
            results.append(result)
    return EvaluationReport(True, results)
