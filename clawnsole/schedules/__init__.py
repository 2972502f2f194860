"""Recurring enqueues, as a pipeline: `fire_times` (pure cron and interval math) → `models` (the checked
definition and result objects) → `file` (the YAML file) → `ops` (each operation as named statements) → `api`
(`Schedules`, `AsyncSchedules`) → `runtime` (the scheduler daemon and one-shot tick).

`Schedules` and `AsyncSchedules` are importable from here; they load on first use, so importing the pure
modules (as the CLI's help does) pulls in no database driver.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clawnsole.schedules.api import AsyncSchedules, Schedules

__all__ = ["AsyncSchedules", "Schedules"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'clawnsole.schedules' has no attribute {name!r}")
    value = getattr(import_module("clawnsole.schedules.api"), name)
    globals()[name] = value
    return value
