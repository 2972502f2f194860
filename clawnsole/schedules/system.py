"""System schedules: recurring jobs Clawnsole runs itself (`cleanup`, `replay`), and the seed jobs that map onto them.

A system schedule is a schedule like any other whose items go to the reserved queue `clawnsole` with a kind
of `clawnsole.*` (`clawnsole.cleanup`, payload {"older_than": "30d", ...}). No worker needs to be set up for
them: the scheduler process (`scheduler run`, `scheduler tick`, `worker-loop --with-scheduler`) claims the
items of that queue right after firing and runs them itself (`runtime.run_system_items`), so each run is an
item with a history, a result and retries like every other. Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clawnsole.deadletters.models import dead_letter_filter
from clawnsole.errors import InvalidInput
from clawnsole.retention.models import CleanupOptions

SYSTEM_QUEUE = "clawnsole"
CLEANUP_KIND = "clawnsole.cleanup"
REPLAY_KIND = "clawnsole.replay"
# `schedule add --system NAME` -> the kind of its items.
SYSTEMS = {"cleanup": CLEANUP_KIND, "replay": REPLAY_KIND}
# A replay's payload: the keyword options of `DeadLetters.replay` (`dlq replay`'s filters).
REPLAY_OPTIONS = ("queue", "kind", "exclude_kinds", "since", "error", "max_replays")


def cleanup_title(options: CleanupOptions) -> str:
    return f"Clean up finished items older than {options.older_than}"


def system_fields(
    system: str, *, older_than: float | str | None = None, payload: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The queue, kind, title and payload of a system schedule's items (`schedule add --system cleanup`)."""
    if system not in SYSTEMS:
        raise InvalidInput("system", f"{system!r} is not a system job (known: {', '.join(SYSTEMS)})")
    given = dict(payload or {})
    if system == "replay":
        if older_than is not None:
            raise InvalidInput("older_than", "only applies to --system cleanup (a replay takes since, in its payload)")
        replay = replay_payload(given)
        return {"queue": SYSTEM_QUEUE, "kind": REPLAY_KIND, "title": replay_title(replay), "payload": replay}
    if older_than is not None:
        given["older_than"] = older_than
    options = CleanupOptions.from_payload(given)
    return {
        "queue": SYSTEM_QUEUE,
        "kind": CLEANUP_KIND,
        "title": cleanup_title(options),
        "payload": options.to_payload(),
    }


def replay_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """A replay schedule's payload, checked like `dlq replay`'s options (one line naming a bad field)."""
    unknown = sorted(set(payload) - set(REPLAY_OPTIONS))
    if unknown:
        raise InvalidInput(f"payload.{unknown[0]}", f"is not a replay option (known: {', '.join(REPLAY_OPTIONS)})")
    kinds = payload.get("exclude_kinds", [])
    if isinstance(kinds, str) or not isinstance(kinds, list):
        raise InvalidInput("payload.exclude_kinds", "must be a list of kinds")
    dead_letter_filter(**payload)
    return dict(payload)


def replay_title(payload: Mapping[str, Any]) -> str:
    since = payload.get("since")
    return "Replay dead letters" + (f" of the last {since}" if since is not None else "")


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
    if kind == REPLAY_KIND:
        replay_payload(payload)
    else:
        CleanupOptions.from_payload(payload)


# The seed worker app's jobs (its scheduler.yaml `jobId`) that a system schedule does.
SEED_JOBS = ("maintenance.cleanup", "maintenance.retry")


def seed_fields(job_id: str, seed_input: Mapping[str, Any] | None) -> dict[str, Any]:
    """A seed scheduler.yaml entry's `jobId` and `input`, as a system schedule's name, queue, kind, title and
    payload: `maintenance.cleanup` with `input: {retentionDays: 30}` is `--system cleanup --older-than 30d`;
    `maintenance.retry` with `{maxRetries: 3, lookbackHours: 24, excludeJobs: [...]}` is a replay of what
    failed in the last 24 h, replayed fewer than 3 times, except those kinds (`dlq replay --since 24h
    --max-replays 3 --exclude-kind …`)."""
    if job_id not in SEED_JOBS:
        raise InvalidInput(
            "jobId",
            f"{job_id!r} is not a job Clawnsole runs itself (known: {', '.join(SEED_JOBS)}); "
            "give name, queue and title (and kind) instead",
        )
    given = dict(seed_input or {})
    if job_id == "maintenance.retry":
        return {"name": job_id, **system_fields("replay", payload=_seed_replay(given))}
    days = given.pop("retentionDays", 30)
    if given:
        raise InvalidInput(f"input.{sorted(given)[0]}", "is not an input of maintenance.cleanup (known: retentionDays)")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise InvalidInput("input.retentionDays", "must be a whole number of days, 1 or more")
    return {"name": job_id, **system_fields("cleanup", older_than=f"{days}d")}


def _seed_replay(given: dict[str, Any]) -> dict[str, Any]:
    """maintenance.retry's input as a replay payload."""
    retries = given.pop("maxRetries", 3)
    hours = given.pop("lookbackHours", 24)
    excluded = given.pop("excludeJobs", [])
    if given:
        raise InvalidInput(
            f"input.{sorted(given)[0]}",
            "is not an input of maintenance.retry (known: maxRetries, lookbackHours, excludeJobs)",
        )
    for name, value in (("maxRetries", retries), ("lookbackHours", hours)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidInput(f"input.{name}", "must be a whole number, 1 or more")
    if not isinstance(excluded, list) or not all(isinstance(k, str) for k in excluded):
        raise InvalidInput("input.excludeJobs", "must be a list of job names")
    return {"since": f"{hours}h", "max_replays": retries, "exclude_kinds": excluded}
