"""Enqueue options beyond the basics: prerequisites (`after`), and from the file-based task queue metadata,
dedupe keys made of fields and retries.

Pure functions, no I/O: each raises InvalidInput naming its field.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from clawnsole import validate
from clawnsole.errors import InvalidInput

# More prerequisites than this is a batch, not a chain: the enqueue locks each of them.
MAX_PREREQUISITES = 1000
# Metadata describes an item (who made it, from which run); it is not a second payload.
MAX_METADATA_BYTES = 64 * 1024


def metadata(value: Any, field: str = "metadata") -> dict[str, Any] | None:
    """None, or a JSON object of at most 64 KiB (given as a dict or as JSON text)."""
    if value is None:
        return None
    checked = validate.payload(value, field)
    if len(json.dumps(checked, separators=(",", ":")).encode()) > MAX_METADATA_BYTES:
        raise InvalidInput(field, "is larger than 64 KiB")
    return checked


def key_from_fields(value: Any, field: str = "key") -> str:
    """The dedupe key for these key fields (a JSON object, as a dict or as JSON text): `key:` and the SHA-256
    of their canonical JSON (sorted keys, compact separators), so equal fields give one key whatever the
    order they were written in."""
    fields = validate.payload(value, field)
    if not fields:
        raise InvalidInput(field, "must name at least one key field")
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "key:" + hashlib.sha256(canonical.encode()).hexdigest()


def retries_to_max_attempts(retries: int) -> int:
    """`--retries N` of the file-based queue: N retries after the first attempt, so N + 1 attempts."""
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 999:
        raise InvalidInput("retries", "must be an integer between 0 and 999")
    return retries + 1


def prerequisites(after: Iterable[int] | None, field: str = "after") -> list[int]:
    """The distinct prerequisite ids of `after`, sorted (each a valid id)."""
    if after is None:
        return []
    if isinstance(after, str | bytes) or not isinstance(after, Iterable):
        raise InvalidInput(field, "must be a list of item ids")
    ids = sorted({validate.item_id(value, field) for value in after})
    if len(ids) > MAX_PREREQUISITES:
        raise InvalidInput(field, f"at most {MAX_PREREQUISITES} prerequisites")
    return ids
