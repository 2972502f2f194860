"""Handlers the benchmark's worker processes run (`--handler clawnsole.bench.handlers:noop`)."""

from __future__ import annotations

import os
import threading
import time
from typing import Any, TextIO

# Where `record_start` appends "item_id wall_clock_seconds" lines: set by the latency scenario.
STARTS_ENV = "CLAWNSOLE_BENCH_STARTS"

_lock = threading.Lock()
_starts: TextIO | None = None


def noop(item: Any, ctx: Any) -> None:
    """Do nothing: what is left is the queue's own cost per item."""


def record_start(item: Any, ctx: Any) -> None:
    """Note when the handler started (wall clock, comparable across processes on one machine)."""
    now = time.time()
    global _starts
    with _lock:
        if _starts is None:
            _starts = open(os.environ[STARTS_ENV], "a", encoding="ascii", buffering=1)  # noqa: SIM115
        _starts.write(f"{item.id} {now:.6f}\n")
