"""Dead letters over HTTP: list, show, replay (thin over `clawnsole.deadletters`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict

from clawnsole.deadletters.api import AsyncDeadLetters
from clawnsole.deadletters.models import ReplayReport
from clawnsole.errors import InvalidInput
from clawnsole.queue import AsyncWorkQueue
from clawnsole.web.auth import Principal, mutation, queue_of, require
from clawnsole.web.mutations import as_agent

router = APIRouter(prefix="/api/v1/dlq", tags=["dead letters"])


class Replay(BaseModel):
    """Which dead letters to put back to pending (the filter of `clawnsole dlq replay`), or only say
    which (`dry_run`)."""

    model_config = ConfigDict(extra="forbid")
    queue: str | None = None
    kind: str | None = None
    exclude_kinds: list[str] = []
    since: str | float | None = None
    ids: list[int] | None = None
    error: str | None = None
    max_replays: int | None = None
    dry_run: bool = False


def queues_for(principal: Principal, queue: str | None) -> list[str | None]:
    """The queues a filter runs over: the one asked (if the token may see it), all (None) for a token over
    every queue, else each of the token's queues."""
    if queue is not None:
        principal.check_queue(queue)
        return [queue]
    return [None] if principal.queue_list is None else list(principal.queue_list)


@router.get("")
async def list_dead_letters(
    queue: str | None = None,
    kind: str | None = None,
    exclude_kind: list[str] = Query(default=[]),
    since: str | None = None,
    error: str | None = None,
    max_replays: int | None = None,
    limit: int = 100,
    principal: Principal = Depends(require("read")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Dead letters (failed items), newest failure first, without instructions (as `dlq list --json`)."""
    letters = AsyncDeadLetters(wq)
    found = []
    for name in queues_for(principal, queue):
        found += await letters.list(
            queue=name, kind=kind, exclude_kinds=exclude_kind, since=since, error=error, max_replays=max_replays,
            limit=limit,
        )  # fmt: skip
    # Merged across the token's queues: newest failure first, then the limit over all of them.
    found.sort(key=lambda i: (i.finished_at is not None, i.finished_at, i.id), reverse=True)
    return {"dead_letters": [i.to_json(with_instructions=False) for i in found[:limit]]}


@router.get("/groups")
async def dead_letter_groups(
    queue: str | None = None,
    kind: str | None = None,
    exclude_kind: list[str] = Query(default=[]),
    since: str | None = None,
    error: str | None = None,
    max_replays: int | None = None,
    limit: int = 100,
    principal: Principal = Depends(require("read")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Matching dead letters counted per queue, kind and error (its first line), the newest failure first."""
    letters = AsyncDeadLetters(wq)
    found = []
    for name in queues_for(principal, queue):
        found += await letters.groups(
            queue=name, kind=kind, exclude_kinds=exclude_kind, since=since, error=error, max_replays=max_replays,
            limit=limit,
        )  # fmt: skip
    found.sort(key=lambda g: (g.last_failed_at is not None, g.last_failed_at), reverse=True)
    return {"groups": [g.to_json() for g in found[:limit]]}


@router.get("/{item_id}")
async def show_dead_letter(
    item_id: int, principal: Principal = Depends(require("read")), wq: AsyncWorkQueue = Depends(queue_of)
) -> dict[str, Any]:
    """One dead letter with its full last error and history (404 when it is not failed)."""
    letter = await AsyncDeadLetters(wq).get(item_id)
    principal.check_queue(letter.item.queue, f"no dead letter {item_id}")
    data = letter.to_json()
    if not principal.sees_instructions:
        data.pop("instructions", None)
    return data


@router.post("/replay")
async def replay_dead_letters(
    body: Replay,
    request: Request,
    principal: Principal = Depends(require("operate")),
    wq: AsyncWorkQueue = Depends(queue_of),
) -> dict[str, Any]:
    """Put matching dead letters back to pending with fresh attempts (`dry_run`: only count them).

    A token limited to some queues names one of them (`queue`), unless it has only one."""
    options = body.model_dump(exclude={"dry_run"})
    async with mutation(request, principal, "dlq.replay", body.queue or "*", {"dry_run": body.dry_run}):
        report = await replay_as(wq, principal, options, dry_run=body.dry_run)
    return report.to_json()


async def replay_as(
    wq: AsyncWorkQueue, principal: Principal, options: dict[str, Any], *, dry_run: bool
) -> ReplayReport:
    """Replay (or plan, `dry_run`) the dead letters matching `options` as the token: in its queues only —
    a token limited to some names one of them (`queue`), unless it has only one."""
    queue = options.get("queue")
    if queue is None and principal.queue_list is not None:
        if len(principal.queue_list) != 1:
            raise InvalidInput("queue", "required: this token may replay only in its own queues; name one")
        queue = principal.queue_list[0]
    if queue is not None:
        principal.check_queue(queue)
    return await AsyncDeadLetters(as_agent(wq, principal)).replay(dry_run=dry_run, **(options | {"queue": queue}))
