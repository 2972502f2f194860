"""`Tokens`/`AsyncTokens` and `Audit`/`AsyncAudit`: API tokens and the audit log through an open work queue.

Thin, like `clawnsole.schedules.api`: each method runs one operation of `clawnsole.tokens.ops`.

    with WorkQueue(url) as wq:
        made = Tokens(wq).create("ci-bot", ["enqueue"], queues=["builds"], expires="90d")
        print(made.secret)  # shown once; only its hash is stored
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from clawnsole.queue import AsyncWorkQueue, WorkQueue
from clawnsole.tokens import ops
from clawnsole.tokens.models import AuditEntry, CreatedToken, Principal, TokenInfo


class Tokens:
    """Bearer tokens for the HTTP API, over an open `WorkQueue`."""

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue

    def create(
        self,
        name: str,
        scopes: Iterable[str],
        *,
        queues: Iterable[str] | None = None,
        expires: float | str | None = None,
    ) -> CreatedToken:
        """Create a token (queues None: all); the returned secret is the only copy."""
        return self._queue.run(ops.create(name, scopes, queues=queues, expires=expires))

    def list(self) -> builtins.list[TokenInfo]:
        """Every token, by name."""
        return self._queue.run(ops.list_tokens())

    def revoke(self, name: str) -> TokenInfo:
        """Revoke a token at once."""
        return self._queue.run(ops.revoke(name))

    def authenticate(self, secret: str) -> Principal:
        """The principal of a secret, or raise `Unauthenticated`."""
        return self._queue.run_steps(ops.authenticate(secret))


class AsyncTokens:
    """The asyncio twin of `Tokens`."""

    def __init__(self, queue: AsyncWorkQueue) -> None:
        self._queue = queue

    async def create(
        self,
        name: str,
        scopes: Iterable[str],
        *,
        queues: Iterable[str] | None = None,
        expires: float | str | None = None,
    ) -> CreatedToken:
        """Create a token (queues None: all); the returned secret is the only copy."""
        return await self._queue.run(ops.create(name, scopes, queues=queues, expires=expires))

    async def list(self) -> builtins.list[TokenInfo]:
        """Every token, by name."""
        return await self._queue.run(ops.list_tokens())

    async def revoke(self, name: str) -> TokenInfo:
        """Revoke a token at once."""
        return await self._queue.run(ops.revoke(name))

    async def authenticate(self, secret: str) -> Principal:
        """The principal of a secret, or raise `Unauthenticated`."""
        return await self._queue.run_steps(ops.authenticate(secret))


class Audit:
    """The audit log of mutations made through the API, over an open `WorkQueue`."""

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue

    def write(
        self, token: str | None, action: str, target: str | None, outcome: str, detail: dict[str, Any] | None = None
    ) -> AuditEntry:
        """Record one mutation or refused attempt."""
        return self._queue.run_steps(ops.audit_write(token, action, target, outcome, detail))

    def list(
        self,
        *,
        since: datetime | float | str | None = None,
        token: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> builtins.list[AuditEntry]:
        """Audit rows newest first (`before`: only rows older than that id, the next page)."""
        return self._queue.run_steps(ops.audit_list(since=since, token=token, limit=limit, before=before))


class AsyncAudit:
    """The asyncio twin of `Audit`."""

    def __init__(self, queue: AsyncWorkQueue) -> None:
        self._queue = queue

    async def write(
        self, token: str | None, action: str, target: str | None, outcome: str, detail: dict[str, Any] | None = None
    ) -> AuditEntry:
        """Record one mutation or refused attempt."""
        return await self._queue.run_steps(ops.audit_write(token, action, target, outcome, detail))

    async def list(
        self,
        *,
        since: datetime | float | str | None = None,
        token: str | None = None,
        limit: int = 100,
        before: int | None = None,
    ) -> builtins.list[AuditEntry]:
        """Audit rows newest first (`before`: only rows older than that id, the next page)."""
        return await self._queue.run_steps(ops.audit_list(since=since, token=token, limit=limit, before=before))
