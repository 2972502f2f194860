"""One log line per worker event (claimed, done, failed, released, lease lost, …), as text or JSON.

Not the `logging` module: at thousands of items a second the worker writes a whole batch of lines with one
call, and a line is a plain format of a few fields. Callers never pass an item's instructions.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any, TextIO

FORMATS = ("text", "json")

Record = tuple[str, dict[str, Any]]


def _timestamp(now: float) -> str:
    seconds = time.gmtime(now)
    return time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(now % 1 * 1000):03d}Z"


_NEEDS_QUOTES = re.compile(r'[\s"=]')


def _text_value(value: Any) -> str:
    if type(value) is int:
        return str(value)
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".")
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if not text or _NEEDS_QUOTES.search(text) else text


class EventLog:
    """Writes events to a stream (stderr by default) with a timestamp and the worker's agent id."""

    def __init__(self, stream: TextIO | None = None, *, fmt: str = "text", agent: str | None = None) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"log format must be one of {', '.join(FORMATS)}")
        self._stream = stream
        self._json = fmt == "json"
        self._agent = agent
        self._lock = threading.Lock()

    def emit(self, event: str, **fields: Any) -> None:
        """Write one event."""
        self.emit_many([(event, fields)])

    def emit_many(self, records: Iterable[Record]) -> None:
        """Write several events with one write call (a claimed or finished batch)."""
        stamp = _timestamp(time.time())
        lines = [self._format(stamp, event, fields) for event, fields in records]
        if not lines:
            return
        text = "\n".join(lines) + "\n"
        stream = self._stream or sys.stderr
        with self._lock:
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):
                # A closed or broken log stream must not take the worker (and its leases) down with it.
                pass

    def _format(self, stamp: str, event: str, fields: dict[str, Any]) -> str:
        if self._json:
            head: dict[str, Any] = {"ts": stamp, "event": event}
            if self._agent is not None:
                head["agent"] = self._agent
            values = {k: v for k, v in fields.items() if v is not None}
            return json.dumps(head | values, default=str, ensure_ascii=False)
        # Two lines per item at thousands of items a second: one pass, no intermediate dict.
        parts = [stamp, event]
        for key, value in fields.items():
            if value is not None:
                parts.append(f"{key}={_text_value(value)}")
        return " ".join(parts)
