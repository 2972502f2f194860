"""Queue controls, as a pipeline: `models` (states, rates, limits; pure) → `ops` (each operation as named
statements) → `api` (`Queues`, `AsyncQueues`). The claim statement enforces them in the database.

`Queues` and `AsyncQueues` are importable from here; they load on first use, so importing the pure models
pulls in no database driver.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clawnsole.queues.api import AsyncQueues, Queues

__all__ = ["AsyncQueues", "Queues"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'clawnsole.queues' has no attribute {name!r}")
    value = getattr(import_module("clawnsole.queues.api"), name)
    globals()[name] = value
    return value
