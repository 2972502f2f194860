"""Scopes, the authenticated `Principal`, and the records of tokens and audit rows (pure: no I/O)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clawnsole.errors import ClawnsoleError, NotFound
from clawnsole.models import jsonable

SCOPES = ("read", "enqueue", "work", "operate", "admin")

# What each scope grants besides itself: admin everything, operate and work also read (deny by default:
# enqueue grants nothing else, so a producer's token cannot list what others enqueued).
_IMPLIES: dict[str, frozenset[str]] = {
    "admin": frozenset(SCOPES),
    "operate": frozenset({"read"}),
    "work": frozenset({"read"}),
}

# The scopes that see an item's instructions: whoever acts on the item (work) or on the queue (operate).
INSTRUCTION_SCOPES = frozenset({"work", "operate", "admin"})

SECRET_PREFIX = "cln_"


class Unauthenticated(ClawnsoleError):
    """No token, or one that is unknown, expired or revoked (HTTP 401)."""

    exit_code = 3


class Forbidden(ClawnsoleError):
    """The token is valid but lacks the scope the operation needs (HTTP 403)."""

    exit_code = 3


def new_secret() -> str:
    """A fresh token secret: `cln_` and 32 random bytes, urlsafe base64."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> str:
    """What is stored for a secret: its sha256, hex (a lookup key; the secret is not recoverable from it)."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the token's name (the agent, for claims), its scopes and its queues."""

    name: str
    scopes: frozenset[str]
    # None: every queue.
    queues: frozenset[str] | None = None

    def has(self, scope: str) -> bool:
        """Whether the token grants `scope`, itself or through a scope that implies it."""
        return scope in self.scopes or any(scope in _IMPLIES.get(s, ()) for s in self.scopes)

    def can_see(self, queue: str) -> bool:
        """Whether the token may see and touch `queue`."""
        return self.queues is None or queue in self.queues

    def check_queue(self, queue: str, what: str | None = None) -> None:
        """Raise NotFound for a queue the token may not see: it is told nothing of what exists there."""
        if not self.can_see(queue):
            raise NotFound(what or f"no queue {queue!r} for this token")

    @property
    def sees_instructions(self) -> bool:
        """Whether items are shown to this token with their instructions."""
        return bool(self.scopes & INSTRUCTION_SCOPES)

    @property
    def queue_list(self) -> list[str] | None:
        """The queues as a sorted list for a statement parameter (None: all)."""
        return None if self.queues is None else sorted(self.queues)


@dataclass(frozen=True)
class TokenInfo:
    """A token as listed: grants and dates, never the secret or its hash."""

    name: str
    scopes: list[str]
    queues: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> TokenInfo:
        return cls(
            name=row["name"],
            scopes=list(row["scopes"]),
            queues=None if row["queues"] is None else list(row["queues"]),
            created_at=row["created_at"],
            expires_at=row["expires_at"],
            revoked_at=row["revoked_at"],
            last_used_at=row["last_used_at"],
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return jsonable(self.__dict__.copy())  # type: ignore[no-any-return]


@dataclass(frozen=True)
class CreatedToken:
    """A new token and its secret: the only time the secret exists outside the client that holds it."""

    token: TokenInfo
    secret: str


@dataclass(frozen=True)
class AuditEntry:
    """One audit row."""

    id: int
    at: datetime
    token_name: str | None
    action: str
    target: str | None
    outcome: str
    detail: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AuditEntry:
        return cls(**{k: row[k] for k in ("id", "at", "token_name", "action", "target", "outcome", "detail")})

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return jsonable(self.__dict__.copy())  # type: ignore[no-any-return]
