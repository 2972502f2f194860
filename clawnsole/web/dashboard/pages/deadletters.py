"""Dead letters at `/dead-letters`: the failed items grouped by queue, kind and error, the newest matching
ones listed, and replay — of one, of a selection, of a group or of everything the filter matches.

A replay of more than one item shows its plan first ("replay 37 failed items in ops", the API's dry run)
and runs only when that form is confirmed (`confirm=1`). Reads and replays go through the same calls as
`/api/v1/dlq` (`AsyncDeadLetters` in each of the token's queues, `replay_as`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from clawnsole.deadletters.api import AsyncDeadLetters, ids_from_text
from clawnsole.deadletters.models import DeadLetterGroup, ReplayReport
from clawnsole.errors import InvalidInput
from clawnsole.models import Item
from clawnsole.queue import AsyncWorkQueue
from clawnsole.web.auth import queue_of
from clawnsole.web.dashboard.render import page
from clawnsole.web.dashboard.session import Viewer, act, filters_of, form_of, signed_in, url_of
from clawnsole.web.routes.dlq import queues_for, replay_as

router = APIRouter()

# The filter fields of the page, its links and its forms (each one of the API's filter options).
FILTERS = ("queue", "kind", "error", "since")
# Dead letters listed at first, and at most (the groups count every one of them).
SHOWN, MOST_SHOWN = 50, 1000
# Groups read (what the totals add up), and shown: the newest failures first.
GROUPS, GROUPS_SHOWN = 1000, 50


def _filter(values: Any) -> dict[str, str]:
    return filters_of(values, FILTERS)


def _link(where: dict[str, str], **more: Any) -> str:
    return url_of("/dead-letters", where, **more)


def _group_url(group: DeadLetterGroup) -> str:
    """The page filtered to one group."""
    where = {"queue": group.queue, "kind": group.kind, "error": group.error}
    return _link({k: v for k, v in where.items() if v})


def _ids(value: Any) -> list[int] | None:
    """The ticked ids of a form (one field or several); None when none were ticked."""
    values = [v for v in (value if isinstance(value, list) else [value]) if isinstance(v, str) and v.strip()]
    return ids_from_text(",".join(values)) if values else None


@router.get("/dead-letters")
async def dead_letters(request: Request, viewer: Viewer = Depends(signed_in)) -> HTMLResponse:
    where = _filter(request.query_params)
    shown = min(_count(request.query_params.get("limit"), SHOWN), MOST_SHOWN)
    letters = AsyncDeadLetters(queue_of(request))
    groups: list[DeadLetterGroup] = []
    items: list[Item] = []
    error = None
    try:
        for name in queues_for(viewer.principal, where.get("queue")):
            options = where | {"queue": name}
            groups += await letters.groups(limit=GROUPS, **options)
            items += await letters.list(limit=shown + 1, **options)
    except InvalidInput as bad:
        error, groups, items = str(bad), [], []
    # Merged across the token's queues, as the API does: newest failure first.
    groups.sort(key=lambda g: (g.last_failed_at is not None, g.last_failed_at), reverse=True)
    items.sort(key=lambda i: (i.finished_at is not None, i.finished_at, i.id), reverse=True)
    more = len(items) > shown
    return page(
        request,
        viewer,
        "dead_letters.html",
        where=where,
        error=error,
        groups=groups[:GROUPS_SHOWN],
        group_count=len(groups),
        capped=len(groups) >= GROUPS,
        total=sum(g.items for g in groups),
        items=items[:shown],
        more_url=_link(where, limit=min(shown + 200, MOST_SHOWN)) if more and shown < MOST_SHOWN else None,
        all_shown=not more,
        queues=sorted({g.queue for g in groups}),
        kinds=sorted({g.kind for g in groups if g.kind}),
        group_url=_group_url,
    )


def _count(value: str | None, default: int) -> int:
    try:
        return max(1, int(value)) if value else default
    except ValueError:
        return default


@router.post("/dead-letters/replay")
async def replay_dead_letters(request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    """Replay what the form names — `what`: one or a selection (the ticked `ids`), a group or everything the
    filter matches (the filter fields) — at once for a single item, else only with `confirm=1`: without it,
    the plan is shown to confirm (audited as the API audits its dry run)."""
    form = await form_of(request)
    where = _filter(form)
    what = form.get("what") if form.get("what") in ("one", "selection", "group", "filter") else "filter"
    by_id = what in ("one", "selection")
    given = form.get("back")
    back = given if isinstance(given, str) and given.startswith("/dead-letters") else "/dead-letters"
    planned: list[ReplayReport] = []

    async def go(wq: AsyncWorkQueue, dry_run: bool) -> str:
        options: dict[str, Any] = dict(where)
        if by_id:
            ids = _ids(form.get("ids"))
            if ids is None:
                raise InvalidInput("ids", "tick at least one dead letter to replay")
            options["ids"] = ids
        report = await replay_as(wq, viewer.principal, options, dry_run=dry_run)
        planned.append(report)
        return report.summary()

    ticked = _ticked(form.get("ids")) if by_id else []
    confirmed = form.get("confirm") == "1" or (by_id and len(ticked) == 1)
    answer = await act(
        request,
        viewer,
        "operate",
        "dlq.replay",
        where.get("queue", "*")[:200],
        lambda wq: go(wq, dry_run=not confirmed),
        back=back,
        form=form,
        detail={"dry_run": not confirmed},
    )
    if confirmed or not planned or planned[0].matched == 0:
        return answer  # done, refused, bad input, or nothing matches: back with the message
    return page(
        request, viewer, "dead_letters_confirm.html", report=planned[0], what=what, where=where, ids=ticked, back=back
    )


def _ticked(value: Any) -> list[int]:
    try:
        return _ids(value) or []
    except InvalidInput:
        return []  # said by the action itself, as its flash message
