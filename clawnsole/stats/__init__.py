"""Stats and history, as a pipeline: `models` (result objects) → `ops` (the statements, sans-I/O: outcomes
and run/wait times per queue and kind, time per handler step, recording a step, reading new events) → `api`
(`Stats`, `AsyncStats` over a work queue) → `tail` (following the event log live, LISTEN plus reads by id).

The classes load on first use, so importing the package pulls in no driver.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clawnsole.stats.api import AsyncStats, Stats

__all__ = ["AsyncStats", "Stats"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'clawnsole.stats' has no attribute {name!r}")
    value = getattr(import_module("clawnsole.stats.api"), name)
    globals()[name] = value
    return value
