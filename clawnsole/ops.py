"""Every queue operation once, as a generator of named statements (sans-I/O).

An operation yields `Step`s (a statement name and its parameters), receives each step's rows, and returns
its result. `WorkQueue` runs them on a sync connection and `AsyncWorkQueue` on an asyncio one, so the logic
of an operation is written exactly once whichever way it is driven.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, TypeAlias, TypeVar

from psycopg.types.json import Jsonb

from clawnsole import item_options, validate
from clawnsole.errors import Conflict, InvalidInput, LeaseLost, NotFound, QueueDraining
from clawnsole.models import FINISHED, Enqueued, Event, Item, NewItem, QueueCount

Row = dict[str, Any]


@dataclass(frozen=True)
class Step:
    """Run the named statement with these parameters and send back its rows."""

    name: str
    params: dict[str, Any]


T = TypeVar("T")
Op: TypeAlias = Generator[Step, list[Row], T]
# An operation of several transactions (a schedule tick, an alert round, a replay in batches): it yields
# operations, each run in a transaction of its own, and receives their results (or their errors).
Plan: TypeAlias = Generator[Op[Any], Any, T]

# Most items carry no payload: nothing to check or copy.
_NO_PAYLOAD = Jsonb({})
# A racing enqueue can commit its key after our statement's snapshot; a fresh statement then sees it.
_ENQUEUE_TRIES = 5


def enqueue(
    queue: str,
    title: str,
    *,
    agent: str | None,
    kind: str | None = None,
    instructions: str | None = None,
    payload: dict[str, Any] | str | None = None,
    priority: int | str = 50,
    dedupe_key: str | None = None,
    key: dict[str, Any] | str | None = None,
    cooldown: float | str | None = None,
    run_at: datetime | str | None = None,
    delay: float | str | None = None,
    max_attempts: int = 3,
    backoff: float | str = 10.0,
    lease: float | str = 300.0,
    after: Iterable[int] | None = None,
    metadata: dict[str, Any] | str | None = None,
) -> Op[Enqueued]:
    """Add one item; with a dedupe key, return the item already holding it instead (created=False).

    `key` derives the dedupe key from these key fields (see `item_options.key_from_fields`). With `after`
    (ids of existing items) the item waits until they are all done, or is cancelled at once when one of them
    already failed or was cancelled (`Enqueued.note` says which). Refused with QueueDraining in a draining
    queue and NotFound for an unknown prerequisite, writing nothing.
    """
    if run_at is not None and delay is not None:
        raise InvalidInput("run_at", "give either a run time or a delay, not both")
    if key is not None:
        if dedupe_key is not None:
            raise InvalidInput("key", "give either key fields or a dedupe key, not both")
        dedupe_key = item_options.key_from_fields(key)
    dedupe_key = validate.dedupe_key(dedupe_key)
    if cooldown is not None and dedupe_key is None:
        raise InvalidInput("cooldown", "only applies to items with a dedupe key")
    checked_metadata = item_options.metadata(metadata)
    prerequisites = item_options.prerequisites(after)
    params: dict[str, Any] = {
        "queue": validate.queue_name(queue),
        "title": validate.title(title),
        "kind": validate.kind(kind),
        "instructions": validate.optional_text(instructions, "instructions", validate.MAX_PAYLOAD_BYTES),
        "payload": _NO_PAYLOAD if payload is None or payload == {} else Jsonb(validate.payload(payload)),
        "metadata": None if checked_metadata is None else Jsonb(checked_metadata),
        "priority": validate.priority(priority),
        "dedupe_key": dedupe_key,
        "cooldown": None if cooldown is None else validate.duration(cooldown, "cooldown", allow_zero=True),
        "run_at": None if run_at is None else validate.timestamp(run_at, "run_at"),
        "delay": None if delay is None else validate.duration(delay, "delay", allow_zero=True),
        "max_attempts": validate.positive_int(max_attempts, "max_attempts", maximum=1000),
        "backoff": validate.duration(backoff, "backoff", allow_zero=True),
        "lease": validate.duration(lease, "lease"),
        "agent": None if agent is None else validate.agent(agent),
    }
    # Items without prerequisites keep the plain statement: the hot path never locks or probes for chains.
    statement = "item_enqueue"
    if prerequisites:
        statement = "item_enqueue_after"
        params["after"] = prerequisites
    release = dedupe_key is not None
    for _ in range(_ENQUEUE_TRIES):
        if release:
            yield Step("item_dedupe_release", params)
        rows = yield Step(statement, params)
        if rows and rows[0]["refused"] is not None:
            _refuse(rows[0], params["queue"])
        # A holder that finished (and whose cooldown ran out) after the release step still holds the key:
        # release it again and retry, rather than hand back an item the cooldown has already let go of.
        release = bool(rows) and bool(rows[0]["cooled"])
        if rows and not release:
            return Enqueued(Item.from_row(rows[0]), bool(rows[0]["created"]), rows[0].get("note"))
    raise Conflict(f"dedupe key {dedupe_key!r} kept changing hands; try again")


def _refuse(row: Row, queue: str) -> NoReturn:
    """Raise what an enqueue statement that wrote nothing said (`refused`: missing or draining)."""
    if row.get("refused") == "missing":
        raise NotFound(f"no item with id {row['missing']} (a prerequisite given in after)")
    raise QueueDraining(row.get("draining") or queue)


# The settings a batch sends once (its first item's) and a row only where it differs, in this order.
_BATCH_SETTINGS = ("priority", "max_attempts", "backoff", "lease")


def enqueue_many(items: Sequence[NewItem], *, agent: str | None) -> Op[list[int]]:
    """Add a batch of items (no dedupe keys) in one statement, all or nothing; returns their ids in order.

    Items with `after` wait for those (existing) items as `enqueue` does. A draining queue in the batch
    refuses it all (QueueDraining), an unknown prerequisite too (NotFound).
    """
    if not items:
        return []
    # Names and settings repeat across a batch: each distinct one is checked once. The batch's first
    # queue and settings are sent once, as parameters; an item's row carries only what differs from them
    # (most rows: just the title), so there is less JSON to build, send and parse.
    names: set[tuple[str, str | None]] = set()
    settings: dict[tuple[Any, ...], tuple[int, int, float, float]] = {}
    batch: list[dict[str, Any]] = []
    chained = False
    base_queue = items[0].queue
    base: tuple[int, int, float, float] | None = None
    for index, item in enumerate(items):
        try:
            if (item.queue, item.kind) not in names:
                names.add((validate.queue_name(item.queue), validate.kind(item.kind)))
            key = (item.priority, item.max_attempts, item.backoff, item.lease)
            checked = settings.get(key)
            if checked is None:
                checked = settings[key] = (
                    validate.priority(item.priority),
                    validate.positive_int(item.max_attempts, "max_attempts", maximum=1000),
                    validate.duration(item.backoff, "backoff", allow_zero=True),
                    validate.duration(item.lease, "lease"),
                )
            if base is None:
                base = checked
            row: dict[str, Any] = {"title": validate.title(item.title)}
            # Left out rather than sent as null: the statement reads a missing key as NULL, and then takes
            # the batch's value (queue and settings) or the column's default.
            if item.queue != base_queue:
                row["queue"] = item.queue
            if checked is not base:
                for name, value, first in zip(_BATCH_SETTINGS, checked, base, strict=True):
                    if value != first:
                        row[name] = value
            if item.kind is not None:
                row["kind"] = item.kind
            if item.instructions is not None:
                row["instructions"] = validate.optional_text(
                    item.instructions, "instructions", validate.MAX_PAYLOAD_BYTES
                )
            if item.payload:
                row["payload"] = validate.payload(item.payload)
            if item.metadata is not None:
                row["metadata"] = item_options.metadata(item.metadata)
            if item.run_at is not None:
                row["run_at"] = validate.timestamp(item.run_at, "run_at").isoformat()
            if item.after:
                row["after"] = item_options.prerequisites(item.after)
                chained = True
            batch.append(row)
        except InvalidInput as error:
            raise InvalidInput(f"items[{index}].{error.field}", error.message) from None
    assert base is not None
    params = {
        "items": json.dumps(batch, separators=(",", ":")),
        "agent": agent,
        "queues": sorted({q for q, _ in names}),
        "queue": base_queue,
        **dict(zip(_BATCH_SETTINGS, base, strict=True)),
    }
    rows = yield Step("item_enqueue_many_after" if chained else "item_enqueue_many", params)
    if not rows or rows[0]["ids"] is None:  # nothing was inserted: the row says why
        _refuse(rows[0] if rows else {}, items[0].queue)
    return list(rows[0]["ids"])


# The claim statement by whether one queue is named (its own, cheaper to plan) or several.
CLAIM_STATEMENTS = {True: "item_claim_one", False: "item_claim"}


def claim(
    queues: Sequence[str],
    *,
    agent: str,
    lease: float | str | None = None,
    limit: int = 1,
    recover: bool = True,
) -> Op[list[Item]]:
    """Claim up to `limit` due items, recovering expired leases in these queues first."""
    names = list(dict.fromkeys(validate.queue_name(q) for q in queues)) or _no_queue()
    params = {
        "queues": names,
        "agent": validate.agent(agent),
        "lease": None if lease is None else validate.duration(lease, "lease"),
        "limit": validate.positive_int(limit, "limit", maximum=10_000),
    }
    if recover:
        yield Step("lease_recover_expired", params)
    rows = yield Step(CLAIM_STATEMENTS[len(names) == 1], params)
    return [Item.from_row(r) for r in rows]


def _no_queue() -> list[str]:
    raise InvalidInput("queue", "name at least one queue")


def _diagnose(item_id: int, agent: str | None, action: str) -> Op[None]:
    """Raise the error that explains why a fenced write on `item_id` changed nothing."""
    rows = yield Step("item_get", {"id": item_id})
    if not rows:
        raise NotFound(f"no item with id {item_id}")
    status = rows[0]["status"]
    if status in FINISHED:
        raise Conflict(f"item {item_id} is already {status}; cannot {action} it")
    raise LeaseLost(
        f"lease lost: item {item_id} is no longer held by {agent or 'this holder'!r} with that lease ({status})"
    )


def _fenced(item_id: int, agent: str | None, lease_token: str | None, *, by_agent: bool) -> dict[str, Any]:
    """Parameters of a write fenced by the lease token (and by the holder too when one is named).

    The token is required: an agent name alone cannot tell one claim of an item from the next claim by a
    process with the same name, so a stale writer could finish or dead-letter the newer claim. Only the
    command line's documented `--agent` convenience (`by_agent`) may leave it out: see `_token`.
    """
    if lease_token is None and not (by_agent and agent is not None):
        raise InvalidInput("lease_token", "give the lease token the claim returned")
    return {
        "id": validate.item_id(item_id),
        "agent": None if agent is None else validate.agent(agent),
        "lease_token": validate.lease_token(lease_token, "lease_token"),
    }


def _token(params: dict[str, Any], action: str) -> Op[None]:
    """Fill in the token of the claim the named agent holds now, when none was given (`by_agent`).

    The write that follows is fenced by that token, so a claim made after this read is still safe; one made
    before it by a process with the same agent name is taken for this caller's.
    """
    if params["lease_token"] is not None:
        return
    rows = yield Step("item_get", {"id": params["id"]})
    if rows and rows[0]["status"] == "claimed" and rows[0]["claimed_by"] == params["agent"]:
        params["lease_token"] = str(rows[0]["lease_token"])
        return
    yield from _diagnose(params["id"], params["agent"], action)


def progress(
    item_id: int,
    *,
    agent: str | None,
    lease_token: str | None = None,
    note: str | None = None,
    percent: int | None = None,
    extend: float | str | None = None,
    record: bool = True,
    by_agent: bool = False,
) -> Op[Item]:
    """Renew the lease (by the item's lease length or `extend`) and store a progress note/percent."""
    params = _fenced(item_id, agent, lease_token, by_agent=by_agent) | {
        "note": validate.optional_text(note, "note", 10_000),
        "percent": validate.percent(percent),
        "extend": None if extend is None else validate.duration(extend, "extend"),
        "record": record,
    }
    yield from _token(params, "renew")
    rows = yield Step("lease_extend", params)
    if not rows:
        yield from _diagnose(item_id, agent, "renew")
    return Item.from_row(rows[0])


def done(
    item_id: int, *, agent: str | None, lease_token: str | None = None, result: Any = None, by_agent: bool = False
) -> Op[Item]:
    """Finish a held item successfully."""
    params = _fenced(item_id, agent, lease_token, by_agent=by_agent) | {
        "result": None if result is None else Jsonb(validate.json_value(result, "result"))
    }
    yield from _token(params, "finish")
    rows = yield Step("item_complete", params)
    if not rows:
        yield from _diagnose(item_id, agent, "finish")
    return Item.from_row(rows[0])


def fail(
    item_id: int,
    *,
    agent: str | None,
    error: str,
    lease_token: str | None = None,
    retry: bool = True,
    backoff: float | str | None = None,
    by_agent: bool = False,
) -> Op[Item]:
    """Record a failed attempt: retried after a backoff while attempts remain, else failed for good."""
    params = _fenced(item_id, agent, lease_token, by_agent=by_agent) | {
        "error": validate.optional_text(error, "error", validate.MAX_ERROR_BYTES) or "failed",
        "retry": retry,
        "backoff": None if backoff is None else validate.duration(backoff, "backoff", allow_zero=True),
    }
    yield from _token(params, "fail")
    rows = yield Step("item_fail", params)
    if not rows:
        yield from _diagnose(item_id, agent, "fail")
    return Item.from_row(rows[0])


def cancel(item_id: int, *, agent: str | None, reason: str | None = None) -> Op[Item]:
    """Cancel a pending or waiting item; the items waiting for it are cancelled too (transitively)."""
    params = {
        "id": validate.item_id(item_id),
        "agent": agent,
        "reason": validate.optional_text(reason, "reason", 10_000),
    }
    rows = yield Step("item_cancel", params)
    if not rows:
        current = yield Step("item_get", {"id": item_id})
        if not current:
            raise NotFound(f"no item with id {item_id}")
        raise Conflict(f"item {item_id} is {current[0]['status']}; only pending or waiting items can be cancelled")
    return Item.from_row(rows[0])


def retry(item_id: int, *, agent: str | None) -> Op[Item]:
    """Requeue a failed or cancelled item with fresh attempts: pending, or waiting while some of its
    prerequisites are not done."""
    rows = yield Step("item_requeue", {"id": validate.item_id(item_id), "agent": agent})
    if not rows:
        current = yield Step("item_get", {"id": item_id})
        if not current:
            raise NotFound(f"no item with id {item_id}")
        raise Conflict(f"item {item_id} is {current[0]['status']}; only failed or cancelled items can be retried")
    return Item.from_row(rows[0])


def get(item_id: int) -> Op[Item]:
    """One item by id."""
    rows = yield Step("item_get", {"id": validate.item_id(item_id)})
    if not rows:
        raise NotFound(f"no item with id {item_id}")
    return Item.from_row(rows[0])


def list_items(
    queue: str | None = None, status: str | None = None, limit: int = 100, metadata: dict[str, Any] | None = None
) -> Op[list[Item]]:
    """Items, newest first, optionally of one queue and one status, and whose metadata contains `metadata`."""
    wanted = item_options.metadata(metadata)
    params = {
        "queue": None if queue is None else validate.queue_name(queue),
        "status": validate.status(status),
        "limit": validate.positive_int(limit, "limit", maximum=100_000),
        "metadata": None if not wanted else Jsonb(wanted),
    }
    rows = yield Step("item_list", params)
    return [Item.from_row(r) for r in rows]


def history(item_id: int) -> Op[list[Event]]:
    """The events of one item, oldest first."""
    yield from get(item_id)
    rows = yield Step("item_history", {"id": item_id})
    return [Event.from_row(r) for r in rows]


def status(queue: str | None = None) -> Op[list[QueueCount]]:
    """Counts per queue and status, with counts by kind and priority and the dedupe keys in cooldown."""
    rows = yield Step("queue_status", {"queue": None if queue is None else validate.queue_name(queue)})
    return [
        QueueCount(
            r["queue"],
            r["status"],
            int(r["items"]),
            None if r["oldest_pending_seconds"] is None else float(r["oldest_pending_seconds"]),
            int(r["expired_leases"]),
            int(r["dedupe_in_cooldown"]),
            {k: int(v) for k, v in r["by_kind"].items()},
            # By priority, highest first (jsonb orders its keys by length, then bytes).
            {k: int(v) for k, v in sorted(r["by_priority"].items(), key=lambda kv: -int(kv[0]))},
        )
        for r in rows
    ]


# The multi-row statements lock their rows in the order of the arrays they are given; sorting by id here
# gives every one of them the same order, so a heartbeat and a finisher never deadlock on each other.


def heartbeat(leases: Iterable[tuple[int, str]], *, agent: str) -> Op[set[tuple[int, str]]]:
    """Renew every listed lease still held by `agent`; returns the (id, token) pairs still held."""
    pairs = sorted(leases)
    if not pairs:
        return set()
    rows = yield Step(
        "lease_extend_many", {"ids": [p[0] for p in pairs], "tokens": [p[1] for p in pairs], "agent": agent}
    )
    return {(int(r["id"]), str(r["token"])) for r in rows}


def complete_many(outcomes: Iterable[tuple[int, str, Any]], *, agent: str) -> Op[set[tuple[int, str]]]:
    """Finish a batch of held items as done; returns the (id, token) pairs whose lease was still held."""
    batch = sorted(outcomes, key=lambda b: (b[0], b[1]))
    if not batch:
        return set()
    rows = yield Step(
        "item_complete_many",
        {
            "ids": [b[0] for b in batch],
            "tokens": [b[1] for b in batch],
            "results": [None if b[2] is None else Jsonb(b[2]) for b in batch],
            "agent": agent,
        },
    )
    return {(int(r["id"]), str(r["token"])) for r in rows}


def release(leases: Iterable[tuple[int, str]], *, agent: str, reason: str) -> Op[set[tuple[int, str]]]:
    """Give held items back to pending without charging the attempt; returns the (id, token) pairs released."""
    pairs = sorted(leases)
    if not pairs:
        return set()
    rows = yield Step(
        "lease_release_many",
        {"ids": [p[0] for p in pairs], "tokens": [p[1] for p in pairs], "agent": agent, "reason": reason},
    )
    return {(int(r["id"]), str(r["token"])) for r in rows}


def next_due(queues: Sequence[str]) -> Op[float | None]:
    """Seconds until the earliest pending item in these queues is due (<= 0: due now; None: none)."""
    rows = yield Step("queue_next_due", {"queues": list(queues)})
    seconds = rows[0]["seconds"] if rows else None
    return None if seconds is None else float(seconds)
