"""Clawnsole: a PostgreSQL-native, lease-based work queue."""

from __future__ import annotations

from clawnsole.errors import (
    ClawnsoleError,
    Conflict,
    DatabaseUnavailable,
    InvalidInput,
    LeaseLost,
    NotFound,
    SchemaMissing,
)
from clawnsole.models import Enqueued, Event, Item, NewItem, QueueCount
from clawnsole.queue import AsyncWorkQueue, WorkQueue

__all__ = [
    "AsyncWorkQueue",
    "ClawnsoleError",
    "Conflict",
    "DatabaseUnavailable",
    "Enqueued",
    "Event",
    "InvalidInput",
    "Item",
    "LeaseLost",
    "NewItem",
    "NotFound",
    "QueueCount",
    "SchemaMissing",
    "WorkQueue",
]
