"""The cleanup as named statements (sans-I/O, like `clawnsole.ops`).

A cleanup is many short transactions, never one long one: `cleanup` is a *plan*, a generator of operations
that `Retention` runs one by one (each through `WorkQueue.run`, one transaction each), like the schedules'
tick. So a cleanup of millions of rows holds each row lock for one batch only, and a cleanup stopped halfway
has committed every batch it finished.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeAlias

from clawnsole.ops import Op, Step
from clawnsole.retention.models import CleanupOptions, CleanupReport

Plan: TypeAlias = Generator[Op[Any], Any, CleanupReport]


def cutoff(options: CleanupOptions) -> Op[datetime]:
    """The instant the cleanup works to: now() - older_than, on the database clock."""
    rows = yield Step("retention_cutoff", {"older_than": options.older_than_seconds})
    at: datetime = rows[0]["cutoff"]
    return at


def batch(options: CleanupOptions, at: datetime, after: int) -> Op[dict[str, Any]]:
    """Delete one batch of items (ids above `after`) with their events; the counts and the last id looked at."""
    rows = yield Step("item_cleanup_batch", options.params() | {"cutoff": at, "after": after})
    return rows[0]


def count(options: CleanupOptions, at: datetime) -> Op[dict[str, Any]]:
    """What a cleanup would delete now, and what it keeps on purpose (cooldowns, prerequisites)."""
    rows = yield Step("item_cleanup_count", options.params() | {"cutoff": at})
    return rows[0]


def cleanup(
    options: CleanupOptions,
    *,
    dry_run: bool = False,
    keep_going: Callable[[CleanupReport], bool] | None = None,
) -> Plan:
    """Delete the finished items `options` names, batch by batch (see the module doc).

    `keep_going` is called after every batch with the totals so far; False stops the cleanup there (the
    batches done stay done). A dry run counts in one read and writes nothing.
    """
    at: datetime = yield cutoff(options)
    if dry_run:
        counted = yield count(options, at)
        items = int(counted["items"])
        return CleanupReport(
            cutoff=at,
            dry_run=True,
            items=items,
            events=int(counted["events"]),
            batches=-(-items // options.batch),
            kept_in_cooldown=int(counted["kept_in_cooldown"]),
            kept_as_prerequisite=int(counted["kept_as_prerequisite"]),
        )
    report = CleanupReport(cutoff=at, dry_run=False)
    after = 0
    while True:
        done = yield batch(options, at, after)
        if int(done["items"]):
            report = replace(
                report,
                items=report.items + int(done["items"]),
                events=report.events + int(done["events"]),
                dependencies=report.dependencies + int(done["dependencies"]),
                batches=report.batches + 1,
            )
        # Fewer candidates than a batch: the walk reached the end of what matches.
        if int(done["candidates"]) < options.batch or done["last_id"] is None:
            break
        after = int(done["last_id"])
        if keep_going is not None and not keep_going(report):
            report = replace(report, stopped=True)
            break
    remaining = yield count(options, at)
    return replace(
        report,
        kept_in_cooldown=int(remaining["kept_in_cooldown"]),
        kept_as_prerequisite=int(remaining["kept_as_prerequisite"]),
        left=int(remaining["items"]),
    )
