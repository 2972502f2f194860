"""Alert rules and settings: the checked model, and the `alerts.yaml` file (parsed with line numbers, dumped back).

settings:
  enabled: true
  channels: [slack]
  slack: {channel: "#worker-alerts", username: "Worker Bot", iconEmoji: ":gear:"}
  throttle: {minInterval: 300, maxAlertsPerJobPerHour: 10}
jobFailures:                     # also queueHealth, performance, schedules
  - name: repeated-failures
    description: optional
    enabled: true
    conditions: {consecutiveFailures: 3}
    severity: high               # critical, high, medium, low
    channels: [slack]            # slack, discord, email, webhook

Each rule has exactly one condition (`CONDITIONS`) plus the options that condition takes. A "job" is an item's
kind, else its queue; `jobPattern`, `queuePattern` and `schedulePattern` are regular expressions over the
subject's name that both Python's `re` and PostgreSQL's `~` must accept (the second is checked by the
database when rules are written, see `engine.check_patterns`).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, NoReturn

import yaml

from clawnsole import validate
from clawnsole.errors import InvalidInput

GROUPS = ("jobFailures", "queueHealth", "performance", "schedules")
SEVERITIES = ("critical", "high", "medium", "low")
CHANNELS = ("slack", "discord", "email", "webhook")
RULE_NAME = re.compile(r"[A-Za-z0-9._\-]{1,128}")
# The keys of a rule entry and of settings, in the order `dump` writes them.
RULE_KEYS = ("name", "description", "enabled", "conditions", "severity", "channels")
SETTINGS_KEYS = ("enabled", "channels", "slack", "throttle")
SLACK_KEYS = ("channel", "username", "iconEmoji")
THROTTLE_KEYS = ("minInterval", "maxAlertsPerJobPerHour")
PATTERN_OPTIONS = ("jobPattern", "queuePattern", "schedulePattern")


def _count(value: Any, name: str) -> int:
    return validate.positive_int(value, name, maximum=1_000_000_000)


def _seconds(value: Any, name: str, *, allow_zero: bool = False) -> int | float:
    seconds = validate.duration(value, name, allow_zero=allow_zero)
    # Whole seconds are stored (and exported) as integers, so `timeWindow: 3600` round-trips as written.
    return int(seconds) if seconds.is_integer() else seconds


def _number(value: Any, name: str) -> float | int:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(name, f"must be a number, not {value!r}")
    return value


def _ratio(value: Any, name: str) -> float | int:
    number = _number(value, name)
    if not 0 < number <= 1:
        raise InvalidInput(name, "must be more than 0 and at most 1 (0.8 is 80 %)")
    return number


def _factor(value: Any, name: str) -> float | int:
    number = _number(value, name)
    if not 0 < number <= 1_000_000:
        raise InvalidInput(name, "must be a factor more than 0 (2.0 is twice the usual)")
    return number


def _flag(value: Any, name: str) -> bool:
    if value is not True:
        raise InvalidInput(name, "must be true (leave the rule out, or disable it, to turn it off)")
    return True


def _pattern(value: Any, name: str) -> str:
    validate.text(value, name)
    if not 1 <= len(value) <= 1000:
        raise InvalidInput(name, "must be 1-1000 characters")
    try:
        re.compile(value)
    except re.error as error:
        raise InvalidInput(name, f"{value!r} is not a regular expression ({error})") from None
    return str(value)


# Options a condition may take, and how each is checked.
OPTIONS: dict[str, Callable[[Any, str], Any]] = {
    "jobPattern": _pattern,
    "queuePattern": _pattern,
    "schedulePattern": _pattern,
    "timeWindow": _seconds,
    "minRuns": _count,
    "forSeconds": lambda value, name: _seconds(value, name, allow_zero=True),
}


@dataclass(frozen=True)
class ConditionSpec:
    """One condition: the group it belongs to, how its value is checked, which options it takes."""

    group: str
    check: Callable[[Any, str], Any]
    options: tuple[str, ...]
    # Default of timeWindow when the condition reads a time window and the rule gives none (seconds).
    window: int | None = None


_HOUR = 3600
_DAY = 86400
CONDITIONS: dict[str, ConditionSpec] = {
    # The last N finished attempts of a job failed (looked for within timeWindow, default 7 days).
    "consecutiveFailures": ConditionSpec("jobFailures", _count, ("jobPattern", "timeWindow"), 7 * _DAY),
    # At least N failed attempts of a job within timeWindow (default 1 h).
    "failureCount": ConditionSpec("jobFailures", _count, ("jobPattern", "timeWindow"), _HOUR),
    # At least N attempts of a job ended by an expired lease or a timeout error within timeWindow (1 h).
    "timeouts": ConditionSpec("jobFailures", _count, ("jobPattern", "timeWindow"), _HOUR),
    # At least N dead-lettered (failed) items in a queue.
    "dlqSize": ConditionSpec("queueHealth", _count, ("queuePattern",)),
    # At least N pending items in a queue (its backlog).
    "pendingJobs": ConditionSpec("queueHealth", _count, ("queuePattern",)),
    # A queue's oldest due pending item has waited at least S seconds.
    "oldestPendingSeconds": ConditionSpec("queueHealth", _seconds, ("queuePattern",)),
    # A queue has been paused or draining for at least forSeconds (default 0).
    "paused": ConditionSpec("queueHealth", _flag, ("queuePattern", "forSeconds")),
    # At least N claimed items of a queue whose lease ran out (not yet recovered by a claim).
    "expiredLeases": ConditionSpec("queueHealth", _count, ("queuePattern",)),
    # A queue has due pending items and no live worker serves it.
    "noWorkers": ConditionSpec("queueHealth", _flag, ("queuePattern",)),
    # A job's share of successful attempts within timeWindow (1 h) is below this, over at least minRuns.
    "successRate": ConditionSpec("performance", _ratio, ("jobPattern", "timeWindow", "minRuns"), _HOUR),
    # A job's median run time within timeWindow (1 h) is at least this many times its previous 24 h median.
    "durationIncrease": ConditionSpec("performance", _factor, ("jobPattern", "timeWindow", "minRuns"), _HOUR),
    # A limited queue's claimed items are at least this share of its concurrency limit.
    "concurrencySaturation": ConditionSpec("performance", _ratio, ("queuePattern",)),
    # At least N windows of a schedule were missed within timeWindow (default 24 h).
    "missedRuns": ConditionSpec("schedules", _count, ("schedulePattern", "timeWindow"), _DAY),
    # A schedule's item fired within timeWindow (24 h) is not done S seconds after it fired.
    "notFinishedWithin": ConditionSpec("schedules", _seconds, ("schedulePattern", "timeWindow"), _DAY),
}


def condition_of(conditions: Mapping[str, Any]) -> str:
    """The condition a (checked) conditions mapping names."""
    return next(k for k in conditions if k in CONDITIONS)


def check_conditions(conditions: Any, group: str | None) -> tuple[str, dict[str, Any]]:
    """The group and normalised copy of a conditions mapping; InvalidInput names the offending key."""
    if not isinstance(conditions, Mapping) or not conditions:
        raise InvalidInput("conditions", "must be a mapping with one condition, e.g. {consecutiveFailures: 3}")
    named = [k for k in conditions if k in CONDITIONS]
    if len(named) != 1:
        known = ", ".join(c for c, s in CONDITIONS.items() if group is None or s.group == group)
        if not named:
            unknown = next((k for k in conditions if k not in OPTIONS), None)
            if unknown is not None:
                _unknown_condition(str(unknown), known)
        raise InvalidInput("conditions", f"need exactly one condition ({known}), got {', '.join(named) or 'none'}")
    condition = named[0]
    spec = CONDITIONS[condition]
    if group is not None and spec.group != group:
        raise InvalidInput(f"conditions.{condition}", f"is a {spec.group} condition, not a {group} one")
    # In one order whatever the file's (the condition, then its options as listed): jsonb keeps no key order,
    # so this is the order an export writes.
    checked: dict[str, Any] = {condition: spec.check(conditions[condition], f"conditions.{condition}")}
    for key in conditions:
        if key != condition and key not in spec.options:
            if key in OPTIONS:
                raise InvalidInput(f"conditions.{key}", f"does not apply to {condition} ({', '.join(spec.options)})")
            _unknown_condition(str(key), ", ".join(spec.options))
    for key in spec.options:
        if key in conditions:
            checked[key] = OPTIONS[key](conditions[key], f"conditions.{key}")
    return spec.group, checked


def _unknown_condition(key: str, known: str) -> NoReturn:
    hint = difflib.get_close_matches(key, [*CONDITIONS, *OPTIONS], n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise InvalidInput(f"conditions.{key}", f"is not a condition or option{suggestion}; expected {known}")


def _channels(value: Any, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise InvalidInput(name, f"must be a list of channels ({', '.join(CHANNELS)})")
    for channel in value:
        if channel not in CHANNELS:
            raise InvalidInput(name, f"{channel!r} is not a channel ({', '.join(CHANNELS)})")
    return tuple(dict.fromkeys(value))


def _choice(value: Any, name: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise InvalidInput(name, f"{value!r} is not one of {', '.join(choices)}")
    return str(value)


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(name, "must be true or false")
    return value


def _optional_text(value: Any, name: str, limit: int) -> str | None:
    # An empty string clears an optional field (`alert update NAME --description ''`).
    if value is None or value == "":
        return None
    return validate.optional_text(validate.text(value, name), name, limit)


def rule_name(value: Any) -> str:
    """A rule name: 1-128 letters, digits, '.', '_' or '-'."""
    if not isinstance(value, str) or not RULE_NAME.fullmatch(value):
        raise InvalidInput("name", f"{value!r} is not a rule name (1-128 of letters, digits, '.', '_', '-')")
    return value


@dataclass(frozen=True)
class AlertSettings:
    """The file's `settings:`: whether alerting is on, the channels it may use, Slack's look, the throttle."""

    enabled: bool = True
    channels: tuple[str, ...] = ()
    slack_channel: str | None = None
    slack_username: str | None = None
    slack_icon_emoji: str | None = None
    min_interval_seconds: int = 300
    max_alerts_per_job_per_hour: int = 10

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AlertSettings:
        values = {f.name: row[f.name] for f in fields(cls)}
        return cls(**values | {"channels": tuple(values["channels"])})

    def checked(self) -> AlertSettings:
        """These settings validated; raises InvalidInput naming the first bad field."""
        return replace(
            self,
            enabled=_bool(self.enabled, "settings.enabled"),
            channels=_channels(self.channels, "settings.channels"),
            slack_channel=_optional_text(self.slack_channel, "settings.slack.channel", 200),
            slack_username=_optional_text(self.slack_username, "settings.slack.username", 200),
            slack_icon_emoji=_optional_text(self.slack_icon_emoji, "settings.slack.iconEmoji", 200),
            min_interval_seconds=int(
                _seconds(self.min_interval_seconds, "settings.throttle.minInterval", allow_zero=True)
            ),
            max_alerts_per_job_per_hour=validate.positive_int(
                self.max_alerts_per_job_per_hour, "settings.throttle.maxAlertsPerJobPerHour", maximum=1_000_000
            ),
        )

    def changed_fields(self, other: AlertSettings) -> list[str]:
        """The names of the fields whose values differ from `other`'s."""
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(other, f.name)]

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"channels": list(self.channels)}


@dataclass(frozen=True)
class RuleDef:
    """What a user defines: a named condition in a group, how bad it is, and where its notices go."""

    name: str
    group: str
    conditions: dict[str, Any]
    severity: str = "medium"
    channels: tuple[str, ...] = ()
    description: str | None = None
    enabled: bool = True
    # The line of the file the rule came from, for messages about it (not part of the definition).
    line: int | None = field(default=None, compare=False)

    @property
    def condition(self) -> str:
        """The name of the rule's one condition."""
        return condition_of(self.conditions)

    def checked(self) -> RuleDef:
        """This definition validated and normalised; raises InvalidInput naming the first bad field."""
        group = _choice(self.group, "group", GROUPS) if self.group is not None else None
        checked_group, conditions = check_conditions(self.conditions, group)
        return replace(
            self,
            name=rule_name(self.name),
            group=checked_group,
            conditions=conditions,
            severity=_choice(self.severity, "severity", SEVERITIES),
            channels=_channels(self.channels, "channels"),
            description=_optional_text(self.description, "description", 10_000),
            enabled=_bool(self.enabled, "enabled"),
        )

    def changed_fields(self, other: RuleDef) -> list[str]:
        """The names of the fields whose values differ from `other`'s."""
        return [f.name for f in fields(self) if f.compare and getattr(self, f.name) != getattr(other, f.name)]

    def patterns(self) -> list[str]:
        """The regular expressions among its conditions (PostgreSQL must accept them too)."""
        return [self.conditions[k] for k in PATTERN_OPTIONS if k in self.conditions]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "description": self.description,
            "enabled": self.enabled,
            "conditions": self.conditions,
            "severity": self.severity,
            "channels": list(self.channels),
        }


@dataclass(frozen=True)
class Rule:
    """A rule as stored: its definition and its bookkeeping."""

    id: int
    definition: RuleDef
    last_evaluated_at: datetime | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Rule:
        definition = RuleDef(
            name=row["name"],
            group=row["rule_group"],
            conditions=check_conditions(row["conditions"], row["rule_group"])[1],
            severity=row["severity"],
            channels=tuple(row["channels"]),
            description=row["description"],
            enabled=row["enabled"],
        )
        return cls(
            row["id"], definition, row["last_evaluated_at"], row["last_error"], row["created_at"], row["updated_at"]
        )

    @property
    def name(self) -> str:
        return self.definition.name

    def to_json(self) -> dict[str, Any]:
        return (
            {"id": self.id}
            | self.definition.to_json()
            | {
                "last_evaluated_at": None if self.last_evaluated_at is None else self.last_evaluated_at.isoformat(),
                "last_error": self.last_error,
                "created_at": self.created_at.isoformat(),
                "updated_at": self.updated_at.isoformat(),
            }
        )


@dataclass(frozen=True)
class AlertsFile:
    """The contents of an alerts file: settings when it has a `settings:` section, and its rules in order."""

    settings: AlertSettings | None
    rules: list[RuleDef]


# --- the YAML file ---------------------------------------------------------------------------------------


def _loader() -> type[yaml.SafeLoader]:
    # The schedules file's loader: mappings that remember their lines and refuse a key given twice.
    from clawnsole.schedules.file import _Loader

    return _Loader


def _line(mapping: Any, key: str | None = None) -> int:
    lines: dict[Any, int] = getattr(mapping, "key_lines", {})
    return lines.get(key, getattr(mapping, "line", 1)) if key is not None else getattr(mapping, "line", 1)


def parse(text: str, source: str = "<yaml>") -> AlertsFile:
    """The checked settings and rules of an alerts YAML document; InvalidInput names the line and the rule."""
    try:
        document = yaml.load(text, Loader=_loader())  # a SafeLoader subclass: builds plain data only
    except InvalidInput as error:
        raise InvalidInput(f"{source}: {error.field}", error.message) from None
    except RecursionError:
        raise InvalidInput(source, "is nested too deeply to be an alerts file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "yaml"
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InvalidInput(f"{source}: {where}", f"is not valid YAML ({problem})") from None
    if document is None:
        return AlertsFile(None, [])
    if not isinstance(document, dict):
        raise InvalidInput(source, f"must be a mapping with `settings:` and the rule groups ({', '.join(GROUPS)})")
    for key in document:
        if key != "settings" and key not in GROUPS:
            hint = difflib.get_close_matches(str(key), ["settings", *GROUPS], n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise InvalidInput(f"{source}: line {_line(document, key)}", f"unknown section {key!r}{suggestion}")
    settings = None
    if document.get("settings") is not None:
        settings = _settings(document["settings"], source, _line(document, "settings"))
    rules: list[RuleDef] = []
    seen: dict[str, str] = {}
    for group in GROUPS:
        entries = document.get(group)
        if entries is None:
            continue
        if not isinstance(entries, list):
            raise InvalidInput(f"{source}: line {_line(document, group)}", f"`{group}` must be a list of rules")
        for index, entry in enumerate(entries):
            rule = _rule(entry, group, index, source)
            if rule.name in seen:
                raise InvalidInput(
                    f"{source}: line {rule.line}",
                    f"{group}[{index}]: the name {rule.name!r} is taken by {seen[rule.name]}",
                )
            seen[rule.name] = f"{group}[{index}]"
            rules.append(rule)
    return AlertsFile(settings, rules)


def _settings(section: Any, source: str, line: int) -> AlertSettings:
    if not isinstance(section, dict):
        raise InvalidInput(
            f"{source}: line {line}", "`settings` must be a mapping (enabled, channels, slack, throttle)"
        )
    _known_keys(section, SETTINGS_KEYS, "settings", source)
    slack = section.get("slack") or {}
    throttle = section.get("throttle") or {}
    for name, sub, keys in (("slack", slack, SLACK_KEYS), ("throttle", throttle, THROTTLE_KEYS)):
        if not isinstance(sub, dict):
            raise InvalidInput(
                f"{source}: line {_line(section, name)}", f"settings.{name} must be a mapping ({', '.join(keys)})"
            )
        _known_keys(sub, keys, f"settings.{name}", source)
    defaults = AlertSettings()
    settings = AlertSettings(
        enabled=section.get("enabled", True),
        channels=section.get("channels", ()),
        slack_channel=slack.get("channel"),
        slack_username=slack.get("username"),
        slack_icon_emoji=slack.get("iconEmoji"),
        min_interval_seconds=throttle.get("minInterval", defaults.min_interval_seconds),
        max_alerts_per_job_per_hour=throttle.get("maxAlertsPerJobPerHour", defaults.max_alerts_per_job_per_hour),
    )
    try:
        return settings.checked()
    except InvalidInput as error:
        key = error.field.split(".")[-1]
        holder = slack if key in SLACK_KEYS else throttle if key in THROTTLE_KEYS else section
        raise InvalidInput(f"{source}: line {_line(holder, key)}", f"{error.field}: {error.message}") from None


def _known_keys(mapping: dict[Any, Any], keys: tuple[str, ...], label: str, source: str) -> None:
    for key in mapping:
        if key not in keys:
            hint = difflib.get_close_matches(str(key), keys, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise InvalidInput(f"{source}: line {_line(mapping, key)}", f"{label}: unknown key {key!r}{suggestion}")


def _rule(entry: Any, group: str, index: int, source: str) -> RuleDef:
    if not isinstance(entry, dict):
        raise InvalidInput(f"{source}: {group}[{index}]", "must be a mapping (name, conditions, severity, …)")
    label = f"{group}[{index}]" + (f" ({entry['name']!r})" if isinstance(entry.get("name"), str) else "")
    for key in entry:
        if key not in RULE_KEYS:
            hint = difflib.get_close_matches(str(key), RULE_KEYS, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise InvalidInput(f"{source}: line {_line(entry, key)}", f"{label}: unknown key {key!r}{suggestion}")
    for key in ("name", "conditions", "severity"):
        if entry.get(key) is None:
            raise InvalidInput(f"{source}: line {_line(entry)}", f"{label}: `{key}` is required")
    rule = RuleDef(
        name=entry["name"],
        group=group,
        conditions=entry["conditions"],
        severity=entry["severity"],
        channels=entry.get("channels", ()),
        description=entry.get("description"),
        enabled=entry.get("enabled", True),
        line=_line(entry),
    )
    try:
        return rule.checked()
    except InvalidInput as error:
        key, _, inner = error.field.partition(".")
        line = _line(entry["conditions"], inner) if key == "conditions" and inner else _line(entry, key)
        raise InvalidInput(f"{source}: line {line}", f"{label}: {error.field}: {error.message}") from None


def to_yaml_settings(settings: AlertSettings) -> dict[str, Any]:
    """Settings as the file's `settings:` mapping (empty Slack fields left out)."""
    slack = {
        "channel": settings.slack_channel,
        "username": settings.slack_username,
        "iconEmoji": settings.slack_icon_emoji,
    }
    section: dict[str, Any] = {"enabled": settings.enabled, "channels": list(settings.channels)}
    if any(v is not None for v in slack.values()):
        section["slack"] = {k: v for k, v in slack.items() if v is not None}
    section["throttle"] = {
        "minInterval": settings.min_interval_seconds,
        "maxAlertsPerJobPerHour": settings.max_alerts_per_job_per_hour,
    }
    return section


def to_entry(rule: RuleDef) -> dict[str, Any]:
    """One rule as a YAML entry (keys in file order; an empty description left out)."""
    entry: dict[str, Any] = {"name": rule.name}
    if rule.description is not None:
        entry["description"] = rule.description
    return entry | {
        "enabled": rule.enabled,
        "conditions": dict(rule.conditions),
        "severity": rule.severity,
        "channels": list(rule.channels),
    }


def dump(settings: AlertSettings, rules: list[RuleDef]) -> str:
    """An alerts YAML document that `parse` reads back to the same settings and rules."""
    document: dict[str, Any] = {"settings": to_yaml_settings(settings)}
    for group in GROUPS:
        entries = [to_entry(r) for r in rules if r.group == group]
        if entries:
            document[group] = entries
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
