"""Queue controls enforced by the claim statement: pause, resume (with its wake-up), drain, the concurrency
limit under READ COMMITTED (stepped with a held row lock, and hammered by threads), the rate limit per
aligned window, several queues in one claim, and the claim of an uncontrolled queue never calling the
allowance function."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from clawnsole import InvalidInput, NewItem, WorkQueue, ops
from clawnsole.queues import Queues
from clawnsole.queues.models import Rate, parse_rate
from tests.db.queue_history import held_at_once
from tests.db.test_locking import _in_thread, _waiting_on_a_lock
from tests.worker.helpers import wait_for

SCHEMA = "clawnsole"


def _fill(wq: WorkQueue, queue: str, count: int, priority: int = 50) -> list[int]:
    return wq.enqueue_many([NewItem(queue, f"{queue}-{n}", priority=priority) for n in range(count)])


def _claimed(db_url: str, queue: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM clawnsole.items WHERE queue = %s AND status = 'claimed'", [queue]
        ).fetchone()
    assert row is not None
    return int(row[0])


def _together(calls: list[tuple[Callable[..., None], tuple[Any, ...]]]) -> None:
    """Run each call in a thread of its own, all at once, and wait for every one to return."""
    threads = [threading.Thread(target=call, args=args) for call, args in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a claiming thread did not finish"


# --- pause, resume, drain ----------------------------------------------------------------------------------


def test_a_paused_queue_gives_a_claim_nothing_and_resume_gives_its_items_back(wq: WorkQueue, db_url: str) -> None:
    _fill(wq, "jobs", 3)
    queues = Queues(wq)
    paused = queues.pause("jobs", by="ops-alice")
    assert (paused.state, paused.state_by) == ("paused", "ops-alice") and paused.state_since is not None
    assert wq.claim_next("jobs", limit=10) == []
    assert wq.enqueue("jobs", "accepted while paused").created
    resumed = queues.resume("jobs", by="ops-bob")
    assert (resumed.state, resumed.state_by) == ("active", "ops-bob")
    assert len(wq.claim_next("jobs", limit=10)) == 4


def test_pausing_a_paused_queue_keeps_who_paused_it_and_since_when(wq: WorkQueue) -> None:
    queues = Queues(wq)
    first = queues.pause("jobs", by="ops-alice")
    again = queues.pause("jobs", by="ops-bob")
    assert (again.state_by, again.state_since) == ("ops-alice", first.state_since)


def test_a_queue_nobody_controlled_reads_active_and_resume_creates_no_row(wq: WorkQueue, db_url: str) -> None:
    control = Queues(wq).resume("never-touched", by="ops")
    assert (control.state, control.state_since, control.concurrency_limit, control.rate) == ("active", None, None, None)
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM clawnsole.queues").fetchone() == (0,)


def test_resume_wakes_the_listeners_of_the_queue_in_its_own_transaction(wq: WorkQueue, db_url: str) -> None:
    queues = Queues(wq)
    queues.pause("jobs", by="ops")
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute('LISTEN "clawnsole:clawnsole"')
        queues.resume("jobs", by="ops")
        payloads = [n.payload for n in listener.notifies(timeout=5, stop_after=1)]
    assert payloads == ["jobs"]


def test_a_draining_queue_is_still_claimed(wq: WorkQueue) -> None:
    _fill(wq, "jobs", 2)
    assert Queues(wq).drain("jobs", by="ops").state == "draining"
    assert len(wq.claim_next("jobs", limit=10)) == 2


def test_a_paused_queue_with_better_items_does_not_starve_the_other_queue_of_a_claim(wq: WorkQueue) -> None:
    _fill(wq, "urgent", 5, priority=100)
    _fill(wq, "routine", 5, priority=10)
    Queues(wq).pause("urgent", by="ops")
    claimed = wq.claim_next(["urgent", "routine"], limit=4)
    assert [i.queue for i in claimed] == ["routine"] * 4


# --- concurrency limit -------------------------------------------------------------------------------------


def test_a_concurrency_limit_caps_the_items_claimed_at_once_and_a_completion_frees_a_slot(
    wq: WorkQueue, db_url: str
) -> None:
    _fill(wq, "jobs", 10)
    Queues(wq).limit("jobs", concurrency=3, by="ops")
    first = wq.claim_next("jobs", limit=2)
    second = wq.claim_next("jobs", limit=5)
    assert (len(first), len(second), wq.claim_next("jobs", limit=5)) == (2, 1, [])
    wq.done(first[0].id, lease_token=str(first[0].lease_token))
    assert len(wq.claim_next("jobs", limit=5)) == 1
    assert _claimed(db_url, "jobs") == 3


def test_a_limit_below_the_claimed_count_applies_to_new_claims_and_revokes_nothing(wq: WorkQueue, db_url: str) -> None:
    _fill(wq, "jobs", 10)
    held = wq.claim_next("jobs", limit=5)
    Queues(wq).limit("jobs", concurrency=2, by="ops")
    assert wq.claim_next("jobs", limit=5) == []
    assert _claimed(db_url, "jobs") == 5
    for item in held[:4]:
        wq.done(item.id, lease_token=str(item.lease_token))
    assert len(wq.claim_next("jobs", limit=5)) == 1  # one held + one new = the limit of 2


def test_an_expired_lease_not_yet_recovered_still_counts_against_the_limit(wq: WorkQueue, db_url: str) -> None:
    _fill(wq, "jobs", 3)
    Queues(wq).limit("jobs", concurrency=1, by="ops")
    [item] = wq.claim_next("jobs")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE clawnsole.items SET lease_expires_at = now() - interval '1 s' WHERE id = %s", [item.id])
    assert wq.run_steps(ops.claim(["jobs"], agent="other", recover=False)) == []
    # Recovery gives it back, and then the slot is free again.
    assert len(wq.claim_next("jobs", agent="other")) == 1


def test_a_claim_that_waited_for_the_queue_lock_counts_the_claims_committed_while_it_waited(
    wq: WorkQueue, db_url: str
) -> None:
    # READ COMMITTED: the waiting claim's own snapshot was taken before the other claims committed; the
    # allowance must count with a snapshot taken after the lock, or it hands out slots already taken.
    _fill(wq, "jobs", 10)
    Queues(wq).limit("jobs", concurrency=2, by="ops")
    with psycopg.connect(db_url) as holder:
        holder.execute("SELECT 1 FROM clawnsole.queues WHERE name = 'jobs' FOR UPDATE")
        with WorkQueue(db_url, schema=SCHEMA, agent="waiter") as other:
            thread, outcome = _in_thread(lambda: other.claim_next("jobs", limit=2))
            wait_for(lambda: _waiting_on_a_lock(db_url), what="the claim to wait for the queue's row lock")
            assert thread.is_alive() and not outcome
            # The lock holder claims both slots in its own transaction and commits while the other waits.
            taken = wq.claim_next("jobs", limit=2, agent="holder", conn=holder)
            assert len(taken) == 2
            holder.commit()
            thread.join(15)
    assert outcome == [[]]
    assert _claimed(db_url, "jobs") == 2


def test_eight_threads_claiming_at_once_never_hold_more_than_the_limit(wq: WorkQueue, db_url: str) -> None:
    _fill(wq, "jobs", 120)
    Queues(wq).limit("jobs", concurrency=3, by="ops")
    stop = time.monotonic() + 30
    errors: list[BaseException] = []
    finished: list[int] = []

    def work(agent: str) -> None:
        try:
            with WorkQueue(db_url, schema=SCHEMA, agent=agent) as mine:
                while time.monotonic() < stop and len(finished) < 120:
                    for item in mine.claim_next("jobs", limit=4):
                        mine.done(item.id, lease_token=str(item.lease_token))
                        finished.append(item.id)
        except BaseException as error:
            errors.append(error)

    _together([(work, (f"w{n}",)) for n in range(8)])
    assert not errors
    peak, claims = held_at_once(db_url, "jobs")
    assert claims == 120 and peak <= 3, (peak, claims)


# --- rate limit --------------------------------------------------------------------------------------------


def test_a_rate_limit_caps_the_claims_of_a_window_and_counts_them_in_the_queue_row(wq: WorkQueue, db_url: str) -> None:
    _fill(wq, "jobs", 10)
    Queues(wq).limit("jobs", rate="3/d", by="ops")
    assert (len(wq.claim_next("jobs", limit=2)), len(wq.claim_next("jobs", limit=5))) == (2, 1)
    assert wq.claim_next("jobs", limit=5) == []
    [summary] = Queues(wq).list("jobs")
    assert (summary.rate_used, summary.control.rate) == (3, Rate(3, 86_400))
    with psycopg.connect(db_url) as conn:
        counts = conn.execute(
            "SELECT detail->'rate_window_claims' FROM clawnsole.item_events WHERE event = 'claimed' ORDER BY id"
        ).fetchall()
    assert [c for (c,) in counts] == [1, 2, 3]  # each claim's event keeps the count it brought the window to


def test_a_claim_from_a_window_older_than_the_one_counted_takes_nothing(wq: WorkQueue, db_url: str) -> None:
    # A claim whose transaction began in window W but that got the queue's lock after a claim of window W+1
    # counted: it must not count into W again (W's count is gone), so it takes nothing and claims again later.
    _fill(wq, "jobs", 3)
    Queues(wq).limit("jobs", rate="100/h", by="ops")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE clawnsole.queues SET rate_window_claims = 1,"
            " rate_window_start = date_bin('1 hour', now(), timestamptz 'epoch') + interval '1 hour'"
        )
    assert wq.claim_next("jobs", limit=3) == []


def test_a_new_rate_window_length_restarts_the_count(wq: WorkQueue) -> None:
    _fill(wq, "jobs", 10)
    queues = Queues(wq)
    queues.limit("jobs", rate="2/d", by="ops")
    assert len(wq.claim_next("jobs", limit=5)) == 2
    queues.limit("jobs", rate="3/h", by="ops")
    assert len(wq.claim_next("jobs", limit=5)) == 3


def test_continuous_claiming_under_a_rate_of_20_per_second_stays_within_every_aligned_second(
    wq: WorkQueue, db_url: str
) -> None:
    _fill(wq, "jobs", 400)
    Queues(wq).limit("jobs", rate="20/s", by="ops")
    stop = time.monotonic() + 3.0
    errors: list[BaseException] = []

    def work(agent: str) -> None:
        try:
            with WorkQueue(db_url, schema=SCHEMA, agent=agent) as mine:
                while time.monotonic() < stop:
                    mine.claim_next("jobs", limit=8)
        except BaseException as error:
            errors.append(error)

    _together([(work, (f"w{n}",)) for n in range(4)])
    assert not errors
    with psycopg.connect(db_url, autocommit=True) as conn:
        windows = conn.execute(
            "SELECT date_bin('1 second', at, timestamptz 'epoch') AS w, count(*) FROM clawnsole.item_events"
            " WHERE event = 'claimed' GROUP BY w ORDER BY w"
        ).fetchall()
    counts = [int(n) for _, n in windows]
    assert counts and max(counts) <= 20, windows
    # It did claim: three seconds span at least three windows, and the full ones reached the limit.
    assert sum(counts) >= 40 and 20 in counts, windows


# --- several queues, locks, the plan of an uncontrolled queue --------------------------------------------


def test_a_claim_of_several_queues_takes_a_limited_queues_allowance_and_fills_up_from_the_others(
    wq: WorkQueue,
) -> None:
    _fill(wq, "limited", 5, priority=100)
    _fill(wq, "open", 5, priority=10)
    Queues(wq).limit("limited", concurrency=2, by="ops")
    claimed = wq.claim_next(["open", "limited"], limit=6)
    assert sorted(i.queue for i in claimed) == ["limited"] * 2 + ["open"] * 4


def test_claims_of_two_limited_queues_named_in_either_order_do_not_deadlock(wq: WorkQueue, db_url: str) -> None:
    _fill(wq, "a", 200)
    _fill(wq, "b", 200)
    queues = Queues(wq)
    queues.limit("a", concurrency=50, by="ops")
    queues.limit("b", rate="1000/s", by="ops")
    errors: list[BaseException] = []

    def work(agent: str, names: list[str]) -> None:
        try:
            with WorkQueue(db_url, schema=SCHEMA, agent=agent) as mine, psycopg.connect(db_url) as conn:
                for _ in range(40):
                    mine.claim_next(names, limit=2, conn=conn)
                    conn.commit()  # both queue rows stayed locked until here
        except BaseException as error:
            errors.append(error)

    _together([(work, (f"w{n}", ["a", "b"] if n % 2 else ["b", "a"])) for n in range(4)])
    assert not errors, errors


def _allowance_calls(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute(
        "SELECT coalesce(sum(calls), 0) FROM pg_stat_xact_user_functions WHERE funcname = 'queue_claim_allowance'"
    ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("controlled", ["no row", "a row without limits", "paused"])
def test_the_claim_of_a_queue_without_limits_never_calls_the_allowance_function(
    wq: WorkQueue, db_url: str, controlled: str
) -> None:
    _fill(wq, "jobs", 3)
    _fill(wq, "limited", 3)
    queues = Queues(wq)
    queues.limit("limited", concurrency=5, by="ops")
    if controlled == "a row without limits":
        queues.limit("jobs", concurrency=0, rate="none", by="ops")
    elif controlled == "paused":
        queues.pause("jobs", by="ops")
    with psycopg.connect(db_url) as conn:
        conn.execute("SET track_functions = 'pl'")
        wq.claim_next("jobs", conn=conn)
        assert _allowance_calls(conn) == 0
        wq.claim_next("limited", conn=conn)
        assert _allowance_calls(conn) == 1


def test_the_claim_of_a_limited_queue_still_reads_the_claim_index_in_order(wq: WorkQueue, db_url: str) -> None:
    from clawnsole.db.sql import statement

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO clawnsole.items (queue, title) SELECT 'big', 'p' || n FROM generate_series(1, 20000) n"
        )
        conn.execute("ANALYZE clawnsole.items")
        Queues(wq).limit("big", concurrency=5, rate="100/s", by="ops")
        params = {"agent": "w", "lease": 30, "limit": 10, "channel": "c"}
        for name, names in [("item_claim_one", ["big"]), ("item_claim", ["big"]), ("item_claim", ["big", "other"])]:
            plan = "\n".join(
                str(r[0])
                for r in conn.execute("EXPLAIN (ANALYZE) " + statement(SCHEMA, name), params | {"queues": names})
            )
            assert "Index Scan using items_claimable_idx" in plan, plan
            assert "Seq Scan on items" not in plan, plan


# --- input ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rate"),
    [("10/s", Rate(10, 1)), ("600/m", Rate(600, 60)), ("1000/h", Rate(1000, 3600)), ("100/10s", Rate(100, 10)),
     (" 5 / 15m ", Rate(5, 900)), ("none", None), ("NONE", None)],
)  # fmt: skip
def test_a_rate_reads_as_claims_per_window(text: str, rate: Rate | None) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["10", "10/x", "0/s", "-1/s", "10/0s", "ten/s", "10/2d", ""])
def test_a_malformed_rate_is_bad_input_naming_the_rate(text: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_rate(text)
    assert raised.value.field == "rate"


def test_bad_limits_write_nothing(wq: WorkQueue, db_url: str) -> None:
    queues = Queues(wq)
    for call, field in [
        (lambda: queues.limit("jobs", concurrency=-1), "concurrency"),
        (lambda: queues.limit("jobs", rate="5/fortnight"), "rate"),
        (lambda: queues.limit("jobs"), "limits"),
        (lambda: queues.pause("bad name"), "queue"),
    ]:
        with pytest.raises(InvalidInput) as raised:
            call()
        assert raised.value.field == field
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM clawnsole.queues").fetchone() == (0,)


def test_an_idle_worker_sleeps_through_a_paused_queue_until_it_is_resumed(wq: WorkQueue) -> None:
    from clawnsole.worker.steps import next_wakeup

    _fill(wq, "jobs", 2)
    assert wq.run(next_wakeup(["jobs"], agent="w")) == pytest.approx(0, abs=1.0)  # due now: try at once
    Queues(wq).pause("jobs", by="ops")
    # Nothing can be claimed until `queue resume`, which notifies: no reason to look again every 0.25 s.
    assert wq.run(next_wakeup(["jobs"], agent="w")) is None
    assert wq.run(next_wakeup(["jobs", "other"], agent="w")) is None
    Queues(wq).resume("jobs", by="ops")
    assert wq.run(next_wakeup(["jobs"], agent="w")) is not None
