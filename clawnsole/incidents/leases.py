"""Who holds what, and taking a lease back by force (sans-I/O operations, like `clawnsole.ops`)."""

from __future__ import annotations

from clawnsole import validate
from clawnsole.errors import InvalidInput, NotFound
from clawnsole.incidents.models import HeldLease, Released
from clawnsole.ops import Op, Step


def list_leases(
    *, queue: str | None = None, agent: str | None = None, expired: bool = False, limit: int = 1000
) -> Op[list[HeldLease]]:
    """Leases held now, the soonest to expire first (expired ones, not yet recovered, at the top)."""
    params = {
        "queue": None if queue is None else validate.queue_name(queue),
        "agent": None if agent is None else validate.agent(agent),
        "expired": expired,
        "limit": validate.positive_int(limit, "limit", maximum=100_000),
    }
    rows = yield Step("lease_list", params)
    return [HeldLease.from_row(r) for r in rows]


def force_release(
    *, item_id: int | None = None, agent: str | None = None, by: str, reason: str | None = None
) -> Op[list[Released]]:
    """Put the item held with this id, or every item `agent` holds, back to pending without charging the
    attempt; the holder's lease is void from now on (its later writes get LeaseLost). NotFound when nothing
    matched was held."""
    if item_id is not None and agent is not None:
        raise InvalidInput("id", "give either an item id or an agent, not both")
    if item_id is None and agent is None:
        raise InvalidInput("id", "give an item id (--id) or an agent (--agent)")
    params = {
        "id": None if item_id is None else validate.item_id(item_id),
        "agent": None if agent is None else validate.agent(agent),
        "by": _operator(by),
        "reason": validate.optional_text(reason, "reason", 10_000),
    }
    rows = yield Step("lease_force_release", params)
    if not rows:
        if item_id is not None:
            found = yield Step("item_get", {"id": item_id})
            if not found:
                raise NotFound(f"no item with id {item_id}")
            raise NotFound(f"item {item_id} is {found[0]['status']}: no lease is held on it")
        raise NotFound(f"agent {agent!r} holds no lease")
    return [Released(int(r["id"]), r["queue"], int(r["attempts"]), r["holder"]) for r in rows]


def _operator(by: str) -> str:
    """Who is releasing (recorded in the history), checked like an agent name but named as `by`."""
    validate.text(by, "by")
    if not by.strip() or len(by) > 200:
        raise InvalidInput("by", "must be 1-200 characters")
    return by
