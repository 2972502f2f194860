"""Calling a handler from a test: no database and no worker, just the handler, an item and a Context.

    from clawnsole.worker import Registry
    from clawnsole.worker.testing import run_handler

    run = run_handler(Registry.from_module("ops_jobs"), kind="health-check", payload={"url": "…"})
    assert run.result == {"ok": True}

The result must be what a worker could store (JSON of at most 1 MiB), or the call raises InvalidInput, as
the worker would fail the item; a handler's HandlerFailed and other exceptions are raised as they are.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from clawnsole import validate
from clawnsole.models import Item
from clawnsole.worker.context import Context
from clawnsole.worker.handlers import Handler


@dataclass
class LocalRun:
    """What a handler did: its result, and every progress report it made, as (note, percent)."""

    item: Item
    result: Any
    progress: list[tuple[str | None, int | None]] = field(default_factory=list)


def sample_item(
    *,
    kind: str | None = None,
    payload: dict[str, Any] | None = None,
    title: str = "test item",
    instructions: str | None = None,
    queue: str = "test",
) -> Item:
    """An item as a worker hands it to a handler: claimed, first attempt, a fresh lease."""
    now = datetime.now(UTC)
    return Item(
        id=1,
        queue=validate.queue_name(queue),
        kind=validate.kind(kind),
        title=validate.title(title),
        instructions=instructions,
        payload=validate.payload(payload or {}),
        priority=50,
        status="claimed",
        dedupe_key=None,
        run_at=now,
        attempts=1,
        max_attempts=3,
        claimed_by="test",
        lease_token=uuid.uuid4(),
        lease_expires_at=now + timedelta(minutes=5),
        progress_note=None,
        progress_percent=None,
        result=None,
        last_error=None,
        created_at=now,
        updated_at=now,
        claimed_at=now,
        finished_at=None,
    )


def run_handler(handler: Handler, item: Item | None = None, **options: Any) -> LocalRun:
    """Run `handler` on `item` (or on `sample_item(**options)`) with a Context that records progress."""
    item = item or sample_item(**options)
    reports: list[tuple[str | None, int | None]] = []

    def progress(ctx: Context, note: str | None, percent: int | None) -> bool:
        reports.append((validate.optional_text(note, "note", 10_000), validate.percent(percent)))
        return True

    ctx = Context(item, str(item.lease_token), "test", progress)
    result = handler(item, ctx)
    return LocalRun(item, None if result is None else validate.json_value(result, "result"), reports)
