"""API tokens and the audit log, as a pipeline: `models` (scopes, `Principal`, `TokenInfo`; pure) → `ops`
(each operation as named statements) → `api` (`Tokens`, `AsyncTokens`, `Audit`, `AsyncAudit`).

The API classes load on first use, so importing the pure models pulls in no database driver.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clawnsole.tokens.api import AsyncAudit, AsyncTokens, Audit, Tokens

__all__ = ["AsyncAudit", "AsyncTokens", "Audit", "Tokens"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'clawnsole.tokens' has no attribute {name!r}")
    value = getattr(import_module("clawnsole.tokens.api"), name)
    globals()[name] = value
    return value
