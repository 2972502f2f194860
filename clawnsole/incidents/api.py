"""`Incidents` (sync) and `AsyncIncidents` (asyncio): the incident tools over a work queue.

Thin like `Schedules`: the registry and lease operations run through the queue's `run` / `run_steps`; the
doctor's checks and the claim plan, which only look, run through `_inspect` — each in a transaction that is
always rolled back, where an `explain` step (see `plan`) becomes EXPLAIN of the named registry statement.

    with WorkQueue(url, agent="ops:alice") as wq:
        incidents = Incidents(wq)
        for lease in incidents.leases(expired=True):
            incidents.release(lease.id, reason="worker host lost")
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row

from clawnsole.db.sql import statements
from clawnsole.errors import ClawnsoleError
from clawnsole.incidents import doctor as checks
from clawnsole.incidents import leases as lease_ops
from clawnsole.incidents import plan
from clawnsole.incidents import workers as worker_ops
from clawnsole.incidents.models import ClaimPlan, DoctorReport, HeldLease, Released, WorkerInfo
from clawnsole.ops import Op, Step
from clawnsole.queue import AsyncWorkQueue, WorkQueue

T = TypeVar("T")


def _statement(schema: str, channel: str, step: Step) -> tuple[str, dict[str, Any]]:
    """The SQL and parameters of one step of an inspecting operation (an `explain` step wraps its statement)."""
    registry = statements(schema)
    if step.name == plan.EXPLAIN:
        wrapped = registry[step.params["statement"]]
        text = plan.explain_sql(wrapped, analyze=step.params["analyze"], fmt=step.params["format"])
        return text, {"channel": channel, **step.params["params"]}
    return registry[step.name], {"channel": channel, **step.params}


def _rows(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> bool:
    return cur.description is not None


class Incidents:
    """Workers, leases, the doctor and the claim plan, through an open `WorkQueue`. Releases are recorded
    as done `by` the queue's agent unless another operator name is given."""

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue

    def workers(self, *, include_stopped: bool = False) -> builtins.list[WorkerInfo]:
        """The registered workers: alive and gone silent; cleanly stopped ones too with `include_stopped`."""
        return self._queue.run_steps(worker_ops.list_workers(include_stopped=include_stopped))

    def prune_workers(self, *, keep: float = worker_ops.KEEP_GONE_SECONDS) -> int:
        """Delete the rows of workers gone for longer than `keep` seconds; returns how many."""
        return self._queue.run_steps(worker_ops.prune(keep=keep))

    def leases(
        self, *, queue: str | None = None, agent: str | None = None, expired: bool = False, limit: int = 1000
    ) -> builtins.list[HeldLease]:
        """Leases held now, the soonest to expire first."""
        return self._queue.run_steps(lease_ops.list_leases(queue=queue, agent=agent, expired=expired, limit=limit))

    def release(
        self,
        item_id: int | None = None,
        *,
        agent: str | None = None,
        reason: str | None = None,
        by: str | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> builtins.list[Released]:
        """Take back the lease on `item_id`, or every lease `agent` holds: back to pending, the attempt not
        charged, the holder's later writes rejected (LeaseLost). NotFound when nothing was held."""
        op = lease_ops.force_release(item_id=item_id, agent=agent, by=by or self._queue.agent, reason=reason)
        return self._queue.run(op, conn)

    def doctor(self, thresholds: checks.Thresholds | None = None) -> DoctorReport:
        """Run every check; a check that cannot run is a FAIL of its own (a lost database raises)."""
        found = []
        for name, make in checks.checks(self._queue.schema, thresholds):
            try:
                found.append(self._inspect(make()))
            except ClawnsoleError as error:
                found.append(checks.could_not_check(name, error))
        return DoctorReport(found)

    def explain_claim(
        self,
        queues: Sequence[str] | None = None,
        *,
        limit: int = 1,
        analyze: bool = True,
        fmt: str = "text",
        conn: psycopg.Connection[Any] | None = None,
    ) -> ClaimPlan:
        """EXPLAIN (ANALYZE, BUFFERS) of the live claim statement, in a transaction rolled back: nothing is
        claimed. Default queue: one with pending items."""
        return self._inspect(plan.claim_plan(queues, limit=limit, analyze=analyze, fmt=fmt), conn)

    def _inspect(self, op: Op[T], conn: psycopg.Connection[Any] | None = None) -> T:
        queue = self._queue
        # The queue's connection handling (pool, single connection or the caller's, and its error
        # translation) is reused as it is; only the statements differ from `run`.
        with queue._connection(conn) as c, c.transaction(force_rollback=True):
            cur = c.cursor(row_factory=dict_row)
            try:
                step = next(op)
                while True:
                    cur.execute(*_statement(queue.schema, queue.channel, step))
                    step = op.send(cur.fetchall() if _rows(cur) else [])
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]


class AsyncIncidents:
    """The asyncio twin of `Incidents`, through an open `AsyncWorkQueue`."""

    def __init__(self, queue: AsyncWorkQueue) -> None:
        self._queue = queue

    async def workers(self, *, include_stopped: bool = False) -> builtins.list[WorkerInfo]:
        """The registered workers: alive and gone silent; cleanly stopped ones too with `include_stopped`."""
        return await self._queue.run_steps(worker_ops.list_workers(include_stopped=include_stopped))

    async def prune_workers(self, *, keep: float = worker_ops.KEEP_GONE_SECONDS) -> int:
        """Delete the rows of workers gone for longer than `keep` seconds; returns how many."""
        return await self._queue.run_steps(worker_ops.prune(keep=keep))

    async def leases(
        self, *, queue: str | None = None, agent: str | None = None, expired: bool = False, limit: int = 1000
    ) -> builtins.list[HeldLease]:
        """Leases held now, the soonest to expire first."""
        return await self._queue.run_steps(
            lease_ops.list_leases(queue=queue, agent=agent, expired=expired, limit=limit)
        )

    async def release(
        self,
        item_id: int | None = None,
        *,
        agent: str | None = None,
        reason: str | None = None,
        by: str | None = None,
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> builtins.list[Released]:
        """Take back the lease on `item_id`, or every lease `agent` holds (see `Incidents.release`)."""
        op = lease_ops.force_release(item_id=item_id, agent=agent, by=by or self._queue.agent, reason=reason)
        return await self._queue.run(op, conn)

    async def doctor(self, thresholds: checks.Thresholds | None = None) -> DoctorReport:
        """Run every check; a check that cannot run is a FAIL of its own (a lost database raises)."""
        found = []
        for name, make in checks.checks(self._queue.schema, thresholds):
            try:
                found.append(await self._inspect(make()))
            except ClawnsoleError as error:
                found.append(checks.could_not_check(name, error))
        return DoctorReport(found)

    async def explain_claim(
        self,
        queues: Sequence[str] | None = None,
        *,
        limit: int = 1,
        analyze: bool = True,
        fmt: str = "text",
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> ClaimPlan:
        """EXPLAIN (ANALYZE, BUFFERS) of the live claim statement, rolled back (see `Incidents.explain_claim`)."""
        return await self._inspect(plan.claim_plan(queues, limit=limit, analyze=analyze, fmt=fmt), conn)

    async def _inspect(self, op: Op[T], conn: psycopg.AsyncConnection[Any] | None = None) -> T:
        queue = self._queue
        async with queue._connection(conn) as c, c.transaction(force_rollback=True):
            cur = c.cursor(row_factory=dict_row)
            try:
                step = next(op)
                while True:
                    await cur.execute(*_statement(queue.schema, queue.channel, step))
                    step = op.send(await cur.fetchall() if _rows(cur) else [])
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]


__all__ = ["AsyncIncidents", "Incidents"]
