"""`workqueue list --metadata KEY=VALUE`: the filters, parsed into one JSON object for containment (@>)."""

from __future__ import annotations

import json
from typing import Any


def metadata_filter(pairs: list[str]) -> dict[str, Any] | None:
    """One object from `KEY=VALUE` (VALUE a string) and `KEY:=JSON` (any JSON value) pairs; None for none.

    A value is a string unless written with `:=`, so `runId=12345` finds the `"12345"` a workflow stored.
    """
    from clawnsole.errors import InvalidInput

    wanted: dict[str, Any] = {}
    for pair in pairs:
        key, raw, value = pair.partition(":=")
        if raw and "=" not in key:
            try:
                wanted[key] = json.loads(value)
            except ValueError:
                raise InvalidInput("metadata", f"{pair!r}: the value after := is not JSON") from None
        else:
            key, equals, text = pair.partition("=")
            if not equals:
                raise InvalidInput("metadata", f"{pair!r} is not KEY=VALUE (or KEY:=JSON)")
            wanted[key] = text
        if not key:
            raise InvalidInput("metadata", f"{pair!r} has no key")
    return wanted or None
