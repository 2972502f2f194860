"""Multi-row statements under concurrent writers, stepped deterministically: a row lock held from a second
connection makes a statement wait exactly where a heartbeat, a finisher or a claim would meet it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from clawnsole import NewItem, WorkQueue, ops
from clawnsole.db.sql import statement
from tests.worker.helpers import wait_for

SCHEMA = "clawnsole"


def _raw(conn: psycopg.Connection[Any], step: ops.Step) -> list[dict[str, Any]]:
    """Run one step's statement as written, with no retry or translation in between."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(statement(SCHEMA, step.name), {"channel": "clawnsole:clawnsole", **step.params})
        return cur.fetchall() if cur.description else []


def _drive(conn: psycopg.Connection[Any], op: ops.Op[Any]) -> Any:
    try:
        step = next(op)
        while True:
            step = op.send(_raw(conn, step))
    except StopIteration as stop:
        return stop.value


def _waiting_on_a_lock(db_url: str, count: int = 1) -> bool:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return row is not None and row[0] >= count


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def body() -> None:
        try:
            outcome.append(call())
        except BaseException as error:  # handed to the test thread
            outcome.append(error)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    return thread, outcome


def _claim(wq: WorkQueue, count: int, agent: str = "w") -> list[tuple[int, str]]:
    wq.enqueue_many([NewItem("q", f"item {n}") for n in range(count)])
    return [(i.id, str(i.lease_token)) for i in wq.claim_next("q", agent=agent, limit=count)]


def test_a_completion_that_waited_for_a_heartbeats_row_lock_is_still_recorded(wq: WorkQueue, db_url: str) -> None:
    leases = _claim(wq, 2)
    with psycopg.connect(db_url) as beat, psycopg.connect(db_url, autocommit=True) as finisher:
        # The heartbeat renews both rows and has not committed yet when the finisher arrives.
        assert len(_drive(beat, ops.heartbeat(leases, agent="w"))) == 2
        thread, outcome = _in_thread(
            lambda: _drive(finisher, ops.complete_many([(i, t, {"n": i}) for i, t in leases], agent="w"))
        )
        wait_for(lambda: _waiting_on_a_lock(db_url), what="the finisher to wait on the heartbeat's lock")
        beat.commit()
        thread.join(10)
    assert outcome == [set(leases)], "a renewed row must not make the completion match nothing"
    for item_id, _ in leases:
        assert wq.get(item_id).status == "done"
        assert [e.event for e in wq.history(item_id)].count("done") == 1


def test_a_heartbeat_and_a_finisher_take_their_locks_in_id_order(wq: WorkQueue, db_url: str) -> None:
    # Given in opposite orders, with a third row held elsewhere so that the finisher stops half-way: in
    # array order the finisher would hold b and wait for c, the heartbeat hold a and wait for b, and c's
    # release would close the cycle (deadlock detected).
    (a, ta), (b, tb), (c, tc) = _claim(wq, 3)
    with (
        psycopg.connect(db_url) as holder,
        psycopg.connect(db_url, autocommit=True) as beat,
        psycopg.connect(db_url, autocommit=True) as finisher,
    ):
        holder.execute("SELECT 1 FROM clawnsole.items WHERE id = %s FOR UPDATE", (c,))
        done, finished = _in_thread(
            lambda: _drive(finisher, ops.complete_many([(b, tb, None), (c, tc, None), (a, ta, None)], agent="w"))
        )
        wait_for(lambda: _waiting_on_a_lock(db_url), what="the finisher to wait for c")
        renew, renewed = _in_thread(lambda: _drive(beat, ops.heartbeat([(b, tb), (a, ta)], agent="w")))
        wait_for(lambda: _waiting_on_a_lock(db_url, 2), what="the heartbeat to wait too")
        holder.commit()
        done.join(10)
        renew.join(10)
    assert finished == [{(a, ta), (b, tb), (c, tc)}], finished
    assert renewed == [set()], "the heartbeat found the items finished, and nothing deadlocked"


def test_a_multi_queue_claim_locks_no_more_rows_than_it_returns(wq: WorkQueue, db_url: str) -> None:
    wq.enqueue_many([NewItem(q, f"{q} {n}") for q in ("a", "b", "c") for n in range(5)])
    with psycopg.connect(db_url) as conn:
        claimed = wq.claim_next(["a", "b", "c"], agent="w", limit=2, conn=conn)
        assert len(claimed) == 2
        with psycopg.connect(db_url) as other:
            free = other.execute(
                "SELECT id FROM clawnsole.items WHERE status = 'pending' FOR UPDATE SKIP LOCKED"
            ).fetchall()
        conn.rollback()
    assert len(free) == 13, "only the two returned rows stay locked until the caller commits"


def test_a_dedupe_enqueue_racing_its_holders_finish_creates_a_new_item(wq: WorkQueue, db_url: str) -> None:
    first = wq.enqueue("q", "health", dedupe_key="health", cooldown=0)
    [held] = wq.claim_next("q", agent="w")
    with psycopg.connect(db_url, autocommit=True) as conn:
        op = ops.enqueue("q", "health", agent="a", dedupe_key="health", cooldown=0)
        step = next(op)
        assert step.name == "item_dedupe_release"
        rows = _raw(conn, step)  # nothing to release yet: the holder is still running
        wq.done(held.id, lease_token=str(held.lease_token))  # … and finishes right now, cooldown 0
        outcome = None
        try:
            while True:
                step = op.send(rows)
                rows = _raw(conn, step)
        except StopIteration as stop:
            outcome = stop.value
    assert outcome is not None and outcome.created, "a finished holder past its cooldown no longer holds the key"
    assert outcome.item.id != first.item.id


def test_the_claim_statements_return_tokens_of_the_rows_they_changed(wq: WorkQueue, db_url: str) -> None:
    leases = _claim(wq, 2)
    stale = (leases[0][0], str(uuid.uuid4()))
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert _drive(conn, ops.heartbeat([stale, leases[1]], agent="w")) == {leases[1]}
        assert _drive(conn, ops.release([stale, leases[1]], agent="w", reason="t")) == {leases[1]}


@pytest.mark.parametrize("statement_name", ["lease_extend_many", "item_complete_many", "lease_release_many"])
def test_every_multi_row_statement_locks_through_one_lookup_per_item(wq: WorkQueue, statement_name: str) -> None:
    text = statement(SCHEMA, statement_name)
    assert "CROSS JOIN LATERAL" in text and "FOR UPDATE" in text and "ctid" not in text
