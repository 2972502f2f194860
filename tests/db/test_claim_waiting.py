"""`claim_waiting` (`claim-next --wait`): it claims what comes during the wait, and an item that is due but
was locked when it looked is claimed soon after the lock goes, even though no NOTIFY says so."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from clawnsole import WorkQueue
from clawnsole.listen import Listener, claim_waiting
from clawnsole.models import Item
from tests.worker.helpers import wait_for

SCHEMA = "clawnsole"


class CountingQueue(WorkQueue):
    """A real WorkQueue that counts its empty claims, so a test knows the waiter has looked and found nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.empty_claims = 0

    def claim_next(self, *args: Any, **kwargs: Any) -> list[Item]:
        items = super().claim_next(*args, **kwargs)
        self.empty_claims += not items
        return items


def _in_thread(queue: WorkQueue, listener: Listener, timeout: float) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["items"] = claim_waiting(queue, listener, ["q"], timeout=timeout)
        except BaseException as error:  # surfaced by the test
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def _wake(db_url: str, queue: WorkQueue, thread: threading.Thread) -> None:
    # Only after a failed assertion: wake the waiter so that it does not run on for its whole wait.
    if thread.is_alive():
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SELECT pg_notify(%s, 'q')", [queue.channel])
        thread.join(10)


def test_a_due_item_locked_by_another_transaction_is_claimed_soon_after_the_lock_is_released(db_url: str) -> None:
    queue = CountingQueue(db_url, schema=SCHEMA, agent="waiter")
    with (
        queue,
        psycopg.connect(db_url) as locker,
        Listener.for_queues(db_url, SCHEMA, ["q"]) as listener,
    ):
        item_id = queue.enqueue("q", "locked for a moment").item.id
        locker.execute("SELECT id FROM clawnsole.items WHERE id = %s FOR UPDATE", [item_id])
        thread, outcome = _in_thread(queue, listener, timeout=20)
        try:
            wait_for(lambda: queue.empty_claims > 0, 10, "the first claim, which skips the locked row")
            locker.commit()  # releases the row lock; nothing is notified
            # It looks again within a second whatever happens (0.25 s, then doubling up to 1 s).
            thread.join(2.5)
            assert not thread.is_alive(), "still waiting for a notification that never comes"
        finally:
            _wake(db_url, queue, thread)
    assert "error" not in outcome, outcome.get("error")
    assert [i.id for i in outcome["items"]] == [item_id]
    with psycopg.connect(db_url) as conn:
        events = conn.execute(
            "SELECT event, agent FROM clawnsole.item_events WHERE item_id = %s ORDER BY id", [item_id]
        ).fetchall()
    assert events == [("enqueued", "waiter"), ("claimed", "waiter")]


def test_an_item_enqueued_during_the_wait_is_claimed_at_once(db_url: str) -> None:
    queue = CountingQueue(db_url, schema=SCHEMA, agent="waiter")
    with (
        queue,
        Listener.for_queues(db_url, SCHEMA, ["q"]) as listener,
    ):
        thread, outcome = _in_thread(queue, listener, timeout=20)
        try:
            wait_for(lambda: queue.empty_claims > 0, 10, "the waiter to find nothing")
            with WorkQueue(db_url, schema=SCHEMA, agent="producer") as producer:
                item_id = producer.enqueue("q", "arrives later").item.id
            thread.join(5)
            assert not thread.is_alive(), "the enqueue's NOTIFY did not wake the waiter"
        finally:
            _wake(db_url, queue, thread)
    assert [i.id for i in outcome["items"]] == [item_id]


def test_with_nothing_due_it_returns_nothing_when_the_wait_is_over(wq: WorkQueue, db_url: str) -> None:
    wq.enqueue("q", "not yet", delay="1h")
    with Listener.for_queues(db_url, SCHEMA, ["q"]) as listener:
        began = time.monotonic()
        assert claim_waiting(wq, listener, ["q"], timeout=0.3) == []
    assert 0.3 <= time.monotonic() - began < 5
