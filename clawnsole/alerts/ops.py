"""Every operation on alert rules and settings once, as a generator of named statements (sans-I/O), like
`clawnsole.ops`; `Alerts` / `AsyncAlerts` run each in one transaction. The evaluation round is in `engine`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from clawnsole.alerts.rules import CHANNELS, AlertSettings, Rule, RuleDef, check_conditions
from clawnsole.errors import InvalidInput, NotFound
from clawnsole.ops import Op, Step

_UPDATABLE = {f.name for f in fields(RuleDef) if f.compare} - {"name"}


@dataclass(frozen=True)
class ImportReport:
    """What an import did (or, with dry_run, would do): rules by name, and the settings fields it changed."""

    created: list[str]
    updated: dict[str, list[str]]
    unchanged: list[str]
    removed: list[str]
    settings: list[str]
    dry_run: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AlertState:
    """One alert: a rule's condition about one subject, firing or resolved, with its throttle bookkeeping."""

    id: int
    rule: str
    severity: str
    subject_type: str
    subject: str
    state: str
    fired_at: datetime
    resolved_at: datetime | None
    notified: bool
    last_sent_at: datetime | None
    sent_count: int
    suppressed: int
    last_values: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AlertState:
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("fired_at", "resolved_at", "last_sent_at"):
            data[key] = None if data[key] is None else data[key].isoformat()
        return data


def check_patterns(rules: Sequence[RuleDef], source: str | None = None) -> Op[None]:
    """Refuse rules whose patterns PostgreSQL's `~` does not accept (Python's `re` already has)."""
    patterns = sorted({p for r in rules for p in r.patterns()})
    if not patterns:
        return
    rows = yield Step("alert_pattern_check", {"patterns": patterns})
    if rows:
        bad = {r["pattern"]: r["error"] for r in rows}
        rule = next(r for r in rules if any(p in bad for p in r.patterns()))
        pattern = next(p for p in rule.patterns() if p in bad)
        where = f"{source}: line {rule.line}: " if source is not None and rule.line is not None else ""
        raise InvalidInput(f"{where}rule {rule.name!r} pattern", f"{pattern!r}: PostgreSQL refuses it ({bad[pattern]})")


def _rule_params(rule: RuleDef, now: datetime | None) -> dict[str, Any]:
    return {
        "name": rule.name,
        "group": rule.group,
        "description": rule.description,
        "enabled": rule.enabled,
        "conditions": Jsonb(rule.conditions),
        "severity": rule.severity,
        "channels": list(rule.channels),
        "now": now,
    }


def get_settings() -> Op[AlertSettings]:
    """The alert settings (the migration stores the defaults)."""
    rows = yield Step("alert_settings_get", {})
    return AlertSettings.from_row(rows[0])


def put_settings(settings: AlertSettings, *, now: datetime | None = None) -> Op[AlertSettings]:
    """Replace the settings with these (checked)."""
    checked = settings.checked()
    rows = yield Step("alert_settings_put", asdict(checked) | {"channels": list(checked.channels), "now": now})
    return AlertSettings.from_row(rows[0])


def update_settings(changes: Mapping[str, Any], *, now: datetime | None = None) -> Op[AlertSettings]:
    """Change some settings (None leaves a field as it is). The settings row is locked before it is read, so
    a change made meanwhile by another operator is kept, not written over with the copy read before it."""
    rows = yield Step("alert_settings_lock", {})
    current = AlertSettings.from_row(rows[0])
    updates = {k: v for k, v in changes.items() if v is not None}
    unknown = set(updates) - {f.name for f in fields(AlertSettings)}
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "is not an alert setting")
    return (yield from put_settings(replace(current, **updates), now=now))


def set_channel(channel: str, enabled: bool, *, now: datetime | None = None) -> Op[AlertSettings]:
    """Let notices go out by `channel` (enabled) or stop them (the settings gate every rule's channels);
    the settings row is locked, so two operators switching different channels at once both count."""
    if channel not in CHANNELS:
        raise InvalidInput("channel", f"{channel!r} is not a channel ({', '.join(CHANNELS)})")
    rows = yield Step("alert_settings_lock", {})
    current = AlertSettings.from_row(rows[0])
    if (channel in current.channels) == enabled:
        return current
    others = tuple(c for c in current.channels if c != channel)
    return (yield from put_settings(replace(current, channels=(*others, channel) if enabled else others), now=now))


def add(rule: RuleDef, *, now: datetime | None = None) -> Op[Rule]:
    """Create a rule."""
    checked = rule.checked()
    yield from check_patterns([checked])
    rows = yield Step("alert_rule_insert", _rule_params(checked, now))
    if not rows:
        raise InvalidInput("name", f"an alert rule named {checked.name!r} already exists")
    return Rule.from_row(rows[0])


def get(name: str) -> Op[Rule]:
    """One rule by name."""
    rows = yield Step("alert_rule_get", {"name": name})
    if not rows:
        raise NotFound(f"no alert rule named {name!r}")
    return Rule.from_row(rows[0])


def list_rules() -> Op[list[Rule]]:
    """Every rule, by name."""
    rows = yield Step("alert_rule_list", {})
    return [Rule.from_row(r) for r in rows]


def _locked(name: str) -> Op[Rule]:
    rows = yield Step("alert_rule_lock", {"name": name})
    if not rows:
        raise NotFound(f"no alert rule named {name!r}")
    return Rule.from_row(rows[0])


def _rewrite(current: Rule, new: RuleDef, now: datetime | None) -> Op[Rule]:
    if not new.changed_fields(current.definition):
        return current
    yield from check_patterns([new])
    rows = yield Step("alert_rule_update", _rule_params(new, now) | {"id": current.id})
    if not rows:
        raise NotFound(f"no alert rule named {new.name!r}")
    return Rule.from_row(rows[0])


def changed_definition(current: RuleDef, changes: Mapping[str, Any]) -> RuleDef:
    """`current` with `changes` applied (None leaves a field as is). New conditions replace the old ones,
    and move the rule to the group they belong to unless `group` is given too."""
    updates = {k: v for k, v in changes.items() if v is not None}
    unknown = set(updates) - _UPDATABLE
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "is not a field of an alert rule")
    if "conditions" in updates and "group" not in updates:
        updates["group"], _ = check_conditions(updates["conditions"], None)
    return replace(current, **updates).checked()


def update(name: str, changes: Mapping[str, Any], *, now: datetime | None = None) -> Op[Rule]:
    """Change some fields of a rule (see `changed_definition`)."""
    current = yield from _locked(name)
    return (yield from _rewrite(current, changed_definition(current.definition, changes), now))


def remove(name: str) -> Op[Rule]:
    """Delete a rule and its alerts (notices already queued are still delivered)."""
    rows = yield Step("alert_rule_delete", {"name": name})
    if not rows:
        raise NotFound(f"no alert rule named {name!r}")
    return Rule.from_row(rows[0])


def list_alerts(rule: str | None = None, state: str | None = None) -> Op[list[AlertState]]:
    """The alerts, firing first, optionally of one rule or in one state (firing, resolved)."""
    if state is not None and state not in ("firing", "resolved"):
        raise InvalidInput("state", f"{state!r} is not one of firing, resolved")
    rows = yield Step("alert_list", {"rule": rule, "state": state})
    return [AlertState.from_row(r) for r in rows]


def apply(
    rules: Sequence[RuleDef],
    settings: AlertSettings | None = None,
    *,
    prune: bool = False,
    dry_run: bool = False,
    source: str | None = None,
    now: datetime | None = None,
) -> Op[ImportReport]:
    """Make the stored rules (and settings, when given) match these, all or nothing, by rule name.

    Unchanged rules are not touched. With `prune`, rules not named are removed. With `dry_run`, nothing is
    written and the report says what would be. A rule PostgreSQL cannot evaluate (its pattern) is refused
    before anything is written, naming the rule and, with `source`, its line.
    """
    checked: list[RuleDef] = []
    for index, rule in enumerate(rules):
        try:
            checked.append(rule.checked())
        except InvalidInput as error:
            raise InvalidInput(f"rules[{index}] ({rule.name!r}) {error.field}", error.message) from None
    names = [r.name for r in checked]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise InvalidInput("name", f"{twice[0]!r} is defined more than once")
    new_settings = None if settings is None else settings.checked()
    yield from check_patterns(checked, source)
    yield Step("alert_import_lock", {})
    existing = {r.name: r for r in (yield from list_rules())}
    current_settings = yield from get_settings()
    created: list[str] = []
    updated: dict[str, list[str]] = {}
    unchanged: list[str] = []
    for rule in checked:
        current = existing.get(rule.name)
        if current is None:
            created.append(rule.name)
            if not dry_run:
                rows = yield Step("alert_rule_insert", _rule_params(rule, now))
                if not rows:
                    raise InvalidInput("name", f"an alert rule named {rule.name!r} already exists")
            continue
        changed = rule.changed_fields(current.definition)
        if not changed:
            unchanged.append(rule.name)
            continue
        updated[rule.name] = changed
        if not dry_run:
            locked = yield from _locked(rule.name)
            yield from _rewrite(locked, rule, now)
    removed = sorted(set(existing) - set(names)) if prune else []
    changed_settings = [] if new_settings is None else new_settings.changed_fields(current_settings)
    if not dry_run:
        for name in removed:
            yield from remove(name)
        if new_settings is not None and changed_settings:
            yield from put_settings(new_settings, now=now)
    return ImportReport(created, updated, unchanged, removed, changed_settings, dry_run)
