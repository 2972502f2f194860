"""What a call promises beyond its happy path: one transaction per operation whatever the source, fencing by
the lease token, wake-ups whenever an item becomes pending, and errors that say what happened."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from clawnsole import WorkQueue, ops
from clawnsole.errors import DatabaseError, DatabaseUnavailable, InvalidInput, LeaseLost
from clawnsole.listen import Listener
from clawnsole.queue import default_agent

SCHEMA = "clawnsole"


def _count(db_url: str, table: str = "items") -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(f"SELECT count(*) FROM clawnsole.{table}").fetchone()
    assert row is not None
    return int(row[0])


def _expire(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE clawnsole.items SET lease_expires_at = now() - interval '1 second'")


def test_run_is_one_transaction_on_the_queues_own_autocommit_pool(wq: WorkQueue, db_url: str) -> None:
    def enqueue_then_fail() -> ops.Op[None]:
        yield from ops.enqueue("q", "x", agent="a")
        raise RuntimeError("the operation's second half failed")

    with pytest.raises(RuntimeError):
        wq.run(enqueue_then_fail())
    assert _count(db_url) == 0, "the first statement was rolled back with the operation"


def test_run_holds_row_locks_until_the_operation_ends(wq: WorkQueue, db_url: str) -> None:
    wq.enqueue("q", "x")

    def claim_then_look() -> ops.Op[bool]:
        claimed = yield from ops.claim(["q"], agent="a", recover=False)
        assert claimed
        with psycopg.connect(db_url, autocommit=True) as other:
            other.execute("SET lock_timeout = '100ms'")
            try:
                other.execute("SELECT 1 FROM clawnsole.items WHERE id = %s FOR UPDATE", (claimed[0].id,))
            except psycopg.errors.LockNotAvailable:
                return True
        return False

    assert wq.run(claim_then_look()), "a row the operation changed stays locked until the operation ends"


def test_the_library_fences_every_write_by_the_lease_token(wq: WorkQueue) -> None:
    wq.enqueue("q", "x")
    [item] = wq.claim_next("q", agent="reviewer-1")
    for write in (
        lambda: wq.done(item.id, agent="reviewer-1"),
        lambda: wq.fail(item.id, "no", agent="reviewer-1"),
        lambda: wq.progress(item.id, agent="reviewer-1"),
    ):
        with pytest.raises(InvalidInput) as caught:
            write()
        assert caught.value.field == "lease_token"


def test_a_stale_claim_by_the_same_agent_name_cannot_dead_letter_the_newer_one(wq: WorkQueue, db_url: str) -> None:
    wq.enqueue("q", "x", max_attempts=5)
    [old] = wq.claim_next("q", agent="reviewer-1")
    _expire(db_url)
    [new] = wq.claim_next("q", agent="reviewer-1")
    assert new.id == old.id and new.lease_token != old.lease_token
    with pytest.raises(LeaseLost):
        wq.fail(old.id, "stale", agent="reviewer-1", lease_token=str(old.lease_token), retry=False)
    assert wq.get(new.id).status == "claimed"


def test_default_agents_are_unique_per_process_and_queue() -> None:
    first, second = default_agent(), default_agent()
    assert first != second and first.count(":") == 2


def _notified(db_url: str, action: object) -> bool:
    with Listener.for_queues(db_url, SCHEMA, ["q"]) as listener:
        assert callable(action)
        action()
        return listener.wait(5)


@pytest.fixture
def held(wq: WorkQueue) -> Iterator[tuple[int, str]]:
    wq.enqueue("q", "x", max_attempts=3, backoff=0)
    [item] = wq.claim_next("q", agent="w")
    yield item.id, str(item.lease_token)


def test_a_release_wakes_the_queues_listeners(wq: WorkQueue, db_url: str, held: tuple[int, str]) -> None:
    assert _notified(db_url, lambda: wq.run_steps(ops.release([held], agent="w", reason="shutdown")))


def test_a_scheduled_retry_wakes_the_queues_listeners(wq: WorkQueue, db_url: str, held: tuple[int, str]) -> None:
    assert _notified(db_url, lambda: wq.fail(held[0], "again", lease_token=held[1]))


def test_recovering_an_expired_lease_wakes_the_queues_listeners(
    wq: WorkQueue, db_url: str, held: tuple[int, str]
) -> None:
    _expire(db_url)
    assert _notified(db_url, lambda: wq.run_steps(ops.claim(["q"], agent="x", limit=1, recover=True)))


def _kill_backends(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_an_enqueue_whose_connection_broke_says_it_may_have_been_added(db_url: str) -> None:
    with WorkQueue(db_url, agent="a", max_connections=1) as queue:
        queue.enqueue("q", "warm up the pooled connection")
        _kill_backends(db_url)
        with pytest.raises(DatabaseUnavailable) as caught:
            queue.enqueue("q", "no key")
    message = str(caught.value)
    assert "lost the connection" in message and "may have been added" in message and "not retried" in message


def test_an_enqueue_with_a_dedupe_key_is_retried_when_its_connection_broke(db_url: str) -> None:
    with WorkQueue(db_url, agent="a", max_connections=1) as queue:
        queue.enqueue("q", "warm up the pooled connection")
        _kill_backends(db_url)
        outcome = queue.enqueue("q", "keyed", dedupe_key="k")
        again = queue.enqueue("q", "keyed", dedupe_key="k")
    assert outcome.created and not again.created and again.item.id == outcome.item.id


def test_a_refused_statement_is_not_reported_as_an_outage(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET statement_timeout = '50ms'")
        queue = WorkQueue(conn, agent="a").open()
        queue.enqueue("q", "x")
        with psycopg.connect(db_url) as holder:
            holder.execute("LOCK TABLE clawnsole.items IN ACCESS EXCLUSIVE MODE")
            with pytest.raises(DatabaseError) as caught:
                queue.get(1)
    assert not isinstance(caught.value, DatabaseUnavailable)
    assert "refused the statement" in str(caught.value) and "statement timeout" in str(caught.value)
    assert caught.value.exit_code == 5
