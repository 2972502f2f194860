"""`Queues` (sync) and `AsyncQueues` (asyncio): pause, resume, drain and limit queues through a work queue.

Both are thin: every method runs one operation of `clawnsole.queues.ops` through the queue's `run` (one
transaction each), so an application, an agent tool or the HTTP API changes the same state the CLI does,
and every worker honours it at its next claim.

    with WorkQueue(url) as wq:
        queues = Queues(wq)
        queues.limit("emails", concurrency=4, rate="600/m")
        queues.pause("emails")
"""

from __future__ import annotations

import builtins
from typing import Any

import psycopg

from clawnsole.queue import AsyncWorkQueue, WorkQueue
from clawnsole.queues import ops as queue_ops
from clawnsole.queues.models import QueueControl, QueueSummary, Rate, RateUsage


class Queues:
    """Queue controls stored in PostgreSQL, changed through an open `WorkQueue`. `by` (who made a change,
    kept with it) defaults to the work queue's agent."""

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue

    def pause(self, name: str, *, by: str | None = None, conn: psycopg.Connection[Any] | None = None) -> QueueControl:
        """Stop claims from the queue until it is resumed; workers stay up and enqueues are accepted."""
        return self._queue.run(queue_ops.pause(name, by=by or self._queue.agent), conn)

    def resume(self, name: str, *, by: str | None = None, conn: psycopg.Connection[Any] | None = None) -> QueueControl:
        """Make a paused or draining queue active again; its idle workers are woken at once."""
        return self._queue.run(queue_ops.resume(name, by=by or self._queue.agent), conn)

    def drain(self, name: str, *, by: str | None = None, conn: psycopg.Connection[Any] | None = None) -> QueueControl:
        """Refuse new enqueues into the queue while its items are still claimed, until resumed."""
        return self._queue.run(queue_ops.drain(name, by=by or self._queue.agent), conn)

    def limit(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        rate: str | Rate | None = None,
        by: str | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> QueueControl:
        """Set the limits given (None leaves one as it is; `concurrency=0` or `rate="none"` clears one)."""
        op = queue_ops.set_limits(name, by=by or self._queue.agent, concurrency_limit=concurrency, rate=rate)
        return self._queue.run(op, conn)

    def get(self, name: str) -> QueueControl:
        """A queue's controls (active and unlimited when it was never controlled)."""
        return self._queue.run(queue_ops.get(name))

    def rate_usage(self, name: str) -> RateUsage | None:
        """How much of the queue's current rate window is used, and when it ends (None: no rate limit)."""
        return self._queue.run(queue_ops.rate_usage(name))

    def list(self, name: str | None = None) -> builtins.list[QueueSummary]:
        """Every queue with items or controls (or only `name`), by name, with its counts."""
        return self._queue.run(queue_ops.list_queues(name))


class AsyncQueues:
    """The asyncio twin of `Queues`, run through an open `AsyncWorkQueue`."""

    def __init__(self, queue: AsyncWorkQueue) -> None:
        self._queue = queue

    async def pause(
        self, name: str, *, by: str | None = None, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> QueueControl:
        """Stop claims from the queue until it is resumed; workers stay up and enqueues are accepted."""
        return await self._queue.run(queue_ops.pause(name, by=by or self._queue.agent), conn)

    async def resume(
        self, name: str, *, by: str | None = None, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> QueueControl:
        """Make a paused or draining queue active again; its idle workers are woken at once."""
        return await self._queue.run(queue_ops.resume(name, by=by or self._queue.agent), conn)

    async def drain(
        self, name: str, *, by: str | None = None, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> QueueControl:
        """Refuse new enqueues into the queue while its items are still claimed, until resumed."""
        return await self._queue.run(queue_ops.drain(name, by=by or self._queue.agent), conn)

    async def limit(
        self,
        name: str,
        *,
        concurrency: int | None = None,
        rate: str | Rate | None = None,
        by: str | None = None,
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> QueueControl:
        """Set the limits given (None leaves one as it is; `concurrency=0` or `rate="none"` clears one)."""
        op = queue_ops.set_limits(name, by=by or self._queue.agent, concurrency_limit=concurrency, rate=rate)
        return await self._queue.run(op, conn)

    async def get(self, name: str) -> QueueControl:
        """A queue's controls (active and unlimited when it was never controlled)."""
        return await self._queue.run(queue_ops.get(name))

    async def rate_usage(self, name: str) -> RateUsage | None:
        """How much of the queue's current rate window is used, and when it ends (None: no rate limit)."""
        return await self._queue.run(queue_ops.rate_usage(name))

    async def list(self, name: str | None = None) -> builtins.list[QueueSummary]:
        """Every queue with items or controls (or only `name`), by name, with its counts."""
        return await self._queue.run(queue_ops.list_queues(name))


__all__ = ["AsyncQueues", "Queues"]
