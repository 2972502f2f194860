"""System schedules: recurring jobs Clawnsole runs itself (so far `cleanup`), and the seed jobs that map onto them.

A system schedule is a schedule like any other whose items go to the reserved queue `clawnsole` with a kind
of `clawnsole.*` (`clawnsole.cleanup`, payload {"older_than": "30d", ...}). No worker needs to be set up for
them: the scheduler process (`scheduler run`, `scheduler tick`, `worker-loop --with-scheduler`) claims the
items of that queue right after firing and runs them itself (`runtime.run_system_items`), so each run is an
item with a history, a result and retries like every other. Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clawnsole.errors import InvalidInput
from clawnsole.retention.models import CleanupOptions

SYSTEM_QUEUE = "clawnsole"
CLEANUP_KIND = "clawnsole.cleanup"
# `schedule add --system NAME` -> the kind of its items.
SYSTEMS = {"cleanup": CLEANUP_KIND}


def cleanup_title(options: CleanupOptions) -> str:
    return f"Clean up finished items older than {options.older_than}"


def system_fields(
    system: str, *, older_than: float | str | None = None, payload: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The queue, kind, title and payload of a system schedule's items (`schedule add --system cleanup`)."""
    if system not in SYSTEMS:
        raise InvalidInput("system", f"{system!r} is not a system job (known: {', '.join(SYSTEMS)})")
    given = dict(payload or {})
    if older_than is not None:
        given["older_than"] = older_than
    options = CleanupOptions.from_payload(given)
    return {
        "queue": SYSTEM_QUEUE,
        "kind": CLEANUP_KIND,
        "title": cleanup_title(options),
        "payload": options.to_payload(),
    }


def check(queue: str, kind: str | None, payload: Mapping[str, Any]) -> None:
    """Refuse a system item (kind clawnsole.*) that its runner could not run, naming the field."""
    if kind is None or not kind.startswith("clawnsole."):
        return
    if kind not in SYSTEMS.values():
        raise InvalidInput("kind", f"{kind!r} is not a system job (known: {', '.join(SYSTEMS.values())})")
    if queue != SYSTEM_QUEUE:
        raise InvalidInput(
            "queue", f"items of kind {kind!r} go to the {SYSTEM_QUEUE!r} queue, where the scheduler runs them"
        )
    CleanupOptions.from_payload(payload)


# The seed worker app's jobs (its scheduler.yaml `jobId`) that a system schedule does.
SEED_JOBS = ("maintenance.cleanup",)


def seed_fields(job_id: str, seed_input: Mapping[str, Any] | None) -> dict[str, Any]:
    """A seed scheduler.yaml entry's `jobId` and `input`, as a system schedule's name, queue, kind, title and
    payload: `maintenance.cleanup` with `input: {retentionDays: 30}` is `--system cleanup --older-than 30d`."""
    if job_id not in SEED_JOBS:
        raise InvalidInput(
            "jobId",
            f"{job_id!r} is not a job Clawnsole runs itself (known: {', '.join(SEED_JOBS)}); "
            "give name, queue and title (and kind) instead",
        )
    given = dict(seed_input or {})
    days = given.pop("retentionDays", 30)
    if given:
        raise InvalidInput(f"input.{sorted(given)[0]}", "is not an input of maintenance.cleanup (known: retentionDays)")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise InvalidInput("input.retentionDays", "must be a whole number of days, 1 or more")
    return {"name": job_id, **system_fields("cleanup", older_than=f"{days}d")}
