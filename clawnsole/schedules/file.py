"""The schedules YAML file: parsing (every error names its line and entry) and writing it back.

schedules:
  - name: hourly-pr-review
    queue: dev-team
    title: Review open PRs
    instructions: Review and ship any safe PRs. Leave comments if blocked.
    schedule: "0 * * * *"      # or  every: 15m
    timezone: UTC
    enabled: true              # false: imported paused
    priority: 50
    description: optional
    input: {any: json}         # the item's payload

The seed worker app's entries are read too: `jobId: maintenance.cleanup` with `input: {retentionDays: 30}` is
the system schedule `--system cleanup --older-than 30d` (named `maintenance.cleanup` unless `name` says
otherwise); see `clawnsole.schedules.system.seed_fields`.
"""

from __future__ import annotations

import difflib
from typing import Any

import yaml

from clawnsole.errors import InvalidInput
from clawnsole.schedules import fire_times
from clawnsole.schedules.models import ScheduleDef
from clawnsole.schedules.system import seed_fields

# Keys of one entry, in the order `dump` writes them.
KEYS = (
    "name",
    "queue",
    "title",
    "instructions",
    "kind",
    "schedule",
    "every",
    "timezone",
    "enabled",
    "priority",
    "max_attempts",
    "catch_up",
    "overlap",
    "description",
    "input",
)
_REQUIRED = ("name", "queue", "title")
# Keys of the seed's scheduler.yaml read besides KEYS (never written back: export writes what they became).
SEED_KEYS = ("jobId",)


class _Mapping(dict[Any, Any]):
    """A YAML mapping that remembers the line it starts on and the line of each key."""

    line: int
    key_lines: dict[Any, int]


class _Loader(yaml.SafeLoader):
    """SafeLoader whose mappings know their lines and reject a key given twice."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Mapping:
    mapping = _Mapping()
    mapping.line = node.start_mark.line + 1
    mapping.key_lines = {}
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if isinstance(key, list | dict):
            # `? [a, b]: 1` builds a list key, which no dict can hold (a TypeError, not a YAML error).
            raise InvalidInput(f"line {line}", "a key must be text, not a list or a mapping")
        if key in mapping.key_lines:
            raise InvalidInput(f"line {line}", f"key {key!r} is given twice in one mapping")
        mapping.key_lines[key] = line
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse(text: str, source: str = "<yaml>") -> list[ScheduleDef]:
    """The checked definitions in a schedules YAML document; InvalidInput names the line and entry."""
    try:
        document = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: builds plain data only
    except InvalidInput as error:
        raise InvalidInput(f"{source}: {error.field}", error.message) from None
    except RecursionError:
        # PyYAML builds nested collections recursively: a few hundred levels exhaust the stack.
        raise InvalidInput(source, "is nested too deeply to be a schedules file") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "yaml"
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise InvalidInput(f"{source}: {where}", f"is not valid YAML ({problem})") from None
    if document is None:
        document = _Mapping(schedules=[])
        document.line, document.key_lines = 1, {}
    if not isinstance(document, _Mapping):
        raise InvalidInput(source, "must be a mapping with a `schedules:` list")
    extra = sorted(set(document) - {"schedules"}, key=str)
    if extra:
        raise InvalidInput(
            f"{source}: line {document.key_lines[extra[0]]}", f"unknown key {extra[0]!r} (expected `schedules:`)"
        )
    entries = document.get("schedules")
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise InvalidInput(f"{source}: line {document.key_lines.get('schedules', 1)}", "`schedules` must be a list")
    definitions: list[ScheduleDef] = []
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries):
        definition = _entry(entry, index, source)
        if definition.name in seen:
            assert isinstance(entry, _Mapping)
            raise InvalidInput(
                f"{source}: line {entry.line}",
                f"schedules[{index}]: the name {definition.name!r} is taken by schedules[{seen[definition.name]}]",
            )
        seen[definition.name] = index
        definitions.append(definition)
    return definitions


def _entry(entry: Any, index: int, source: str) -> ScheduleDef:
    if not isinstance(entry, _Mapping):
        raise InvalidInput(f"{source}: schedules[{index}]", "must be a mapping (name, queue, title, schedule, …)")
    label = f"schedules[{index}]" + (f" ({entry['name']!r})" if isinstance(entry.get("name"), str) else "")
    for key in entry:
        if key not in KEYS and key not in SEED_KEYS:
            hint = difflib.get_close_matches(str(key), KEYS, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise InvalidInput(f"{source}: line {entry.key_lines[key]}", f"{label}: unknown key {key!r}{suggestion}")

    def line_of(key: str) -> int:
        return entry.key_lines.get(key, entry.line)

    seeded = _seeded(entry, label, source, line_of)
    for key in _REQUIRED:
        if entry.get(key) is None and seeded.get(key) is None:
            raise InvalidInput(f"{source}: line {entry.line}", f"{label}: `{key}` is required")

    def get(key: str, default: Any = None) -> Any:
        value = entry.get(key)
        return seeded.get(key, default) if value is None else value

    enabled = entry.get("enabled", True)
    if not isinstance(enabled, bool):
        raise InvalidInput(f"{source}: line {line_of('enabled')}", f"{label}: `enabled` must be true or false")
    timezone = entry.get("timezone")
    if timezone is not None and not isinstance(timezone, str):
        raise InvalidInput(f"{source}: line {line_of('timezone')}", f"{label}: timezone: must be text such as UTC")
    payload = seeded["payload"] if seeded else entry.get("input")
    if payload is not None and not isinstance(payload, dict):
        raise InvalidInput(f"{source}: line {line_of('input')}", f"{label}: `input` must be a mapping")
    try:
        when = fire_times.timing(entry.get("schedule"), timezone, entry.get("every"))
        return ScheduleDef(
            name=get("name"),
            queue=get("queue"),
            title=get("title"),
            cron=when.cron,
            timezone=when.timezone,
            interval_seconds=when.interval_seconds,
            instructions=entry.get("instructions"),
            kind=get("kind"),
            payload=dict(payload or {}),
            priority=entry.get("priority", 50),
            max_attempts=entry.get("max_attempts", 3),
            catch_up=entry.get("catch_up", "latest"),
            overlap=entry.get("overlap", "allow"),
            status="active" if enabled else "paused",
            description=entry.get("description"),
        ).checked()
    except InvalidInput as error:
        key = {"cron": "schedule", "interval_seconds": "every", "payload": "input"}.get(error.field, error.field)
        raise InvalidInput(f"{source}: line {line_of(key)}", f"{label}: {key}: {error.message}") from None


def _seeded(entry: _Mapping, label: str, source: str, line_of: Any) -> dict[str, Any]:
    """The fields a seed entry's `jobId` (and its `input`) stand for; empty for an entry without one."""
    job_id = entry.get("jobId")
    if job_id is None:
        return {}
    if not isinstance(job_id, str):
        raise InvalidInput(f"{source}: line {line_of('jobId')}", f"{label}: `jobId` must be text")
    seed_input = entry.get("input")
    if seed_input is not None and not isinstance(seed_input, dict):
        raise InvalidInput(f"{source}: line {line_of('input')}", f"{label}: `input` must be a mapping")
    try:
        return seed_fields(job_id, seed_input)
    except InvalidInput as error:
        key = "jobId" if error.field == "jobId" else "input"
        raise InvalidInput(f"{source}: line {line_of(key)}", f"{label}: {error.field}: {error.message}") from None


def to_entry(definition: ScheduleDef) -> dict[str, Any]:
    """One definition as a YAML entry (keys in file order; empty optional fields left out)."""
    entry: dict[str, Any] = {
        "name": definition.name,
        "queue": definition.queue,
        "title": definition.title,
        "instructions": definition.instructions,
        "kind": definition.kind,
        "schedule": definition.cron,
        "every": None
        if definition.interval_seconds is None
        else fire_times.format_interval(definition.interval_seconds),
        "timezone": definition.timezone,
        "enabled": definition.status == "active",
        "priority": definition.priority,
        "max_attempts": definition.max_attempts,
        "catch_up": definition.catch_up,
        "overlap": definition.overlap,
        "description": definition.description,
        "input": definition.payload or None,
    }
    return {k: v for k, v in entry.items() if v is not None}


def dump(definitions: list[ScheduleDef]) -> str:
    """A schedules YAML document that `parse` reads back to the same definitions."""
    return yaml.safe_dump(
        {"schedules": [to_entry(d) for d in definitions]},
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
