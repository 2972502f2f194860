"""Dependency chains against real PostgreSQL: release, cascade cancel, refusals, and the races of a
prerequisite finishing while a dependent is enqueued (or while another prerequisite finishes), stepped
deterministically by holding a row lock from a second connection."""

from __future__ import annotations

import psycopg
import pytest

from clawnsole import NewItem, NotFound, QueueDraining, WorkQueue, ops
from clawnsole.dependencies.api import Dependencies
from clawnsole.models import Item
from tests.db.test_locking import _in_thread, _waiting_on_a_lock
from tests.worker.helpers import wait_for


def _finish(wq: WorkQueue, queue: str = "q") -> Item:
    """Claim the next item of `queue` and mark it done."""
    [item] = wq.claim_next(queue, agent="w")
    return wq.done(item.id, lease_token=str(item.lease_token))


def _events(wq: WorkQueue, item_id: int) -> list[str]:
    return [e.event for e in wq.history(item_id)]


def _counts(db_url: str) -> tuple[int, int, int]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM clawnsole.items), (SELECT count(*) FROM clawnsole.item_events),"
            " (SELECT count(*) FROM clawnsole.item_dependencies)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def test_a_dependent_waits_until_its_prerequisite_is_done_then_becomes_pending(wq: WorkQueue) -> None:
    first = wq.enqueue("q", "first").item
    second = wq.enqueue("q", "second", after=[first.id]).item
    assert second.status == "waiting"
    assert [i.id for i in wq.claim_next("q", agent="w", limit=5)] == [first.id], "a waiting item is not claimable"
    wq.done(first.id, lease_token=str(wq.get(first.id).lease_token))
    released = wq.get(second.id)
    assert released.status == "pending"
    assert _events(wq, second.id) == ["enqueued", "unblocked"]
    assert wq.history(second.id)[1].detail == {"prerequisites": [first.id]}


def test_an_item_after_two_prerequisites_is_released_only_by_the_last_one(wq: WorkQueue) -> None:
    one = wq.enqueue("q", "one").item
    two = wq.enqueue("q", "two").item
    both = wq.enqueue("q", "both", after=[two.id, one.id, one.id]).item
    _finish(wq)
    assert wq.get(both.id).status == "waiting"
    _finish(wq)
    assert wq.get(both.id).status == "pending"
    assert Dependencies(wq).of(both.id).prerequisites[0].status == "done"


def test_a_release_wakes_the_queues_listeners_in_the_completing_transaction(wq: WorkQueue, db_url: str) -> None:
    first = wq.enqueue("q", "first").item
    wq.enqueue("other", "second", after=[first.id])
    [claimed] = wq.claim_next("q", agent="w")
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute('LISTEN "clawnsole:clawnsole"')
        wq.done(claimed.id, lease_token=str(claimed.lease_token))
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=2)]
    assert "other" in payloads


def test_a_batched_completion_releases_the_dependents_of_every_item_it_finishes(wq: WorkQueue) -> None:
    ids = wq.enqueue_many([NewItem("q", "a"), NewItem("q", "b")])
    after_both = wq.enqueue("q", "after both", after=ids).item
    after_a = wq.enqueue("q", "after a", after=[ids[0]]).item
    claimed = wq.claim_next("q", agent="w", limit=2)
    finished = wq.run(ops.complete_many([(i.id, str(i.lease_token), None) for i in claimed], agent="w"))
    assert len(finished) == 2
    assert wq.get(after_both.id).status == "pending"
    assert wq.get(after_a.id).status == "pending"
    assert _events(wq, after_both.id).count("unblocked") == 1


def test_a_failed_prerequisite_cancels_its_dependents_transitively_naming_the_cause(wq: WorkQueue) -> None:
    root = wq.enqueue("q", "root", max_attempts=1).item
    child = wq.enqueue("q", "child", after=[root.id]).item
    grandchild = wq.enqueue("q", "grandchild", after=[child.id]).item
    unrelated = wq.enqueue("q", "unrelated").item
    [item] = wq.claim_next("q", agent="w")
    wq.fail(item.id, "boom", lease_token=str(item.lease_token))
    assert wq.get(child.id).status == "cancelled"
    assert wq.get(grandchild.id).status == "cancelled"
    assert wq.get(unrelated.id).status == "pending"
    assert wq.history(child.id)[-1].detail == {"reason": f"prerequisite {root.id} failed", "prerequisite": root.id}
    assert wq.history(grandchild.id)[-1].detail == {
        "reason": f"prerequisite {child.id} cancelled",
        "prerequisite": child.id,
    }


def test_a_retried_failure_leaves_the_dependents_waiting(wq: WorkQueue) -> None:
    root = wq.enqueue("q", "root", max_attempts=2).item
    child = wq.enqueue("q", "child", after=[root.id]).item
    [item] = wq.claim_next("q", agent="w")
    assert wq.fail(item.id, "transient", lease_token=str(item.lease_token)).status == "pending"
    assert wq.get(child.id).status == "waiting"


def test_a_lease_that_expired_on_the_last_attempt_cancels_the_dependents(wq: WorkQueue, db_url: str) -> None:
    root = wq.enqueue("q", "root", max_attempts=1).item
    child = wq.enqueue("q", "child", after=[root.id]).item
    wq.claim_next("q", agent="w", lease=60)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE clawnsole.items SET lease_expires_at = now() - interval '1 second' WHERE id = %s", [root.id]
        )
    assert wq.claim_next("q", agent="w") == []  # recovers the expired lease first
    assert wq.get(root.id).status == "failed"
    assert wq.history(child.id)[-1].detail == {"reason": f"prerequisite {root.id} failed", "prerequisite": root.id}


def test_cancelling_a_prerequisite_or_a_waiting_item_cancels_what_waits_for_it(wq: WorkQueue) -> None:
    root = wq.enqueue("q", "root").item
    middle = wq.enqueue("q", "middle", after=[root.id]).item
    leaf = wq.enqueue("q", "leaf", after=[middle.id]).item
    other_root = wq.enqueue("q", "other root").item
    other_leaf = wq.enqueue("q", "other leaf", after=[other_root.id]).item
    assert wq.cancel(middle.id, reason="not needed").status == "cancelled"
    assert wq.get(leaf.id).status == "cancelled"
    assert wq.get(root.id).status == "pending", "a prerequisite is not touched by its dependent's cancel"
    wq.cancel(other_root.id)
    assert wq.history(other_leaf.id)[-1].detail == {
        "reason": f"prerequisite {other_root.id} cancelled",
        "prerequisite": other_root.id,
    }


def test_an_unknown_prerequisite_is_not_found_and_nothing_is_written(wq: WorkQueue, db_url: str) -> None:
    known = wq.enqueue("q", "known").item
    before = _counts(db_url)
    with pytest.raises(NotFound, match="no item with id 999999"):
        wq.enqueue("q", "orphan", after=[known.id, 999999])
    with pytest.raises(NotFound, match="no item with id 999999"):
        wq.enqueue_many([NewItem("q", "fine", after=[known.id]), NewItem("q", "orphan", after=[999999])])
    assert _counts(db_url) == before
    assert not _flagged(db_url, known.id), "the prerequisite was not flagged either"


def test_an_item_after_a_done_prerequisite_is_pending_and_after_a_failed_one_cancelled(wq: WorkQueue) -> None:
    done = wq.enqueue("q", "done").item
    _finish(wq)
    assert wq.enqueue("q", "after done", after=[done.id]).item.status == "pending"
    failed = wq.enqueue("f", "fails", max_attempts=1).item
    [item] = wq.claim_next("f", agent="w")
    wq.fail(item.id, "no", lease_token=str(item.lease_token))
    outcome = wq.enqueue("q", "after failed", after=[failed.id, done.id])
    assert outcome.item.status == "cancelled"
    assert outcome.note == f"prerequisite {failed.id} failed"
    assert _events(wq, outcome.item.id) == ["enqueued", "cancelled"]


def test_retrying_a_cancelled_dependent_waits_again_until_its_prerequisites_are_done(wq: WorkQueue) -> None:
    root = wq.enqueue("q", "root", max_attempts=1).item
    child = wq.enqueue("q", "child", after=[root.id]).item
    [item] = wq.claim_next("q", agent="w")
    wq.fail(item.id, "boom", lease_token=str(item.lease_token))
    assert wq.retry(child.id).status == "waiting", "its prerequisite is failed, not done"
    wq.retry(root.id)
    _finish(wq)
    assert wq.get(child.id).status == "pending"
    other = wq.enqueue("q", "no prerequisites", max_attempts=1).item
    wq.cancel(other.id)
    assert wq.retry(other.id).status == "pending"


def test_a_batch_with_prerequisites_keeps_its_order_and_each_items_own_chain(wq: WorkQueue) -> None:
    first = wq.enqueue("q", "first").item
    ids = wq.enqueue_many(
        [NewItem("q", "plain"), NewItem("q", "after first", after=[first.id], metadata={"n": 2}), NewItem("q", "x")]
    )
    assert ids == sorted(ids)
    assert [wq.get(i).status for i in ids] == ["pending", "waiting", "pending"]
    assert wq.get(ids[1]).metadata == {"n": 2}
    assert [link.id for link in Dependencies(wq).of(first.id).dependents] == [ids[1]]
    assert Dependencies(wq).of(ids[1]).prerequisites[0].id == first.id


def test_an_enqueue_into_a_draining_queue_is_refused_and_writes_nothing(wq: WorkQueue, db_url: str) -> None:
    wq.enqueue("open", "fine")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO clawnsole.queues (name, state) VALUES ('shut', 'draining'), ('held', 'paused')")
    before = _counts(db_url)
    with pytest.raises(
        QueueDraining, match=r"queue shut is draining: enqueues are refused until `clawnsole queue resume shut`"
    ):
        wq.enqueue("shut", "refused")
    with pytest.raises(QueueDraining):
        wq.enqueue("shut", "refused", dedupe_key="k")
    with pytest.raises(QueueDraining, match="queue shut"):
        wq.enqueue_many([NewItem("open", "would be fine"), NewItem("shut", "refused")])
    with pytest.raises(QueueDraining):
        wq.enqueue("shut", "refused", after=[1])
    assert _counts(db_url) == before
    assert wq.enqueue("held", "a paused queue accepts enqueues").created


def test_race_an_enqueue_holding_the_prerequisite_lock_is_seen_by_the_completion_that_waited(
    wq: WorkQueue, db_url: str
) -> None:
    prerequisite = wq.enqueue("q", "prerequisite").item
    [claimed] = wq.claim_next("q", agent="w")
    with psycopg.connect(db_url) as enqueuer:
        # The dependent's enqueue has locked the prerequisite and inserted, but not committed.
        dependent = wq.enqueue("q", "dependent", after=[prerequisite.id], conn=enqueuer).item
        thread, outcome = _in_thread(lambda: wq.done(claimed.id, lease_token=str(claimed.lease_token)))
        # The completion's statement (and its snapshot) began before the dependency was committed.
        wait_for(lambda: _waiting_on_a_lock(db_url), what="the completion to wait for the enqueue's row lock")
        enqueuer.commit()
        thread.join(10)
    assert isinstance(outcome[0], Item) and outcome[0].status == "done"
    assert wq.get(dependent.id).status == "pending", "the dependent must not wait for ever"


def test_race_an_enqueue_that_waited_for_a_completing_prerequisite_reads_it_done(wq: WorkQueue, db_url: str) -> None:
    prerequisite = wq.enqueue("q", "prerequisite").item
    [claimed] = wq.claim_next("q", agent="w")
    with psycopg.connect(db_url) as finisher:
        wq.done(claimed.id, lease_token=str(claimed.lease_token), conn=finisher)
        thread, outcome = _in_thread(lambda: wq.enqueue("q", "dependent", after=[prerequisite.id]))
        wait_for(lambda: _waiting_on_a_lock(db_url), what="the enqueue to wait for the completion's row lock")
        finisher.commit()
        thread.join(10)
    assert outcome[0].item.status == "pending", "the status is read after the lock, not from a stale snapshot"


def test_race_two_prerequisites_completed_at_once_release_their_dependent_exactly_once(
    wq: WorkQueue, db_url: str
) -> None:
    ids = wq.enqueue_many([NewItem("q", "one"), NewItem("q", "two")])
    dependent = wq.enqueue("q", "dependent", after=ids).item
    first, second = wq.claim_next("q", agent="w", limit=2)
    with psycopg.connect(db_url) as one:
        # The first completion has decremented the dependent's count (and holds its row) but not committed.
        wq.done(first.id, lease_token=str(first.lease_token), conn=one)
        thread, outcome = _in_thread(lambda: wq.done(second.id, lease_token=str(second.lease_token)))
        wait_for(lambda: _waiting_on_a_lock(db_url), what="the second completion to wait for the dependent's row")
        one.commit()
        thread.join(10)
    assert isinstance(outcome[0], Item)
    assert wq.get(dependent.id).status == "pending"
    assert _events(wq, dependent.id) == ["enqueued", "unblocked"]


def test_race_a_cascade_sees_a_dependent_enqueued_while_the_failure_waited(wq: WorkQueue, db_url: str) -> None:
    root = wq.enqueue("q", "root", max_attempts=1).item
    [claimed] = wq.claim_next("q", agent="w")
    with psycopg.connect(db_url) as enqueuer:
        dependent = wq.enqueue("q", "dependent", after=[root.id], conn=enqueuer).item
        thread, _ = _in_thread(lambda: wq.fail(claimed.id, "boom", lease_token=str(claimed.lease_token)))
        wait_for(lambda: _waiting_on_a_lock(db_url), what="the failure to wait for the enqueue's row lock")
        enqueuer.commit()
        thread.join(10)
    assert wq.get(dependent.id).status == "cancelled"


def _flagged(db_url: str, item_id: int) -> bool:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT has_dependents FROM clawnsole.items WHERE id = %s", [item_id]).fetchone()
    assert row is not None
    return bool(row[0])


def test_only_an_item_that_has_dependents_is_flagged_for_the_release_path(wq: WorkQueue, db_url: str) -> None:
    alone = wq.enqueue("q", "alone").item
    prerequisite = wq.enqueue("q", "prerequisite").item
    wq.enqueue("q", "dependent", after=[prerequisite.id])
    assert not _flagged(db_url, alone.id), "its completion skips the release call"
    assert _flagged(db_url, prerequisite.id)


def test_the_asyncio_queue_enqueues_after_and_reads_the_links(db_url: str) -> None:
    import asyncio

    from clawnsole import AsyncDependencies, AsyncWorkQueue

    async def scenario() -> tuple[str, list[int]]:
        async with AsyncWorkQueue(db_url, agent="a") as awq:
            first = (await awq.enqueue("q", "first")).item
            second = (await awq.enqueue("q", "second", after=[first.id], metadata={"k": "v"})).item
            links = await AsyncDependencies(awq).of(first.id)
            return second.status, [link.id for link in links.dependents]

    status, dependents = asyncio.run(scenario())
    assert status == "waiting"
    assert len(dependents) == 1
