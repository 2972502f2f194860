"""Dead letters — the failed items — as a pipeline: `models` (the checked filter, a replay's plan and
report) → `ops` (each operation as named statements of `db/queries/deadletters.sql`) → `api`
(`DeadLetters`, `AsyncDeadLetters`).

`DeadLetters` and `AsyncDeadLetters` are importable from here; they load on first use, so importing the
package pulls in no database driver.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clawnsole.deadletters.api import AsyncDeadLetters, DeadLetters

__all__ = ["AsyncDeadLetters", "DeadLetters"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'clawnsole.deadletters' has no attribute {name!r}")
    value = getattr(import_module("clawnsole.deadletters.api"), name)
    globals()[name] = value
    return value
