"""The workers registry as an operator reads it (sans-I/O operations, like `clawnsole.ops`). The rows are
written by the workers themselves (`clawnsole.worker.presence`)."""

from __future__ import annotations

from clawnsole.incidents.models import WorkerInfo
from clawnsole.ops import Op, Step

# Rows of workers gone longer than this are deleted (by the next worker that registers, or by `prune`).
KEEP_GONE_SECONDS = 24 * 3600.0
PRUNE_BATCH = 1000


def list_workers(*, include_stopped: bool = False) -> Op[list[WorkerInfo]]:
    """Every registered worker by agent: alive ones and silent ones (gone without a clean stop); cleanly
    stopped ones too with `include_stopped`."""
    rows = yield Step("worker_list", {"all": include_stopped})
    return [WorkerInfo.from_row(r) for r in rows]


def prune(*, keep: float = KEEP_GONE_SECONDS) -> Op[int]:
    """Delete the rows of workers gone for longer than `keep` seconds, in bounded batches; returns how many."""
    deleted = 0
    while True:
        rows = yield Step("worker_prune", {"keep": keep, "limit": PRUNE_BATCH})
        deleted += len(rows)
        if len(rows) < PRUNE_BATCH:
            return deleted
