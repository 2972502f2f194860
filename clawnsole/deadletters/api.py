"""`DeadLetters` (sync) and `AsyncDeadLetters` (asyncio): the failed items, listed, shown and replayed.

Both are thin: every method runs operations of `clawnsole.deadletters.ops` through an open work queue, so
an application, an agent tool and the `clawnsole dlq` commands share one piece of logic.

    with WorkQueue(url) as wq:
        report = DeadLetters(wq).replay(since="24h", exclude_kinds=["maintenance.cleanup"])
"""

from __future__ import annotations

import builtins
from typing import Any, TypeVar

from clawnsole.deadletters import ops as dlq_ops
from clawnsole.deadletters.models import DeadLetter, DeadLetterGroup, ReplayPlan, ReplayReport, dead_letter_filter
from clawnsole.models import Item
from clawnsole.queue import AsyncWorkQueue, WorkQueue

T = TypeVar("T")


class DeadLetters:
    """The dead-letter items of an open `WorkQueue`.

    The filter options, shared by every method: `queue`, `kind`, `exclude_kinds`, `since` (a duration:
    failed at most that long ago), `error` (text in the last error), `ids`, `max_replays`.
    """

    def __init__(self, queue: WorkQueue) -> None:
        self._queue = queue

    def list(self, *, limit: int = 100, **where: Any) -> builtins.list[Item]:
        """Matching dead letters, newest failure first."""
        return self._queue.run(dlq_ops.list_dead(dead_letter_filter(**where), limit))

    def groups(self, *, limit: int = 100, **where: Any) -> builtins.list[DeadLetterGroup]:
        """Matching dead letters counted per queue, kind and error (its first line), newest failure first."""
        return self._queue.run(dlq_ops.groups(dead_letter_filter(**where), limit))

    def get(self, item_id: int) -> DeadLetter:
        """One dead letter with its full error and history (NotFound when it is not failed)."""
        return self._queue.run(dlq_ops.get(item_id))

    def plan(self, **where: Any) -> ReplayPlan:
        """What `replay` would touch, per queue (NotFound naming any of `ids` that is not a dead letter)."""
        return self._queue.run(dlq_ops.plan(dead_letter_filter(**where)))

    def replay(self, *, dry_run: bool = False, batch_size: int = dlq_ops.REPLAY_BATCH, **where: Any) -> ReplayReport:
        """Put matching dead letters back to pending with fresh attempts, in batches of their own
        transactions (`requeued` with {"by", "replay": true}); safe beside a concurrent replay."""
        plan = dlq_ops.replay(
            dead_letter_filter(**where), agent=self._queue.agent, dry_run=dry_run, batch_size=batch_size
        )
        return self._queue.run_plan(plan)


class AsyncDeadLetters:
    """The asyncio twin of `DeadLetters`, over an open `AsyncWorkQueue`."""

    def __init__(self, queue: AsyncWorkQueue) -> None:
        self._queue = queue

    async def list(self, *, limit: int = 100, **where: Any) -> builtins.list[Item]:
        """Matching dead letters, newest failure first."""
        return await self._queue.run(dlq_ops.list_dead(dead_letter_filter(**where), limit))

    async def groups(self, *, limit: int = 100, **where: Any) -> builtins.list[DeadLetterGroup]:
        """Matching dead letters counted per queue, kind and error (its first line), newest failure first."""
        return await self._queue.run(dlq_ops.groups(dead_letter_filter(**where), limit))

    async def get(self, item_id: int) -> DeadLetter:
        """One dead letter with its full error and history (NotFound when it is not failed)."""
        return await self._queue.run(dlq_ops.get(item_id))

    async def plan(self, **where: Any) -> ReplayPlan:
        """What `replay` would touch, per queue (NotFound naming any of `ids` that is not a dead letter)."""
        return await self._queue.run(dlq_ops.plan(dead_letter_filter(**where)))

    async def replay(
        self, *, dry_run: bool = False, batch_size: int = dlq_ops.REPLAY_BATCH, **where: Any
    ) -> ReplayReport:
        """Put matching dead letters back to pending in batches (see `DeadLetters.replay`)."""
        plan = dlq_ops.replay(
            dead_letter_filter(**where), agent=self._queue.agent, dry_run=dry_run, batch_size=batch_size
        )
        return await self._queue.run_plan(plan)


def ids_from_text(text: str) -> list[int]:
    """Ids from `1,2,3` (spaces allowed), for command lines; raises InvalidInput naming `ids`."""
    from clawnsole.errors import InvalidInput

    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise InvalidInput("ids", "name at least one id, e.g. --ids 12,15")
    try:
        return [int(p) for p in parts]
    except ValueError:
        bad = next(p for p in parts if not p.lstrip("+").isdigit())
        raise InvalidInput("ids", f"{bad!r} is not an id (give ids separated by commas, e.g. 12,15)") from None


__all__ = ["AsyncDeadLetters", "DeadLetters", "ids_from_text"]
