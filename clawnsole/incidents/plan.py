"""The plan of the live claim statement: `EXPLAIN` of the registry's `item_claim` with the parameters the
claim operation itself builds, so what is shown is what workers run — never a copy that could drift.

An operation asks for a plan by yielding an `explain` step naming the statement; the incidents driver
(`Incidents`, `AsyncIncidents`) runs it as `EXPLAIN (…) <statement>` inside a transaction it always rolls
back. With ANALYZE the claim really runs (it locks and updates the rows it would claim, and writes their
`claimed` events); the rollback undoes all of it, so nothing is claimed. The step's name is in no
registry: a plain `WorkQueue.run` refuses it rather than run the claim for real.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from clawnsole import ops
from clawnsole.errors import Conflict, InvalidInput
from clawnsole.incidents.models import ClaimPlan
from clawnsole.ops import Op, Step

EXPLAIN = "explain"
FORMATS = ("text", "json")
CLAIMABLE_INDEX = "items_claimable_idx"
# The holder named in the planned claim (it is rolled back, so no item ever carries it).
EXPLAIN_AGENT = "clawnsole-explain-claim"
# The queue planned for when none is given and nothing is pending anywhere.
FALLBACK_QUEUE = "default"


def explain_step(statement: str, params: dict[str, Any], *, analyze: bool, fmt: str) -> Step:
    """A step the incidents driver runs as EXPLAIN of the named registry statement."""
    if fmt not in FORMATS:
        raise InvalidInput("format", f"must be one of {', '.join(FORMATS)}")
    return Step(EXPLAIN, {"statement": statement, "analyze": analyze, "format": fmt, "params": params})


def explain_sql(statement_sql: str, *, analyze: bool, fmt: str) -> str:
    """The EXPLAIN of a statement's text, with ANALYZE and BUFFERS when it is to run."""
    options = ["ANALYZE", "BUFFERS"] if analyze else []
    return f"EXPLAIN ({', '.join([*options, f'FORMAT {fmt.upper()}'])}) {statement_sql}"


def claim_plan(
    queues: Sequence[str] | None = None, *, limit: int = 1, analyze: bool = True, fmt: str = "text"
) -> Op[ClaimPlan]:
    """The plan of claiming up to `limit` items from these queues (default: a queue with pending items)."""
    names = list(queues or [])
    if not names:
        rows = yield Step("queue_first_pending", {})
        names = [rows[0]["queue"] if rows else FALLBACK_QUEUE]
    claim = ops.claim(names, agent=EXPLAIN_AGENT, limit=limit, recover=False)
    try:
        step = next(claim)
        # Statements the claim runs before the claim itself (reading queue controls, say) run as they are,
        # in the same rolled-back transaction, so the claim is planned in the state it would meet.
        while step.name not in ops.CLAIM_STATEMENTS.values():
            rows = yield step
            step = claim.send(rows)
    except StopIteration:
        raise Conflict(f"a claim from {', '.join(names)} runs no claim statement now (is the queue paused?)") from None
    finally:
        claim.close()
    rows = yield explain_step(step.name, step.params, analyze=analyze, fmt=fmt)
    plan: Any = rows[0]["QUERY PLAN"] if fmt == "json" else "\n".join(str(r["QUERY PLAN"]) for r in rows)
    text = plan if isinstance(plan, str) else json.dumps(plan)
    return ClaimPlan(names, limit, analyze, plan, CLAIMABLE_INDEX in text)
