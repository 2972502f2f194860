"""The handler the reliability workers run (`--handler tests.reliability.handlers:run`): what it does comes
from the item's payload, so one worker binary serves every scenario."""

from __future__ import annotations

from typing import Any

from clawnsole.models import Item
from clawnsole.worker.context import Context


def run(item: Item, ctx: Context) -> dict[str, Any]:
    """Payload keys, all optional: `sleep_ms` (waits, as I/O-bound work does), `cpu_loops` (holds the GIL,
    as CPU-bound work does, which starves the worker's own threads), `progress` (reports halfway)."""
    payload = item.payload or {}
    sleep = float(payload.get("sleep_ms", 0)) / 1000
    total = 0
    for i in range(int(payload.get("cpu_loops", 0))):
        total += i * i
    # Wait on the cancel event, not time.sleep: a worker shutting down gets its thread back at once.
    ctx.cancelled.wait(sleep / 2)
    if payload.get("progress"):
        ctx.progress(note="halfway", percent=50)
    ctx.cancelled.wait(sleep / 2)
    ctx.raise_if_cancelled()
    return {"n": payload.get("n"), "by": ctx.agent}
