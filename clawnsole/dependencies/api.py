"""`Dependencies(wq)` / `AsyncDependencies(wq)`: an item's chain, read through an open work queue."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clawnsole.dependencies import ops
from clawnsole.dependencies.models import Links

if TYPE_CHECKING:
    from clawnsole.queue import AsyncWorkQueue, WorkQueue


class Dependencies:
    """Dependency chains over an open `WorkQueue` (enqueue with `wq.enqueue(..., after=[...])`)."""

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue

    def of(self, item_id: int) -> Links:
        """The item's prerequisites and dependents, each with its status."""
        return self._queue.run(ops.links(item_id))


class AsyncDependencies:
    """The asyncio twin of `Dependencies`."""

    def __init__(self, queue: AsyncWorkQueue) -> None:
        self._queue = queue

    async def of(self, item_id: int) -> Links:
        """The item's prerequisites and dependents, each with its status."""
        return await self._queue.run(ops.links(item_id))
