"""Items at `/items` (filtered by queue, status, kind, title text and creation time, a page at a time), one
item at `/items/{id}` (every field, payload and result, progress, its history as a timeline, prerequisites
and dependents), and what an operator does to them: retry, cancel, take the lease back, and retry or
cancel many at once — a selection, or everything the filter matches, shown first and run when confirmed.

The same calls as `/api/v1/items` and `/api/v1/leases/release` (`feed.item_page`, `wq.get`, `wq.history`,
`AsyncDependencies.of`, `ops.retry`, `ops.cancel`, `AsyncIncidents.release`), with the same action names
in the audit log. A bulk action is those calls once per item, at most BULK_MAX items.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, Response

from clawnsole import feed, ops, validate
from clawnsole.dependencies.api import AsyncDependencies
from clawnsole.errors import Conflict, InvalidInput, NotFound
from clawnsole.incidents.api import AsyncIncidents
from clawnsole.models import STATUSES, Item
from clawnsole.queue import AsyncWorkQueue
from clawnsole.stats.api import AsyncStats
from clawnsole.tokens.models import Forbidden
from clawnsole.web.auth import queue_of
from clawnsole.web.dashboard.render import page
from clawnsole.web.dashboard.session import Viewer, act, filters_of, form_of, signed_in, url_of

router = APIRouter()

PAGE = 50
# A bulk action touches at most this many items; its confirmation says when more matched.
BULK_MAX = 1000
# The filter fields of the page, its links and its forms.
FILTERS = ("queue", "status", "kind", "text", "since", "before")
# What each bulk action applies to, and its words.
APPLIES = {"retry": ("failed", "cancelled"), "cancel": ("pending", "waiting")}
_DONE = {"retry": "requeued", "cancel": "cancelled"}


def _where(values: Any) -> dict[str, str]:
    return filters_of(values, FILTERS)


def items_url(where: dict[str, str], **more: Any) -> str:
    """The items page with this filter (and more query fields; None values left out)."""
    return url_of("/items", where, **more)


def _moment(value: str | None, name: str, now: datetime) -> datetime | None:
    """A filter time: a duration back from the database's clock ("2h", "7d"), or a date and time (UTC unless
    an offset is given: "2026-05-01", "2026-05-01 09:30", an ISO 8601 time)."""
    if value is None:
        return None
    try:
        return now - timedelta(seconds=validate.duration(value, name))
    except InvalidInput:
        pass
    try:
        moment = datetime.fromisoformat(value.replace(" ", "T", 1))
    except ValueError:
        raise InvalidInput(name, f"{value!r} is neither a time back (2h, 7d) nor a date (2026-05-01 09:30)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _options(where: dict[str, str], now: datetime) -> dict[str, Any]:
    """The filter as `feed.item_page` options."""
    return {
        "queue": where.get("queue"),
        "status": where.get("status"),
        "kind": where.get("kind"),
        "text": where.get("text"),
        "created_since": _moment(where.get("since"), "since", now),
        "created_before": _moment(where.get("before"), "before", now),
    }


def _cursor(value: Any) -> int | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput("cursor", f"{value!r} is not an item id") from None


@router.get("/items")
async def items_page(request: Request, viewer: Viewer = Depends(signed_in)) -> HTMLResponse:
    where = _where(request.query_params)
    wq = queue_of(request)
    principal = viewer.principal

    async def listed() -> tuple[feed.ItemPage, str | None]:
        try:
            cursor = _cursor(request.query_params.get("cursor"))
            listing = feed.item_page(visible=principal.queues, cursor=cursor, limit=PAGE, **_options(where, viewer.now))
            return await wq.run_steps(listing), None
        except InvalidInput as bad:
            return feed.ItemPage([], None), str(bad)

    async def offered() -> set[str]:
        # The queue names the filter offers: those with something in them now (from indexes). A live refresh
        # renders the list only, without the filter form.
        if request.headers.get("hx-target") == "live":
            return set()
        return {q.queue for q in await AsyncStats(wq).overview(visible=principal.queues)}

    (found, error), names = await asyncio.gather(listed(), offered())
    return page(
        request,
        viewer,
        "items.html",
        where=where,
        error=error,
        items=found,
        statuses=STATUSES,
        queue_names=sorted(names | ({where["queue"]} if "queue" in where else set())),
        next_url=items_url(where, cursor=found.next_cursor) if found.next_cursor else None,
        here=items_url(where, cursor=request.query_params.get("cursor") or None),
        bulk=[a for a in APPLIES if where.get("status") in (None, *APPLIES[a])],
    )


# -- bulk ------------------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What a bulk action will touch: at most BULK_MAX items, whether more matched, how many it leaves."""

    action: str
    # "selection" (the ticked ids) or "filter" (everything the filter matches).
    what: str
    items: list[Item] = field(default_factory=list)
    more: bool = False
    left: int = 0

    def summary(self) -> str:
        """ "cancel 12 pending items in ops"."""
        if not self.items:
            which = " or ".join(APPLIES[self.action])
            if self.what == "selection":
                return f"nothing to {self.action}: none of the ticked items is {which}"
            return f"nothing to {self.action}: no {which} item matches the filter"
        statuses = " or ".join(sorted({i.status for i in self.items}))
        queues = ", ".join(sorted({i.queue for i in self.items}))
        count = f"the first {len(self.items)} of more" if self.more else str(len(self.items))
        noun = "item" if len(self.items) == 1 else "items"
        return f"{self.action} {count} {statuses} {noun} in {queues}"


def _ids(value: Any) -> list[int]:
    """The ids of a form (one field or several), at most BULK_MAX."""
    values = value if isinstance(value, list) else [value]
    ids = []
    for v in values:
        if isinstance(v, str) and v.strip():
            try:
                ids.append(validate.item_id(int(v), "ids"))
            except ValueError:
                raise InvalidInput("ids", f"{v!r} is not an item id") from None
    if len(ids) > BULK_MAX:
        raise InvalidInput("ids", f"at most {BULK_MAX} items at once")
    return list(dict.fromkeys(ids))


async def _selected(wq: AsyncWorkQueue, viewer: Viewer, action: str, ids: list[int]) -> Plan:
    plan = Plan(action, "selection")
    for item_id in ids:
        try:
            item = await wq.get(item_id)
        except NotFound:
            plan.left += 1
            continue
        if viewer.principal.can_see(item.queue) and item.status in APPLIES[action]:
            plan.items.append(item)
        else:
            plan.left += 1
    return plan


async def _matching(wq: AsyncWorkQueue, viewer: Viewer, action: str, where: dict[str, str]) -> Plan:
    """Every item the filter matches that the action applies to, at most BULK_MAX: each of those statuses is
    read from its own index (feed.item_page), a page at a time."""
    options = _options(where, viewer.now)
    wanted = options.pop("status")
    plan = Plan(action, "filter")
    found: list[Item] = []
    for status in APPLIES[action]:
        if wanted not in (None, status):
            continue
        cursor = None
        while len(found) <= BULK_MAX:
            step = feed.item_page(visible=viewer.principal.queues, status=status, cursor=cursor, limit=1000, **options)
            batch = await wq.run_steps(step)
            found += batch.items
            if batch.next_cursor is None:
                break
            cursor = batch.next_cursor
    found.sort(key=lambda i: i.id, reverse=True)
    plan.items, plan.more = found[:BULK_MAX], len(found) > BULK_MAX
    return plan


async def _run(wq: AsyncWorkQueue, viewer: Viewer, action: str, ids: list[int]) -> tuple[str, dict[str, Any]]:
    """The action on each item, as the API's route does it; an item that changed meanwhile is left alone.
    The message, and for the audit row the ids touched and left."""
    done: list[int] = []
    left: list[int] = []
    for item_id in ids:
        try:
            item = await wq.get(item_id)
            viewer.principal.check_queue(item.queue)
            op = ops.retry(item_id, agent=viewer.name) if action == "retry" else ops.cancel(item_id, agent=viewer.name)
            await wq.run_steps(op)
            done.append(item_id)
        except (NotFound, Conflict):
            left.append(item_id)
    noun = "item" if len(done) == 1 else "items"
    note = f"; {len(left)} had changed meanwhile (or cannot be {_DONE[action]}) and were left alone" if left else ""
    return f"{_DONE[action]} {len(done)} {noun}{note}", {"items": done, "left": left}


def _back(value: Any) -> str:
    ok = isinstance(value, str) and (value.startswith("/items") or value.startswith("/queues/"))
    return value if ok and isinstance(value, str) else "/items"


@router.post("/items/bulk")
async def bulk(request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    """Retry or cancel (`action`) the ticked `ids` (`what=selection`) or everything the filter fields match
    (`what=filter`). Without `confirm=1` nothing changes: the page says what would be touched and its
    confirmation posts exactly those ids back with `confirm=1`. Audited as the API's `item.retry` /
    `item.cancel`, the preview with `dry_run`."""
    form = await form_of(request)
    action = form.get("action")
    what = "filter" if form.get("what") == "filter" else "selection"
    confirmed = form.get("confirm") == "1"
    back = _back(form.get("back"))
    where = _where(form)
    plans: list[Plan] = []

    async def do(wq: AsyncWorkQueue) -> str | tuple[str, dict[str, Any]]:
        if action not in APPLIES:
            raise InvalidInput("action", "must be retry or cancel")
        if what == "selection" or confirmed:
            ids = _ids(form.get("ids"))
            if not ids:
                raise InvalidInput("ids", f"tick at least one item to {action}")
            if confirmed:
                return await _run(wq, viewer, action, ids)
            plan = await _selected(wq, viewer, action, ids)
        else:
            plan = await _matching(wq, viewer, action, where)
        plans.append(plan)
        return plan.summary(), {"matched": len(plan.items)}

    name = f"item.{action}" if action in APPLIES else "item.bulk"
    detail = {"bulk": what, "dry_run": not confirmed}
    answer = await act(request, viewer, "operate", name, "items", do, back=back, form=form, detail=detail)
    if confirmed or not plans or not plans[0].items:
        return answer  # done, refused, bad input or nothing to touch: back with the message
    return page(request, viewer, "items_confirm.html", plan=plans[0], what=what, where=where, back=back)


# -- one item --------------------------------------------------------------------------------------------


async def _visible(wq: AsyncWorkQueue, viewer: Viewer, item_id: int) -> Item:
    """The item, or NotFound when it does not exist or is in a queue the token may not see."""
    item = await wq.get(validate.item_id(item_id))
    viewer.principal.check_queue(item.queue, f"no item with id {item_id}")
    return item


@router.get("/items/{item_id}")
async def item_page(item_id: int, request: Request, viewer: Viewer = Depends(signed_in)) -> HTMLResponse:
    wq = queue_of(request)
    item = await _visible(wq, viewer, item_id)
    links, history = await asyncio.gather(AsyncDependencies(wq).of(item_id), wq.history(item_id))
    see = viewer.principal.can_see
    return page(
        request,
        viewer,
        "item.html",
        item=item,
        prerequisites=[link for link in links.prerequisites if see(link.queue)],
        dependents=[link for link in links.dependents if see(link.queue)],
        history=history,
    )


@router.get("/items/{item_id}/instructions")
async def instructions(item_id: int, request: Request, viewer: Viewer = Depends(signed_in)) -> HTMLResponse:
    """The item's instructions, as a fragment the item page swaps in when asked (tokens that act on items
    only, as the API shows them only to those)."""
    if not viewer.principal.sees_instructions:
        raise Forbidden("this token may not see instructions (they are shown to work, operate and admin tokens)")
    item = await _visible(queue_of(request), viewer, item_id)
    return page(request, viewer, "item_instructions.html", item=item)


@router.post("/items/{item_id}/retry")
async def retry(item_id: int, request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    async def do(wq: AsyncWorkQueue) -> str:
        await _visible(wq, viewer, item_id)
        item = await wq.run_steps(ops.retry(item_id, agent=viewer.name))
        return f"item {item_id} requeued with fresh attempts: it is {item.status} now"

    return await act(request, viewer, "operate", "item.retry", f"item:{item_id}", do, back=f"/items/{item_id}")


@router.post("/items/{item_id}/cancel")
async def cancel(item_id: int, request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    async def do(wq: AsyncWorkQueue) -> str:
        await _visible(wq, viewer, item_id)
        await wq.run_steps(ops.cancel(item_id, agent=viewer.name))
        return f"item {item_id} cancelled (and whatever was waiting for it)"

    return await act(request, viewer, "operate", "item.cancel", f"item:{item_id}", do, back=f"/items/{item_id}")


@router.post("/items/{item_id}/release")
async def release(item_id: int, request: Request, viewer: Viewer = Depends(signed_in)) -> Response:
    """Take the item's lease back (as `POST /api/v1/leases/release` with its id): pending again, the attempt
    not charged, and its holder's later writes are refused."""

    async def do(wq: AsyncWorkQueue) -> str:
        await _visible(wq, viewer, item_id)
        [released] = await AsyncIncidents(wq).release(item_id, by=viewer.name)
        holder = f" from {released.holder}" if released.holder else ""
        return f"took the lease on item {item_id}{holder} back: it is pending again, the attempt not charged"

    target = f"item {item_id}"
    back = f"/items/{item_id}"
    return await act(request, viewer, "operate", "lease.release", target, do, back=back, detail={"reason": None})
