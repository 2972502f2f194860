"""Claim-next: ordering, disjoint claims across processes, and the index it must use."""

from __future__ import annotations

import multiprocessing
import uuid
from typing import Any

import psycopg
import pytest

from clawnsole import NewItem, WorkQueue


def test_claim_takes_highest_priority_then_earliest_run_at_then_fifo(wq: WorkQueue) -> None:
    low = wq.enqueue("q", "low", priority="low").item.id
    first_normal = wq.enqueue("q", "normal 1").item.id
    second_normal = wq.enqueue("q", "normal 2").item.id
    critical = wq.enqueue("q", "critical", priority="critical").item.id
    order = [wq.claim_next("q", agent="w")[0].id for _ in range(4)]
    assert order == [critical, first_normal, second_normal, low]
    assert wq.claim_next("q", agent="w") == []


def test_claim_sets_holder_attempt_and_a_fresh_lease(wq: WorkQueue) -> None:
    wq.enqueue("q", "x")
    [item] = wq.claim_next("q", agent="worker-1", lease="90s")
    assert (item.status, item.claimed_by, item.attempts) == ("claimed", "worker-1", 1)
    assert item.lease_token is not None and item.lease_expires_at is not None and item.claimed_at is not None
    assert (item.lease_expires_at - item.claimed_at).total_seconds() == pytest.approx(90)
    assert [e.event for e in wq.history(item.id)] == ["enqueued", "claimed"]


def test_items_not_yet_due_are_not_claimed(wq: WorkQueue) -> None:
    wq.enqueue("q", "tomorrow", delay="1d")
    assert wq.claim_next("q") == []


def test_claim_spans_several_queues_and_batches(wq: WorkQueue) -> None:
    wq.enqueue_many([NewItem("a", "a1"), NewItem("b", "b1"), NewItem("c", "c1"), NewItem("a", "a2")])
    items = wq.claim_next(["a", "b"], limit=10)
    assert sorted(i.title for i in items) == ["a1", "a2", "b1"]


def _claim_all(db_url: str, agent: str, start: Any, results: Any) -> None:
    claimed: list[int] = []
    with WorkQueue(db_url, agent=agent, max_connections=1) as queue:
        start.wait()
        while batch := queue.claim_next("race", limit=3):
            claimed.extend(i.id for i in batch)
            for item in batch:
                queue.done(item.id, lease_token=str(item.lease_token))
    results.put((agent, claimed))


def test_eight_processes_claim_two_thousand_items_each_exactly_once(wq: WorkQueue, db_url: str) -> None:
    ids = wq.enqueue_many([NewItem("race", f"item {n}") for n in range(2000)])
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    results = ctx.Queue()
    workers = [ctx.Process(target=_claim_all, args=(db_url, f"w{n}", start, results)) for n in range(8)]
    for w in workers:
        w.start()
    start.set()
    per_worker = dict(results.get(timeout=120) for _ in workers)
    for w in workers:
        w.join(30)
        assert w.exitcode == 0
    claimed = [i for got in per_worker.values() for i in got]
    assert sorted(claimed) == sorted(ids), "every item claimed exactly once"
    assert sum(1 for got in per_worker.values() if got) >= 2, "the work was shared"
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM clawnsole.items WHERE status = 'done'").fetchone() == (2000,)
        assert conn.execute("SELECT count(*) FROM clawnsole.item_events WHERE event = 'claimed'").fetchone() == (2000,)


def test_claim_uses_the_partial_index_on_a_large_table(wq: WorkQueue, db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(
            """INSERT INTO clawnsole.items (queue, title, status, finished_at)
               SELECT 'big', 'done ' || n, 'done', now() FROM generate_series(1, 1000000) n"""
        )
        conn.execute(
            "INSERT INTO clawnsole.items (queue, title) SELECT 'big', 'p' || n FROM generate_series(1, 100000) n"
        )
        conn.commit()
        conn.autocommit = True
        # The finishing statements are planned before ANALYZE too: right after a bulk load the statistics
        # still count no claimed rows, which once made a join plan scan the table once per item.
        finishing = {
            name: _plan(conn, name, {"ids": [5, 7], "tokens": [str(uuid.uuid4())] * 2, "agent": "w"} | extra)
            for name, extra in [
                ("lease_extend_many", {}),
                ("item_complete_many", {"results": [None, None], "channel": "c"}),
                ("lease_release_many", {"reason": "r", "channel": "c"}),
            ]
        }
        conn.execute("ANALYZE clawnsole.items")
        claim = {"agent": "w", "lease": 30, "limit": 10, "channel": "c"}
        plans = {
            f"{name} {q}": _plan(conn, name, claim | {"queues": q})
            for name, q in [("item_claim_one", ["big"]), ("item_claim", ["big"]), ("item_claim", ["big", "other"])]
        }
    for name, plan in plans.items():
        assert "Index Scan using items_claimable_idx" in plan, (name, plan)
        assert "Seq Scan" not in plan and "Bitmap" not in plan, (name, plan)
    for name, plan in finishing.items():
        assert "Index Scan using items_pkey" in plan, (name, plan)
        assert "Seq Scan" not in plan, (name, plan)


def _plan(conn: psycopg.Connection[tuple[object, ...]], name: str, params: dict[str, object]) -> str:
    from clawnsole.db.sql import statement

    return "\n".join(str(row[0]) for row in conn.execute("EXPLAIN " + statement("clawnsole", name), params))


def test_the_claim_updates_its_rows_by_primary_key_on_a_table_of_any_size(wq: WorkQueue, db_url: str) -> None:
    # On a small table a hash join over a whole-table scan looks cheap to the planner unless it knows how
    # few rows the claim can return; the update must stay one primary-key lookup per claimed row.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO clawnsole.items (queue, title) SELECT 'small', 'p' || n FROM generate_series(1, 20000) n"
        )
        conn.execute("ANALYZE clawnsole.items")
        claim = {"agent": "w", "lease": 30, "limit": 32, "channel": "c"}
        for name, queues in [
            ("item_claim_one", ["small"]),
            ("item_claim", ["small"]),
            ("item_claim", ["small", "other"]),
        ]:
            plan = _plan(conn, name, claim | {"queues": queues})
            assert "Index Scan using items_pkey" in plan and "Seq Scan" not in plan, plan
