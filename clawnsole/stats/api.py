"""`Stats` (sync) and `AsyncStats` (asyncio): what the event log says about how items ran.

    with WorkQueue(url) as wq:
        for row in Stats(wq).stats(queue="ops", since="1h"):
            print(row.kind, row.done, row.failed, row.run_p95)

Both are thin: each method runs one operation of `clawnsole.stats.ops` through the queue (reads, or the one
fenced insert of `record_step`).
"""

from __future__ import annotations

import builtins
from collections.abc import Collection

from clawnsole.queue import AsyncWorkQueue, WorkQueue
from clawnsole.stats import ops as stats_ops
from clawnsole.stats import overview as overview_ops
from clawnsole.stats.models import KindStats, StepStats
from clawnsole.stats.overview import Bucket, QueueOverview


class Stats:
    """Stats over the event history, run through an open `WorkQueue`."""

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue

    def stats(
        self, *, queue: str | None = None, kind: str | None = None, since: float | str | None = None
    ) -> builtins.list[KindStats]:
        """Per queue and kind over `since` (default 24h): done, failed, retried, success rate, run/wait p50/p95."""
        return self._queue.run_steps(stats_ops.stats(queue, kind, since))

    def breakdown(
        self, *, queue: str | None = None, kind: str | None = None, since: float | str | None = None
    ) -> builtins.list[StepStats]:
        """Time per handler step per queue and kind over `since` (default 24h): count, total, p50, p95."""
        return self._queue.run_steps(stats_ops.breakdown(queue, kind, since))

    def record_step(
        self, item_id: int, *, lease_token: str, step: str, seconds: float, error: str | None = None
    ) -> bool:
        """Record that a held item's handler spent `seconds` in `step`; False when the lease is gone."""
        return self._queue.run_steps(
            stats_ops.record_step(item_id, lease_token=lease_token, step=step, seconds=seconds, error=error)
        )

    def overview(self, *, visible: Collection[str] | None = None) -> builtins.list[QueueOverview]:
        """Every queue (of `visible`) with its counts now and over the last hour, from indexes."""
        return self._queue.run_steps(overview_ops.queue_overview(visible))

    def throughput(
        self,
        window: float | str = "1h",
        bucket: float | str = "1m",
        *,
        visible: Collection[str] | None = None,
        queue: str | None = None,
    ) -> builtins.list[Bucket]:
        """Done and failed per bucket over the last `window`, oldest first, every bucket present."""
        return self._queue.run_steps(overview_ops.throughput(window, bucket, visible=visible, queue=queue))


class AsyncStats:
    """The asyncio twin of `Stats`, run through an open `AsyncWorkQueue`."""

    def __init__(self, queue: AsyncWorkQueue) -> None:
        self._queue = queue

    async def stats(
        self, *, queue: str | None = None, kind: str | None = None, since: float | str | None = None
    ) -> builtins.list[KindStats]:
        """Per queue and kind over `since` (default 24h): done, failed, retried, success rate, run/wait p50/p95."""
        return await self._queue.run_steps(stats_ops.stats(queue, kind, since))

    async def breakdown(
        self, *, queue: str | None = None, kind: str | None = None, since: float | str | None = None
    ) -> builtins.list[StepStats]:
        """Time per handler step per queue and kind over `since` (default 24h): count, total, p50, p95."""
        return await self._queue.run_steps(stats_ops.breakdown(queue, kind, since))

    async def record_step(
        self, item_id: int, *, lease_token: str, step: str, seconds: float, error: str | None = None
    ) -> bool:
        """Record that a held item's handler spent `seconds` in `step`; False when the lease is gone."""
        return await self._queue.run_steps(
            stats_ops.record_step(item_id, lease_token=lease_token, step=step, seconds=seconds, error=error)
        )

    async def overview(self, *, visible: Collection[str] | None = None) -> builtins.list[QueueOverview]:
        """Every queue (of `visible`) with its counts now and over the last hour, from indexes."""
        return await self._queue.run_steps(overview_ops.queue_overview(visible))

    async def throughput(
        self,
        window: float | str = "1h",
        bucket: float | str = "1m",
        *,
        visible: Collection[str] | None = None,
        queue: str | None = None,
    ) -> builtins.list[Bucket]:
        """Done and failed per bucket over the last `window`, oldest first, every bucket present."""
        return await self._queue.run_steps(overview_ops.throughput(window, bucket, visible=visible, queue=queue))


__all__ = ["AsyncStats", "Stats"]
