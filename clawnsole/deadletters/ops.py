"""Every dead-letter operation once, as generators of named statements (sans-I/O), like `clawnsole.ops`.

`list_dead`, `get` and `plan` are operations (one transaction each). A replay is more than one transaction
— its batches commit one by one, so a replay of a hundred thousand items holds no lock for long and what
it did stays done if it is interrupted — so `replay` is a *plan*: a generator of operations that the
`DeadLetters` drivers run one after the other, each in a transaction of its own.
"""

from __future__ import annotations

from typing import TypeVar

from clawnsole import validate
from clawnsole.deadletters.models import DeadLetter, DeadLetterFilter, DeadLetterGroup, ReplayPlan, ReplayReport
from clawnsole.errors import NotFound
from clawnsole.models import Event, Item
from clawnsole.ops import Op, Plan, Row, Step

T = TypeVar("T")

# Items per replay transaction: few enough that each commits in milliseconds and holds its row locks
# only that long, many enough that a large replay is not dominated by round trips.
REPLAY_BATCH = 500
# A refused replay by id names at most this many of the ids that are not dead letters.
_NAMED = 20


def list_dead(where: DeadLetterFilter, limit: int = 100) -> Op[list[Item]]:
    """Dead letters matching `where`, newest failure first."""
    params = where.params() | {"limit": validate.positive_int(limit, "limit", maximum=100_000)}
    rows = yield Step("deadletter_list", params)
    return [Item.from_row(r) for r in rows]


def groups(where: DeadLetterFilter, limit: int = 100) -> Op[list[DeadLetterGroup]]:
    """Dead letters matching `where` counted per queue, kind and error, the newest failure first."""
    params = where.params() | {"limit": validate.positive_int(limit, "limit", maximum=10_000)}
    rows = yield Step("deadletter_groups", params)
    return [DeadLetterGroup.from_row(r) for r in rows]


def get(item_id: int) -> Op[DeadLetter]:
    """One dead letter with its history; NotFound when the item does not exist or is not failed."""
    rows = yield Step("item_get", {"id": validate.item_id(item_id)})
    if not rows:
        raise NotFound(f"no item with id {item_id}")
    item = Item.from_row(rows[0])
    if item.status != "failed":
        raise NotFound(f"item {item_id} is not a dead letter (it is {item.status})")
    events = yield Step("item_history", {"id": item_id})
    return DeadLetter(item, [Event.from_row(e) for e in events])


def plan(where: DeadLetterFilter) -> Op[ReplayPlan]:
    """What a replay of `where` would touch; with ids, NotFound naming each one that is not a matching
    dead letter (then a replay writes nothing)."""
    params = where.params()
    if where.ids is not None:
        found = yield Step("deadletter_list", params | {"limit": len(where.ids)})
        matched = {int(r["id"]) for r in found}
        unmatched = [i for i in where.ids if i not in matched]
        if unmatched:
            described = []
            for item_id in unmatched[:_NAMED]:
                rows = yield Step("item_get", {"id": item_id})
                described.append(f"{item_id} ({rows[0]['status'] if rows else 'no such item'})")
            more = f" and {len(unmatched) - _NAMED} more" if len(unmatched) > _NAMED else ""
            raise NotFound("not a dead letter matching the filter: " + ", ".join(described) + more)
    rows = yield Step("deadletter_count", params)
    return ReplayPlan(
        queues={str(r["queue"]): int(r["items"]) for r in rows},
        through_id=max((int(r["through_id"]) for r in rows), default=None),
        cutoff=rows[0]["cutoff"] if rows else None,
    )


def replay_batch(where: DeadLetterFilter, steps: ReplayPlan, *, after: int, agent: str | None, size: int) -> Op[Row]:
    """Put back one batch of the plan: the next `size` matching dead letters with ids above `after`."""
    rows = yield Step(
        "deadletter_replay_batch",
        where.params(cutoff=steps.cutoff)
        | {"after": after, "through": steps.through_id, "batch": size, "agent": agent},
    )
    return rows[0]


def replay(
    where: DeadLetterFilter, *, agent: str | None, dry_run: bool = False, batch_size: int = REPLAY_BATCH
) -> Plan[ReplayReport]:
    """Replay matching dead letters in batches (see `replay_batch`); a dry run only plans."""
    size = validate.positive_int(batch_size, "batch_size", maximum=10_000)
    agent = None if agent is None else validate.agent(agent)
    steps: ReplayPlan = yield plan(where)
    if dry_run or steps.through_id is None:
        return ReplayReport(dry_run=dry_run, matched=steps.matched, replayed=0, queues=dict(steps.queues))
    after, waiting, batches = 0, 0, 0
    ids: list[int] = []
    queues: dict[str, int] = {}
    while after < steps.through_id:
        row: Row = yield replay_batch(where, steps, after=after, agent=agent, size=size)
        batches += 1
        if row["last_id"] is None:
            break  # nothing matching is left in the range
        after = int(row["last_id"])
        ids.extend(int(i) for i in row["ids"])
        waiting += int(row["waiting"])
        for name, count in row["queues"].items():
            queues[name] = queues.get(name, 0) + int(count)
    return ReplayReport(
        dry_run=False,
        matched=steps.matched,
        replayed=len(ids),
        queues=queues,
        ids=ids,
        waiting=waiting,
        batches=batches,
    )
