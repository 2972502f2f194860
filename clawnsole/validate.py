"""Checks on caller input, each raising InvalidInput naming the field. Pure functions, no I/O.

Every value that reaches PostgreSQL passes one of these first, so hostile input fails here, naming its
field, and never as a driver error: PostgreSQL `text` and `jsonb` reject NUL characters, `jsonb` rejects
NaN and lone surrogates, and the driver cannot encode a lone surrogate (what Python makes of invalid UTF-8
in argv or the environment) at all.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any
from uuid import UUID

from clawnsole.errors import InvalidInput
from clawnsole.models import STATUSES

# Patterns are used with `fullmatch`, never `match` with `$`: `$` also matches before a trailing newline,
# which let "name\n" through as a name.
QUEUE_NAME = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# At most 40 characters: the schema names its NOTIFY channels (`clawnsole:<schema>:schedules`), and
# PostgreSQL caps a channel name at 63 bytes.
SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")
MAX_PAYLOAD_BYTES = 1024 * 1024
# An error message is stored up to this many bytes of UTF-8.
MAX_ERROR_BYTES = 64 * 1024
# Deeper JSON is never a real payload, and the standard library's encoder and decoder recurse per level
# (a RecursionError past ~1000): refuse it explicitly, well before that.
MAX_JSON_DEPTH = 64
# Ids are PostgreSQL bigints.
MAX_ID = 2**63 - 1
PRIORITY_NAMES = {"critical": 100, "high": 75, "normal": 50, "medium": 50, "low": 25}
_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd])?\s*", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def text(value: Any, field: str) -> str:
    """Text that PostgreSQL can store: a str without NUL characters or lone surrogates."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be text, not {type(value).__name__}")
    if "\x00" in value:
        raise InvalidInput(field, "must not contain NUL (\\x00) characters")
    if not value.isascii() and _SURROGATE.search(value):
        # Python's stand-in for bytes that were not UTF-8 (surrogateescape); no encoder accepts it.
        raise InvalidInput(field, "is not valid UTF-8 text")
    return value


def queue_name(value: str, field: str = "queue") -> str:
    if not isinstance(value, str) or not QUEUE_NAME.fullmatch(value):
        raise InvalidInput(field, f"{value!r} is not a queue name (1-128 of letters, digits, '.', '_', '-', ':')")
    return value


def schema_name(value: str) -> str:
    """A schema name: a lower-case SQL identifier of at most 40 characters, never `public` or a system one."""
    if not isinstance(value, str) or not SCHEMA_NAME.fullmatch(value):
        raise InvalidInput(
            "schema", f"{value!r} is not a schema name (a lower-case SQL identifier: letters, digits, _; at most 40)"
        )
    if value == "public" or value == "information_schema" or value.startswith("pg_"):
        # `public` is where applications keep their own tables; `pg_*` and information_schema are the
        # server's (PostgreSQL refuses to create a `pg_` schema).
        raise InvalidInput("schema", f"{value!r} is reserved: choose a schema of Clawnsole's own (e.g. clawnsole)")
    return value


def title(value: str) -> str:
    # The common title, short ASCII text, in one test (a batch checks every one of its titles).
    if type(value) is str and value.isascii() and 0 < len(value) <= 1000 and "\x00" not in value:
        if value.isspace():
            raise InvalidInput("title", "must not be empty")
        return value
    text(value, "title")
    if not value.strip():
        raise InvalidInput("title", "must not be empty")
    if len(value) > 1000:
        raise InvalidInput("title", "must be at most 1000 characters")
    return value


def optional_text(value: str | None, field: str, limit: int) -> str | None:
    """None, or text of at most `limit` bytes (UTF-8)."""
    if value is None:
        return None
    text(value, field)
    # Characters never outnumber bytes: only text that might be too long is encoded to measure it.
    if len(value) > limit or (not value.isascii() and len(value.encode()) > limit):
        raise InvalidInput(field, f"must be at most {limit} bytes")
    return value


def dedupe_key(value: str | None) -> str | None:
    """None, or a dedupe key of 1-512 characters."""
    if value is None:
        return None
    text(value, "dedupe_key")
    if not 1 <= len(value) <= 512:
        raise InvalidInput("dedupe_key", "must be 1-512 characters")
    return value


def kind(value: str | None) -> str | None:
    if value is not None and (not isinstance(value, str) or not QUEUE_NAME.fullmatch(value)):
        raise InvalidInput("kind", f"{value!r} is not a kind name (1-128 of letters, digits, '.', '_', '-', ':')")
    return value


def _integer(value: Any, field: str) -> int:
    # bool is an int to Python but never a count, a priority or an id; a float would be silently truncated.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(field, f"must be an integer, not {type(value).__name__}")
    return value


def priority(value: int | str) -> int:
    """An integer priority (higher first), or one of the names critical, high, normal/medium, low."""
    if isinstance(value, str):
        named = PRIORITY_NAMES.get(value.strip().lower())
        if named is not None:
            return named
        try:
            value = int(value)
        except ValueError:
            raise InvalidInput(
                "priority", f"{value!r} is not an integer or one of {', '.join(PRIORITY_NAMES)}"
            ) from None
    _integer(value, "priority")
    if not -1_000_000 <= value <= 1_000_000:
        raise InvalidInput("priority", "must be between -1000000 and 1000000")
    return value


def _walk_json(value: Any, field: str) -> None:
    """Refuse what jsonb cannot store, nesting past MAX_JSON_DEPTH, and values surely over 1 MiB.

    Iterative, so no depth can overflow the stack; and it stops as soon as a lower bound of the encoded
    size passes the limit, so a structure that shares one big value many times (a YAML alias bomb) costs
    no more than 1 MiB of work.
    """
    size = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            text(node, field)
            size += len(node) + 2
        elif isinstance(node, dict | list | tuple):
            if depth >= MAX_JSON_DEPTH:
                raise InvalidInput(field, f"is nested more than {MAX_JSON_DEPTH} levels deep")
            # A lower bound: brackets and separators take at least one byte per element, plus one.
            size += 1 + len(node)
            if isinstance(node, dict):
                for key, item in node.items():
                    if isinstance(key, str):
                        text(key, field)
                        size += len(key) + 3
                    stack.append((item, depth + 1))
            else:
                stack.extend((item, depth + 1) for item in node)
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise InvalidInput(field, "NaN and Infinity are not JSON numbers")
            size += 1
        elif node is None or isinstance(node, int):
            size += 1
        else:
            raise InvalidInput(field, f"is not JSON-serialisable ({type(node).__name__})")
        if size > MAX_PAYLOAD_BYTES:
            raise InvalidInput(field, "is larger than 1 MiB")


def json_value(value: Any, field: str) -> Any:
    """Any JSON value of at most 1 MiB that jsonb can store, given as a Python value or as JSON text."""
    if isinstance(value, str | bytes):
        # Characters never outnumber bytes: refuse oversized text before parsing it.
        if len(value) > MAX_PAYLOAD_BYTES:
            raise InvalidInput(field, "is larger than 1 MiB")
        try:
            value = json.loads(value)
        except RecursionError:
            raise InvalidInput(field, f"is nested more than {MAX_JSON_DEPTH} levels deep") from None
        except ValueError as error:
            raise InvalidInput(field, f"is not valid JSON ({error})") from None
    _walk_json(value, field)
    try:
        size = len(json.dumps(value, allow_nan=False).encode())
    except (TypeError, ValueError) as error:
        raise InvalidInput(field, f"is not JSON-serialisable ({error})") from None
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidInput(field, "is larger than 1 MiB")
    return value


def payload(value: Any, field: str = "payload") -> dict[str, Any]:
    """A JSON object of at most 1 MiB, given as a dict or as JSON text."""
    value = json_value(value, field)
    if not isinstance(value, dict):
        raise InvalidInput(field, "must be a JSON object")
    return value


def duration(value: float | int | str, field: str, *, allow_zero: bool = False) -> float:
    """Seconds from a number or a string like 90, 90s, 15m, 2h, 30d."""
    if isinstance(value, str):
        match = _DURATION.fullmatch(value)
        if not match:
            raise InvalidInput(field, f"{value!r} is not a duration (e.g. 90, 90s, 15m, 2h, 30d)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]
    elif isinstance(value, int | float) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:  # an int too large for a float
            seconds = math.inf
    else:
        raise InvalidInput(field, f"must be a number of seconds or a duration such as 15m, not {type(value).__name__}")
    if math.isnan(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise InvalidInput(field, f"must be {'zero or more' if allow_zero else 'more than zero'} seconds")
    if seconds > 10 * 365 * 86400:
        raise InvalidInput(field, "must be at most ten years")
    return seconds


def timestamp(value: datetime | str, field: str) -> datetime:
    """An aware datetime from a datetime or an ISO 8601 string with an offset (or Z)."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise InvalidInput(field, f"{value!r} is not an ISO 8601 time (e.g. 2026-11-21T09:00:00Z)") from None
    if not isinstance(value, datetime):
        raise InvalidInput(field, f"must be a datetime or ISO 8601 text, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(field, "needs a UTC offset (e.g. 2026-11-21T09:00:00+00:00 or ...Z)")
    return value


def status(value: str | None) -> str | None:
    if value is not None and value not in STATUSES:
        raise InvalidInput("status", f"{value!r} is not one of {', '.join(STATUSES)}")
    return value


def positive_int(value: int, field: str, *, maximum: int = 1_000_000) -> int:
    _integer(value, field)
    if not 1 <= value <= maximum:
        raise InvalidInput(field, f"must be between 1 and {maximum}")
    return value


def item_id(value: int, field: str = "id") -> int:
    """An item (or schedule) id: a positive bigint."""
    _integer(value, field)
    if not 1 <= value <= MAX_ID:
        raise InvalidInput(field, f"{value} is not an id (ids are 1 to {MAX_ID})")
    return value


def percent(value: int | None) -> int | None:
    if value is not None and not 0 <= _integer(value, "percent") <= 100:
        raise InvalidInput("percent", "must be between 0 and 100")
    return value


def agent(value: str) -> str:
    text(value, "agent")
    if not value.strip() or len(value) > 200:
        raise InvalidInput("agent", "must be 1-200 characters")
    return value


def lease_token(value: str | UUID | None, field: str = "lease") -> str | None:
    if value is None:
        return None
    if isinstance(value, UUID):
        return str(value)
    if not isinstance(value, str):
        raise InvalidInput(field, f"must be a lease token (a UUID), not {type(value).__name__}")
    try:
        return str(UUID(value))
    except ValueError:
        raise InvalidInput(field, f"{value!r} is not a lease token (a UUID)") from None
