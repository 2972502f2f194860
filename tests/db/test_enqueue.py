"""Enqueue: defaults, idempotence with a dedupe key (also under races), cooldown, batches."""

from __future__ import annotations

import threading

import psycopg
import pytest

from clawnsole import InvalidInput, NewItem, WorkQueue


def test_enqueue_stores_the_item_with_defaults(wq: WorkQueue) -> None:
    outcome = wq.enqueue("dev-team", "Review open PRs", instructions="secret", kind="review")
    item = outcome.item
    assert outcome.created
    assert (item.queue, item.title, item.kind, item.instructions) == (
        "dev-team",
        "Review open PRs",
        "review",
        "secret",
    )
    assert (item.status, item.priority, item.attempts, item.max_attempts) == ("pending", 50, 0, 3)
    assert [e.event for e in wq.history(item.id)] == ["enqueued"]


def test_same_dedupe_key_returns_the_existing_item_in_any_status(wq: WorkQueue) -> None:
    first = wq.enqueue("dev-team", "Review", dedupe_key="hourly:2026-11-21T09")
    again = wq.enqueue("dev-team", "Review (again)", dedupe_key="hourly:2026-11-21T09")
    assert not again.created and again.item.id == first.item.id
    [claimed] = wq.claim_next("dev-team")
    wq.done(claimed.id, lease_token=str(claimed.lease_token))
    after_done = wq.enqueue("dev-team", "Review", dedupe_key="hourly:2026-11-21T09")
    assert not after_done.created and after_done.item.status == "done"
    other_queue = wq.enqueue("ops", "Review", dedupe_key="hourly:2026-11-21T09")
    assert other_queue.created


def test_sixteen_concurrent_enqueues_with_one_key_make_one_row(db_url: str) -> None:
    ids: list[int] = []
    created: list[bool] = []
    barrier = threading.Barrier(16)
    lock = threading.Lock()

    def enqueue() -> None:
        with psycopg.connect(db_url) as conn:
            queue = WorkQueue(conn, agent="racer").open()
            barrier.wait()
            outcome = queue.enqueue("dev-team", "Review", dedupe_key="race-key")
        with lock:
            ids.append(outcome.item.id)
            created.append(outcome.created)

    threads = [threading.Thread(target=enqueue) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(ids) == 16 and len(set(ids)) == 1
    assert created.count(True) == 1
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM clawnsole.items").fetchone() == (1,)


def test_cooldown_releases_the_key_after_the_item_finished(wq: WorkQueue, db_url: str) -> None:
    first = wq.enqueue("ops", "health-check", dedupe_key="health", cooldown="60m")
    [item] = wq.claim_next("ops")
    wq.done(item.id, lease_token=str(item.lease_token))
    assert not wq.enqueue("ops", "health-check", dedupe_key="health", cooldown="60m").created
    with psycopg.connect(db_url) as conn:  # an hour passes on the database clock
        conn.execute("UPDATE clawnsole.items SET finished_at = now() - interval '61 minutes'")
    second = wq.enqueue("ops", "health-check", dedupe_key="health", cooldown="60m")
    assert second.created and second.item.id != first.item.id
    assert [e.event for e in wq.history(first.item.id)] == ["enqueued", "claimed", "done"]


def test_cooldown_does_not_release_an_unfinished_item(wq: WorkQueue, db_url: str) -> None:
    wq.enqueue("ops", "x", dedupe_key="k", cooldown=0)
    assert not wq.enqueue("ops", "x", dedupe_key="k", cooldown=0).created


def test_enqueue_many_inserts_a_batch_in_order(wq: WorkQueue) -> None:
    ids = wq.enqueue_many([NewItem("bulk", f"item {n}", payload={"n": n}) for n in range(250)])
    assert len(ids) == 250 and ids == sorted(ids)
    assert wq.get(ids[10]).payload == {"n": 10}
    assert sum(c.items for c in wq.status("bulk")) == 250


def test_enqueue_many_rejects_a_bad_entry_naming_it(wq: WorkQueue) -> None:
    with pytest.raises(InvalidInput, match=r"items\[1\]\.queue"):
        wq.enqueue_many([NewItem("ok", "a"), NewItem("bad queue", "b")])
    assert wq.status() == []


def test_delay_and_run_at_come_from_the_database_clock(wq: WorkQueue) -> None:
    delayed = wq.enqueue("later", "x", delay="2h").item
    assert (delayed.run_at - delayed.created_at).total_seconds() == pytest.approx(7200, abs=1)
    assert wq.claim_next("later") == []
