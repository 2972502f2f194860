"""Checks on caller input, each raising InvalidInput naming the field. Pure functions, no I/O."""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any

from clawnsole.errors import InvalidInput
from clawnsole.models import STATUSES

QUEUE_NAME = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
MAX_PAYLOAD_BYTES = 1024 * 1024
PRIORITY_NAMES = {"critical": 100, "high": 75, "normal": 50, "medium": 50, "low": 25}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def queue_name(value: str, field: str = "queue") -> str:
    if not QUEUE_NAME.match(value):
        raise InvalidInput(field, f"{value!r} is not a queue name (1-128 of letters, digits, '.', '_', '-', ':')")
    return value


def title(value: str) -> str:
    if not value.strip():
        raise InvalidInput("title", "must not be empty")
    if len(value) > 1000:
        raise InvalidInput("title", "must be at most 1000 characters")
    return value


def optional_text(value: str | None, field: str, limit: int) -> str | None:
    if value is not None and len(value.encode()) > limit:
        raise InvalidInput(field, f"must be at most {limit} bytes")
    return value


def kind(value: str | None) -> str | None:
    if value is not None and not QUEUE_NAME.match(value):
        raise InvalidInput("kind", f"{value!r} is not a kind name (1-128 of letters, digits, '.', '_', '-', ':')")
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
    if not -1_000_000 <= value <= 1_000_000:
        raise InvalidInput("priority", "must be between -1000000 and 1000000")
    return value


def json_value(value: Any, field: str) -> Any:
    """Any JSON value of at most 1 MiB, given as a Python value or as JSON text."""
    if isinstance(value, str | bytes):
        try:
            value = json.loads(value)
        except ValueError as error:
            raise InvalidInput(field, f"is not valid JSON ({error})") from None
    try:
        size = len(json.dumps(value).encode())
    except (TypeError, ValueError) as error:
        raise InvalidInput(field, f"is not JSON-serialisable ({error})") from None
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidInput(field, "is larger than 1 MiB")
    return value


def payload(value: Any, field: str = "payload") -> dict[str, Any]:
    """A JSON object of at most 1 MiB, given as a dict or as JSON text."""
    if isinstance(value, str | bytes) and len(value) > MAX_PAYLOAD_BYTES:
        raise InvalidInput(field, "is larger than 1 MiB")
    value = json_value(value, field)
    if not isinstance(value, dict):
        raise InvalidInput(field, "must be a JSON object")
    return value


def duration(value: float | int | str, field: str, *, allow_zero: bool = False) -> float:
    """Seconds from a number or a string like 90, 90s, 15m, 2h, 30d."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise InvalidInput(field, f"{value!r} is not a duration (e.g. 90, 90s, 15m, 2h, 30d)")
        seconds = float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]
    else:
        seconds = float(value)
    if math.isnan(seconds) or math.isinf(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
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
    if value.tzinfo is None:
        raise InvalidInput(field, "needs a UTC offset (e.g. 2026-11-21T09:00:00+00:00 or ...Z)")
    return value


def status(value: str | None) -> str | None:
    if value is not None and value not in STATUSES:
        raise InvalidInput("status", f"{value!r} is not one of {', '.join(STATUSES)}")
    return value


def positive_int(value: int, field: str, *, maximum: int = 1_000_000) -> int:
    if not 1 <= value <= maximum:
        raise InvalidInput(field, f"must be between 1 and {maximum}")
    return value


def percent(value: int | None) -> int | None:
    if value is not None and not 0 <= value <= 100:
        raise InvalidInput("percent", "must be between 0 and 100")
    return value


def agent(value: str) -> str:
    if not value.strip() or len(value) > 200:
        raise InvalidInput("agent", "must be 1-200 characters")
    return value


def lease_token(value: str | None) -> str | None:
    if value is None:
        return None
    from uuid import UUID

    try:
        return str(UUID(value))
    except ValueError:
        raise InvalidInput("lease", f"{value!r} is not a lease token (a UUID)") from None
