"""Dead letters against real PostgreSQL: listing by filter, the plans that keep done rows out of it, replay
by filter and by id, dry runs, concurrent replays, wake-ups, dependency chains, and a real worker finishing
what was replayed."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import psycopg
import pytest

from clawnsole import AsyncWorkQueue, InvalidInput, NotFound, WorkQueue
from clawnsole.db.sql import statement
from clawnsole.deadletters import AsyncDeadLetters, DeadLetters
from clawnsole.queue import notify_channel
from clawnsole.worker import Worker, WorkerOptions
from clawnsole.worker.eventlog import EventLog
from tests.worker.helpers import Events, running, wait_for


def _fail(wq: WorkQueue, queue: str, kind: str | None, error: str = "boom", n: int = 1) -> list[int]:
    """Items that really went through enqueue → claim → fail --no-retry: dead letters with a history."""
    ids = []
    for index in range(n):
        item = wq.enqueue(queue, f"{kind} {index}", kind=kind).item
        [claimed] = wq.claim_next(queue, agent="w")
        assert claimed.id == item.id
        wq.fail(item.id, error, lease_token=str(claimed.lease_token), retry=False)
        ids.append(item.id)
    return ids


def _bulk_dead(db_url: str, queue: str, n: int, kind: str = "bulk") -> list[int]:
    """`n` failed items inserted in one statement (for tests about volume, not about how they failed)."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "INSERT INTO clawnsole.items (queue, kind, title, status, attempts, max_attempts, finished_at, last_error)"
            " SELECT %s, %s, 'x' || g, 'failed', 3, 3, now(), 'boom' FROM generate_series(1, %s) g RETURNING id",
            (queue, kind, n),
        ).fetchall()
    return sorted(int(r[0]) for r in rows)


def _age(db_url: str, ids: list[int], hours: float) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE clawnsole.items SET finished_at = now() - make_interval(hours => %s) WHERE id = ANY(%s)",
            (hours, ids),
        )


def _replays(db_url: str) -> dict[int, int]:
    """How many replay `requeued` events each item has, from the history."""
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT item_id, count(*) FROM clawnsole.item_events"
            " WHERE event = 'requeued' AND detail @> '{\"replay\": true}' GROUP BY item_id"
        ).fetchall()
    return {int(r[0]): int(r[1]) for r in rows}


def _statuses(db_url: str) -> dict[int, str]:
    with psycopg.connect(db_url) as conn:
        return {int(r[0]): str(r[1]) for r in conn.execute("SELECT id, status FROM clawnsole.items")}


def test_list_shows_failed_items_newest_failure_first_filtered_by_queue_kind_error_and_time(
    wq: WorkQueue, db_url: str
) -> None:
    a = _fail(wq, "ops", "report", "Timeout talking to the API\ntraceback line")
    b = _fail(wq, "ops", "sync", "permission denied")
    c = _fail(wq, "nightly", "report", "timeout again")
    old = _fail(wq, "ops", "report", "timeout long ago")
    _age(db_url, old, 48)
    wq.enqueue("ops", "still pending", kind="report")
    dlq = DeadLetters(wq)
    assert [i.id for i in dlq.list()] == [*c, *b, *a, *old]
    assert [i.id for i in dlq.list(queue="ops")] == [*b, *a, *old]
    assert [i.id for i in dlq.list(kind="report")] == [*c, *a, *old]
    assert [i.id for i in dlq.list(exclude_kinds=["report"])] == b
    assert [i.id for i in dlq.list(error="TIMEOUT")] == [*c, *a, *old]
    assert [i.id for i in dlq.list(since="24h")] == [*c, *b, *a]
    assert [i.id for i in dlq.list(queue="ops", kind="report", since="24h", error="api")] == a
    assert [i.id for i in dlq.list(limit=2)] == [*c, *b]
    assert dlq.list(queue="ops")[1].last_error == "Timeout talking to the API\ntraceback line"


def test_show_gives_the_full_error_and_history_and_refuses_what_is_not_a_dead_letter(wq: WorkQueue) -> None:
    [dead] = _fail(wq, "ops", "report", "line one\nline two")
    letter = DeadLetters(wq).get(dead)
    assert letter.item.last_error == "line one\nline two"
    assert [e.event for e in letter.history] == ["enqueued", "claimed", "failed"]
    pending = wq.enqueue("ops", "pending").item.id
    with pytest.raises(NotFound, match=f"item {pending} is not a dead letter \\(it is pending\\)"):
        DeadLetters(wq).get(pending)
    with pytest.raises(NotFound, match="no item with id 999"):
        DeadLetters(wq).get(999)


def _plan(conn: psycopg.Connection[Any], name: str, params: dict[str, Any]) -> str:
    return "\n".join(str(row[0]) for row in conn.execute("EXPLAIN " + statement("clawnsole", name), params))


def test_the_dead_letter_statements_read_the_trouble_index_and_never_the_done_rows(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for queue in ("ops", "nightly"):
            conn.execute(
                "INSERT INTO clawnsole.items (queue, title, status, finished_at)"
                " SELECT %s, 'd' || g, 'done', now() FROM generate_series(1, 30000) g",
                (queue,),
            )
            conn.execute(
                "INSERT INTO clawnsole.items (queue, title, status, finished_at, last_error)"
                " SELECT %s, 'f' || g, 'failed', now(), 'boom' FROM generate_series(1, 40) g",
                (queue,),
            )
        conn.execute("ANALYZE clawnsole.items")
        base = {
            "kind": None,
            "exclude_kinds": [],
            "since": None,
            "cutoff": None,
            "error": None,
            "ids": None,
            "max_replays": None,
        }
        plans = {}
        for queue in ("ops", None):
            plans[f"list {queue}"] = _plan(conn, "deadletter_list", base | {"queue": queue, "limit": 100})
            plans[f"count {queue}"] = _plan(conn, "deadletter_count", base | {"queue": queue})
            plans[f"replay {queue}"] = _plan(
                conn,
                "deadletter_replay_batch",
                base | {"queue": queue, "after": 0, "through": 10**9, "batch": 500, "agent": "a", "channel": "c"},
            )
    for name, plan in plans.items():
        assert "items_trouble_idx" in plan, (name, plan)
        assert "Seq Scan on items" not in plan, (name, plan)
    for name in ("list ops", "count ops", "replay ops"):
        assert "Index Cond: ((queue = 'ops'::text) AND (status = 'failed'::text)" in plans[name], plans[name]


def test_replay_by_filter_requeues_only_the_matching_items_with_fresh_attempts(wq: WorkQueue, db_url: str) -> None:
    wanted = _fail(wq, "ops", "report", n=2)
    other_kind = _fail(wq, "ops", "maintenance.cleanup")
    other_queue = _fail(wq, "nightly", "report")
    too_old = _fail(wq, "ops", "report")
    _age(db_url, too_old, 30)
    report = DeadLetters(wq).replay(queue="ops", since="24h", exclude_kinds=["maintenance.cleanup"])
    assert (report.dry_run, report.matched, report.replayed, report.queues) == (False, 2, 2, {"ops": 2})
    assert report.ids == wanted and report.summary() == "replayed 2 failed items in ops"
    statuses = _statuses(db_url)
    assert [statuses[i] for i in wanted] == ["pending", "pending"]
    assert {statuses[i] for i in [*other_kind, *other_queue, *too_old]} == {"failed"}
    item = wq.get(wanted[0])
    assert (item.attempts, item.finished_at, item.claimed_by) == (0, None, None)
    last = wq.history(wanted[0])[-1]
    assert (last.event, last.agent, last.detail) == ("requeued", "test-agent", {"by": "test-agent", "replay": True})
    [claimed] = wq.claim_next("ops", agent="w", limit=1)
    assert claimed.id == wanted[0] and claimed.attempts == 1


def test_a_dry_run_and_a_plan_say_what_would_be_replayed_and_write_nothing(wq: WorkQueue, db_url: str) -> None:
    _fail(wq, "ops", "report", n=3)
    _fail(wq, "nightly", "report")
    before = _statuses(db_url)
    dlq = DeadLetters(wq)
    report = dlq.replay(dry_run=True)
    assert (report.dry_run, report.matched, report.replayed) == (True, 4, 0)
    assert report.summary() == "replay 4 failed items in nightly (1), ops (3)"
    assert dlq.plan(queue="ops").queues == {"ops": 3}
    assert dlq.replay(queue="none", dry_run=True).summary() == "no failed items match: nothing to replay"
    assert _statuses(db_url) == before and _replays(db_url) == {}


def test_replay_by_ids_names_each_id_that_is_not_a_dead_letter_and_writes_nothing(wq: WorkQueue, db_url: str) -> None:
    dead = _fail(wq, "ops", "report", n=2)
    pending = wq.enqueue("ops", "pending").item.id
    with pytest.raises(NotFound) as refused:
        DeadLetters(wq).replay(ids=[dead[0], pending, 9999])
    assert str(refused.value) == f"not a dead letter matching the filter: {pending} (pending), 9999 (no such item)"
    with pytest.raises(NotFound, match=f"{dead[1]} \\(failed\\)"):
        DeadLetters(wq).replay(ids=[dead[1]], queue="nightly")  # failed, but not in that queue
    assert _replays(db_url) == {} and _statuses(db_url)[dead[0]] == "failed"
    report = DeadLetters(wq).replay(ids=[dead[1]])
    assert report.ids == [dead[1]] and _statuses(db_url)[dead[0]] == "failed"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"since": "soon"}, "since"),
        ({"queue": "bad queue"}, "queue"),
        ({"exclude_kinds": ["bad kind"]}, "exclude_kinds"),
        ({"ids": [0]}, "ids"),
        ({"ids": []}, "ids"),
        ({"error": "  "}, "error"),
        ({"max_replays": 0}, "max_replays"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_filters_are_refused_naming_the_field_before_anything_is_written(
    wq: WorkQueue, db_url: str, options: dict[str, Any], field: str
) -> None:
    _fail(wq, "ops", "report")
    with pytest.raises(InvalidInput) as refused:
        DeadLetters(wq).replay(**options)
    assert refused.value.field == field
    assert _replays(db_url) == {}


def test_a_replay_goes_batch_by_batch_and_a_second_one_finds_nothing_left(wq: WorkQueue, db_url: str) -> None:
    ids = _bulk_dead(db_url, "ops", 25)
    report = DeadLetters(wq).replay(batch_size=10)
    assert (report.replayed, report.batches, report.ids) == (25, 3, ids)
    assert _replays(db_url) == dict.fromkeys(ids, 1)
    assert DeadLetters(wq).replay().replayed == 0


def test_two_concurrent_replays_requeue_each_item_exactly_once(db_url: str) -> None:
    ids = _bulk_dead(db_url, "ops", 300)
    barrier = threading.Barrier(2)
    reports: dict[str, Any] = {}

    def replay(agent: str) -> None:
        with WorkQueue(db_url, agent=agent) as queue:
            barrier.wait()
            reports[agent] = DeadLetters(queue).replay(batch_size=7)

    threads = [threading.Thread(target=replay, args=(agent,)) for agent in ("r1", "r2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert set(reports) == {"r1", "r2"}
    first, second = set(reports["r1"].ids), set(reports["r2"].ids)
    assert not first & second and first | second == set(ids)
    assert _replays(db_url) == dict.fromkeys(ids, 1)  # the history: one requeued event per item
    assert set(_statuses(db_url).values()) == {"pending"}


def test_a_replay_wakes_each_queue_it_put_items_back_in_once(wq: WorkQueue, db_url: str) -> None:
    _bulk_dead(db_url, "ops", 5)
    _bulk_dead(db_url, "nightly", 3)
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute(f'LISTEN "{notify_channel("clawnsole")}"')
        assert DeadLetters(wq).replay().replayed == 8
        payloads = sorted(n.payload for n in listener.notifies(timeout=1.0, stop_after=3))
    assert payloads == ["nightly", "ops"]


def test_a_replayed_item_whose_prerequisite_is_not_done_waits_for_it_and_is_released_by_it(
    wq: WorkQueue, db_url: str
) -> None:
    # Not a state the queue makes by itself (a failed item ran, so its prerequisites were done): a
    # dependency added by hand, to prove the replay keeps the chain's bookkeeping (waiting_for) right.
    [dead] = _fail(wq, "ops", "report")
    prerequisite = wq.enqueue("first", "runs first").item.id
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO clawnsole.item_dependencies (item_id, prerequisite_id) VALUES (%s, %s)",
            (dead, prerequisite),
        )
        conn.execute("UPDATE clawnsole.items SET has_dependents = true WHERE id = %s", (prerequisite,))
    report = DeadLetters(wq).replay()
    assert (report.replayed, report.waiting) == (1, 1)
    assert report.summary() == "replayed 1 failed item in ops; 1 waiting for prerequisites"
    assert wq.get(dead).status == "waiting"
    assert wq.history(dead)[-1].detail == {"by": "test-agent", "replay": True, "now": "waiting", "waiting_for": 1}
    [claimed] = wq.claim_next("first", agent="w")
    wq.done(claimed.id, lease_token=str(claimed.lease_token))
    assert wq.get(dead).status == "pending"
    assert [e.event for e in wq.history(dead)][-2:] == ["requeued", "unblocked"]


def test_max_replays_leaves_out_items_replayed_that_often_already(wq: WorkQueue, db_url: str) -> None:
    [again] = _fail(wq, "ops", "flaky")
    assert DeadLetters(wq).replay(max_replays=1).replayed == 1
    [claimed] = wq.claim_next("ops", agent="w")
    wq.fail(claimed.id, "still broken", lease_token=str(claimed.lease_token), retry=False)
    [fresh] = _fail(wq, "ops", "flaky")
    assert [i.id for i in DeadLetters(wq).list(max_replays=1)] == [fresh]
    assert DeadLetters(wq).replay(max_replays=1).ids == [fresh]
    assert _replays(db_url) == {again: 1, fresh: 1}


def test_replayed_items_are_done_by_a_real_worker(wq: WorkQueue, db_url: str) -> None:
    ids = _fail(wq, "jobs", "report", n=4)
    events = Events()
    seen: list[int] = []
    worker = Worker(
        db_url,
        lambda item, ctx: seen.append(item.id) or {"ok": True},
        WorkerOptions(queues=("jobs",), agent="worker-1", lease=5.0, poll=30.0, grace=5.0),
        log=EventLog(events, fmt="json", agent="worker-1"),
    )
    with running(worker, events) as handle:
        DeadLetters(wq).replay(queue="jobs")
        wait_for(lambda: all(wq.get(i).status == "done" for i in ids), what="the replayed items to be done")
        handle.stop()
    assert sorted(seen) == ids  # each once: the replay's wake-up, not a poll, brought the worker
    for item_id in ids:
        assert [e.event for e in wq.history(item_id)][-3:] == ["requeued", "claimed", "done"]


def test_the_async_twin_lists_and_replays_the_same_way(wq: WorkQueue, db_url: str) -> None:
    ids = _fail(wq, "ops", "report", n=2)

    async def scenario() -> tuple[list[int], list[int]]:
        async with AsyncWorkQueue(db_url, agent="async-operator") as queue:
            dlq = AsyncDeadLetters(queue)
            listed = [i.id for i in await dlq.list(queue="ops")]
            assert (await dlq.get(ids[0])).item.status == "failed"
            assert (await dlq.plan()).matched == 2
            return listed, (await dlq.replay(batch_size=1)).ids

    listed, replayed = asyncio.run(scenario())
    assert listed == ids[::-1] and replayed == ids
    assert wq.history(ids[0])[-1].agent == "async-operator"
