"""The incident tools, as a pipeline: `models` (the result objects) → `workers` (the registry as operators
read it) → `leases` (who holds what; taking a lease back) → `plan` (EXPLAIN of the live claim) → `doctor`
(the checks) → `api` (`Incidents`, `AsyncIncidents`). The workers write their own registry rows
(`clawnsole.worker.presence`).

`Incidents` and `AsyncIncidents` are importable from here; they load on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clawnsole.incidents.api import AsyncIncidents, Incidents

__all__ = ["AsyncIncidents", "Incidents"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'clawnsole.incidents' has no attribute {name!r}")
    value = getattr(import_module("clawnsole.incidents.api"), name)
    globals()[name] = value
    return value
