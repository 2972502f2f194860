"""Retention, as a pipeline: `models` (the checked cleanup options and the report) → `ops` (the cleanup as a
plan of short batch transactions, sans-I/O) → `api` (`Retention`, `AsyncRetention` over a work queue).

`clawnsole workqueue cleanup` and the system schedule kind `clawnsole.cleanup` (see `clawnsole.schedules.system`)
both run `Retention.cleanup`. The classes load on first use, so importing the package pulls in no driver.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clawnsole.retention.api import AsyncRetention, Retention

__all__ = ["AsyncRetention", "Retention"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'clawnsole.retention' has no attribute {name!r}")
    value = getattr(import_module("clawnsole.retention.api"), name)
    globals()[name] = value
    return value
