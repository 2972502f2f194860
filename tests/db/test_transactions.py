"""Transactional use: the caller's own writes and the queue change commit or roll back together."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from clawnsole import AsyncWorkQueue, LeaseLost, SchemaMissing, WorkQueue


def test_enqueue_inside_a_rolled_back_transaction_leaves_nothing(wq: WorkQueue, db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE TABLE orders (id int)")
        conn.commit()
        conn.execute("INSERT INTO orders VALUES (1)")
        wq.enqueue("q", "ship order 1", conn=conn)
        conn.rollback()
    assert wq.status() == []


def test_done_commits_with_the_applications_write(wq: WorkQueue, db_url: str) -> None:
    wq.enqueue("q", "x")
    [item] = wq.claim_next("q", agent="w")
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE TABLE receipts (item_id bigint)")
        conn.execute("INSERT INTO receipts VALUES (%s)", [item.id])
        wq.done(item.id, agent="w", lease_token=str(item.lease_token), conn=conn)
        assert wq.get(item.id).status == "claimed", "not visible before commit"
        conn.commit()
    assert wq.get(item.id).status == "done"


def test_a_fenced_done_in_a_transaction_raises_and_the_caller_rolls_back(wq: WorkQueue, db_url: str) -> None:
    wq.enqueue("q", "x")
    [item] = wq.claim_next("q", agent="w")
    with psycopg.connect(db_url) as conn, pytest.raises(LeaseLost):
        wq.done(item.id, agent="someone-else", lease_token=str(item.lease_token), conn=conn)


def test_async_queue_runs_the_same_operations(db_url: str) -> None:
    async def scenario() -> list[str]:
        async with AsyncWorkQueue(db_url, agent="async-worker") as queue:
            outcome = await queue.enqueue("web", "render", payload={"page": 1}, dedupe_key="render-1")
            again = await queue.enqueue("web", "render", dedupe_key="render-1")
            assert outcome.created and not again.created and again.item.id == outcome.item.id
            [item] = await queue.claim_next("web")
            await queue.progress(item.id, lease_token=str(item.lease_token), note="rendering")
            await queue.done(item.id, lease_token=str(item.lease_token), result={"bytes": 10})
            return [e.event for e in await queue.history(item.id)]

    assert asyncio.run(scenario()) == ["enqueued", "claimed", "progress", "done"]


def test_a_database_without_the_schema_says_run_migrate(empty_db_url: str) -> None:
    with pytest.raises(SchemaMissing, match="clawnsole migrate"), WorkQueue(empty_db_url):
        pass
