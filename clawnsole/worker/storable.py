"""Handler output made storable. PostgreSQL's text and jsonb refuse the NUL character, and UTF-8 cannot
carry a lone surrogate (what a handler may hold after decoding bytes with `surrogateescape`): one such
character in a result or an error message would make the whole batch's write fail. The worker stores what
the handler said with each of those characters replaced by U+FFFD instead."""

from __future__ import annotations

import re
from typing import Any

from clawnsole.validate import MAX_ERROR_BYTES

REPLACEMENT = "\ufffd"

# What json.dumps (ensure_ascii) writes for a NUL or a surrogate: a cheap test on the text the worker
# already builds to check a result's size, so clean results are never walked.
_SUSPECT = re.compile(r"\\u(0000|d[89a-f][0-9a-f]{2})", re.IGNORECASE)


def text(value: str) -> str:
    """`value` with NUL characters and lone surrogates replaced by U+FFFD."""
    if "\x00" in value:
        value = value.replace("\x00", REPLACEMENT)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # Paired surrogates become their character, lone ones U+FFFD.
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return value


def error(message: str) -> str:
    """A handler's error message as stored: `text`, cut to at most MAX_ERROR_BYTES of UTF-8 (with an
    ellipsis), since an exception may carry a whole output in its message."""
    message = text(message)
    encoded = message.encode()
    if len(encoded) <= MAX_ERROR_BYTES:
        return message
    return encoded[: MAX_ERROR_BYTES - 3].decode("utf-8", "ignore") + "…"


def needs_cleaning(dumped: str) -> bool:
    """Whether JSON text made by `json.dumps` (ASCII) holds a NUL or a surrogate anywhere."""
    return _SUSPECT.search(dumped) is not None


def json_value(value: Any) -> Any:
    """A copy of a JSON-able value with every string (keys included) made storable by `text`."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {text(str(k)): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    return value
