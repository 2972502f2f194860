"""Clawnsole: a PostgreSQL-native, lease-based work queue.

Public names are imported on first use, so a command-line call loads only the modules it needs.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clawnsole.deadletters.api import AsyncDeadLetters, DeadLetters
    from clawnsole.dependencies.api import AsyncDependencies, Dependencies
    from clawnsole.errors import (
        ClawnsoleError,
        Conflict,
        DatabaseUnavailable,
        InvalidInput,
        LeaseLost,
        NotFound,
        QueueDraining,
        SchemaMissing,
    )
    from clawnsole.models import Enqueued, Event, Item, NewItem, QueueCount
    from clawnsole.queue import AsyncWorkQueue, WorkQueue
    from clawnsole.queues.api import AsyncQueues, Queues
    from clawnsole.schedules.api import AsyncSchedules, Schedules
    from clawnsole.schedules.models import ImportReport, Schedule, ScheduleDef, ScheduleRun, TickReport

_WHERE = {
    "clawnsole.errors": (
        "ClawnsoleError",
        "Conflict",
        "DatabaseUnavailable",
        "InvalidInput",
        "LeaseLost",
        "NotFound",
        "QueueDraining",
        "SchemaMissing",
    ),
    "clawnsole.models": ("Enqueued", "Event", "Item", "NewItem", "QueueCount"),
    "clawnsole.queue": ("AsyncWorkQueue", "WorkQueue"),
    "clawnsole.schedules.models": ("ImportReport", "Schedule", "ScheduleDef", "ScheduleRun", "TickReport"),
    "clawnsole.schedules.api": ("AsyncSchedules", "Schedules"),
    "clawnsole.deadletters.api": ("AsyncDeadLetters", "DeadLetters"),
    "clawnsole.dependencies.api": ("AsyncDependencies", "Dependencies"),
    "clawnsole.queues.api": ("AsyncQueues", "Queues"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}

__all__ = [
    "AsyncDeadLetters",
    "AsyncDependencies",
    "AsyncQueues",
    "AsyncSchedules",
    "AsyncWorkQueue",
    "ClawnsoleError",
    "Conflict",
    "DatabaseUnavailable",
    "DeadLetters",
    "Dependencies",
    "Enqueued",
    "Event",
    "ImportReport",
    "InvalidInput",
    "Item",
    "LeaseLost",
    "NewItem",
    "NotFound",
    "QueueCount",
    "QueueDraining",
    "Queues",
    "Schedule",
    "ScheduleDef",
    "ScheduleRun",
    "Schedules",
    "SchemaMissing",
    "TickReport",
    "WorkQueue",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'clawnsole' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
