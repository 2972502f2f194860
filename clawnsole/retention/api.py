"""`Retention` (sync) and `AsyncRetention` (asyncio): delete old finished items through a work queue.

    with WorkQueue(url) as wq:
        report = Retention(wq).cleanup("30d")              # done, failed and cancelled items of every queue
        Retention(wq).cleanup("7d", statuses=["done"], queue="ops", dry_run=True)

Both are thin: each batch of the plan in `clawnsole.retention.ops` runs through the queue's `run`, one short
transaction each, so no lock is held longer than one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from clawnsole.queue import AsyncWorkQueue, WorkQueue
from clawnsole.retention import ops as retention_ops
from clawnsole.retention.models import DEFAULT_BATCH, CleanupOptions, CleanupReport

KeepGoing = Callable[[CleanupReport], bool]


class Retention:
    """Cleanup of finished items, run through an open `WorkQueue`."""

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue

    def cleanup(
        self,
        older_than: float | str,
        *,
        statuses: Sequence[str] | str | None = None,
        queue: str | None = None,
        batch: int = DEFAULT_BATCH,
        dry_run: bool = False,
        keep_going: KeepGoing | None = None,
    ) -> CleanupReport:
        """Delete items finished more than `older_than` ago (e.g. "30d") with their events, `batch` per
        transaction; never a pending, waiting or claimed item. `dry_run` counts without deleting."""
        options = CleanupOptions.checked(older_than, statuses=statuses, queue=queue, batch=batch)
        return self.run(options, dry_run=dry_run, keep_going=keep_going)

    def run(
        self, options: CleanupOptions, *, dry_run: bool = False, keep_going: KeepGoing | None = None
    ) -> CleanupReport:
        """Run a cleanup from already checked options (what a `clawnsole.cleanup` item carries)."""
        plan = retention_ops.cleanup(options, dry_run=dry_run, keep_going=keep_going)
        try:
            op = next(plan)
            while True:
                op = plan.send(self._queue.run(op))
        except StopIteration as stop:
            report: CleanupReport = stop.value
            return report


class AsyncRetention:
    """The asyncio twin of `Retention`, run through an open `AsyncWorkQueue`."""

    def __init__(self, queue: AsyncWorkQueue) -> None:
        self._queue = queue

    async def cleanup(
        self,
        older_than: float | str,
        *,
        statuses: Sequence[str] | str | None = None,
        queue: str | None = None,
        batch: int = DEFAULT_BATCH,
        dry_run: bool = False,
        keep_going: KeepGoing | None = None,
    ) -> CleanupReport:
        """Delete old finished items with their events, batch by batch (see `Retention.cleanup`)."""
        options = CleanupOptions.checked(older_than, statuses=statuses, queue=queue, batch=batch)
        return await self.run(options, dry_run=dry_run, keep_going=keep_going)

    async def run(
        self, options: CleanupOptions, *, dry_run: bool = False, keep_going: KeepGoing | None = None
    ) -> CleanupReport:
        """Run a cleanup from already checked options."""
        plan = retention_ops.cleanup(options, dry_run=dry_run, keep_going=keep_going)
        try:
            op: Any = next(plan)
            while True:
                op = plan.send(await self._queue.run(op))
        except StopIteration as stop:
            report: CleanupReport = stop.value
            return report


__all__ = ["AsyncRetention", "CleanupOptions", "CleanupReport", "Retention"]
