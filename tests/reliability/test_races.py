"""Races between real sessions: threads, each on a connection of its own, released together by a barrier,
and the outcome read back from the database's own history (items, item_events, schedule_runs)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import psycopg
import pytest

from clawnsole import WorkQueue
from clawnsole.errors import Conflict, LeaseLost
from clawnsole.models import Enqueued, Item
from clawnsole.ops import Op, Step
from clawnsole.schedules import ops as schedule_ops
from clawnsole.schedules import runtime as scheduler_runtime
from clawnsole.schedules.api import Schedules
from clawnsole.schedules.models import TickReport

SCHEMA = "clawnsole"
ROUNDS = 50
# A fixed instant for the schedule tests: every window, and so every dedupe key, is known in advance.
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _race(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls in threads released at once; each one's result, or the exception it raised."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        barrier.wait(timeout=30)
        try:
            results[index] = call()
        except Exception as error:  # an outcome like any other: the test decides what is allowed
            results[index] = error

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(t.is_alive() for t in threads), "a racer is stuck"
    return results


def _events(conn: psycopg.Connection[Any], item_id: int) -> list[tuple[str, str | None]]:
    rows = conn.execute(
        "SELECT event, agent FROM clawnsole.item_events WHERE item_id = %s ORDER BY id", [item_id]
    ).fetchall()
    return [(str(event), agent) for event, agent in rows]


@pytest.fixture
def admin(db_url: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain autocommit connection for reading the history and forcing state with SQL."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


def test_32_concurrent_enqueues_with_one_dedupe_key_make_one_row_and_all_get_its_id(
    db_url: str, admin: psycopg.Connection[Any]
) -> None:
    connections = [psycopg.connect(db_url) for _ in range(32)]
    try:
        queues = [WorkQueue(c, schema=SCHEMA, agent=f"enqueuer-{n}").open() for n, c in enumerate(connections)]
        outcomes = _race(*[lambda q=q: q.enqueue("q", "once", dedupe_key="the-key") for q in queues])
    finally:
        for conn in connections:
            conn.close()
    assert all(isinstance(o, Enqueued) for o in outcomes), [o for o in outcomes if not isinstance(o, Enqueued)]
    ids = {o.item.id for o in outcomes}
    assert len(ids) == 1 and sum(o.created for o in outcomes) == 1
    [item_id] = ids
    assert admin.execute("SELECT count(*) FROM clawnsole.items WHERE dedupe_key = 'the-key'").fetchone() == (1,)
    assert [event for event, _ in _events(admin, item_id)] == ["enqueued"]


def test_eight_schedulers_ticking_at_once_over_missed_windows_enqueue_each_window_exactly_once(
    db_url: str, admin: psycopg.Connection[Any]
) -> None:
    names = [f"every-minute-{n:02d}" for n in range(20)]
    with WorkQueue(db_url, schema=SCHEMA, agent="setup") as wq:
        schedules = Schedules(wq)
        for name in names:
            schedules.add(name, queue="cron", title=name, every="60", catch_up="all", now=T0)
    # Five windows of each were missed (T0+1m … T0+5m); the schedulers come back half a minute after the last.
    now = T0 + timedelta(minutes=5, seconds=30)
    windows = [T0 + timedelta(minutes=m) for m in range(1, 6)]

    reports = _race(
        *[lambda n=n: scheduler_runtime.tick(db_url, SCHEMA, agent=f"scheduler-{n}", now=now) for n in range(8)]
    )

    assert all(isinstance(r, TickReport) for r in reports), [r for r in reports if not isinstance(r, TickReport)]
    expected = {f"schedule:{name}:{at:%Y-%m-%dT%H:%M:%S}Z" for name in names for at in windows}
    per_key = dict(
        admin.execute("SELECT dedupe_key, count(*) FROM clawnsole.items WHERE queue = 'cron' GROUP BY 1").fetchall()
    )
    assert per_key == dict.fromkeys(expected, 1)
    enqueued = admin.execute(
        "SELECT count(*) FROM clawnsole.item_events e JOIN clawnsole.items i ON i.id = e.item_id"
        " WHERE i.queue = 'cron' AND e.event = 'enqueued'"
    ).fetchone()
    assert enqueued == (len(expected),)
    outcomes = dict(admin.execute("SELECT outcome, count(*) FROM clawnsole.schedule_runs GROUP BY 1").fetchall())
    assert outcomes.get("enqueued") == len(expected) and "duplicate" not in outcomes, outcomes
    assert sum(r.enqueued for r in reports) == len(expected)
    next_runs = admin.execute("SELECT DISTINCT next_run_at FROM clawnsole.schedules").fetchall()
    assert next_runs == [(T0 + timedelta(minutes=6),)]


def test_done_racing_lease_expiry_and_a_new_claim_leaves_exactly_one_live_holder(
    db_url: str, admin: psycopg.Connection[Any]
) -> None:
    wins: Counter[str] = Counter()
    with (
        WorkQueue(db_url, schema=SCHEMA, agent="old-holder", max_connections=1) as old,
        WorkQueue(db_url, schema=SCHEMA, agent="new-holder", max_connections=1) as new,
    ):
        for n in range(ROUNDS):
            queue = f"lease-{n}"
            old.enqueue(queue, f"round {n}")
            [held] = old.claim_next(queue)
            admin.execute(
                "UPDATE clawnsole.items SET lease_expires_at = now() - interval '1 second' WHERE id = %s", [held.id]
            )

            finished, claimed = _race(
                partial(old.done, held.id, lease_token=str(held.lease_token), result={"by": "old"}),
                partial(new.claim_next, queue),
            )

            history = _events(admin, held.id)
            status, holder = admin.execute(
                "SELECT status, claimed_by FROM clawnsole.items WHERE id = %s", [held.id]
            ).fetchone() or (None, None)
            start = [("enqueued", "old-holder"), ("claimed", "old-holder")]
            if isinstance(finished, Item):
                assert claimed == [], f"round {n}: done succeeded and the new agent claimed it too: {history}"
                assert (status, history) == ("done", [*start, ("done", "old-holder")]), n
                wins["done"] += 1
            else:
                assert isinstance(finished, LeaseLost), f"round {n}: {finished!r}"
                assert history[:3] == [*start, ("lease_expired", None)], f"round {n}: {history}"
                if not claimed:
                    # Neither took effect: the recovery committed, then the late done's UPDATE locked the
                    # recovered row while re-checking it, and the claim's SKIP LOCKED passed over it. Still
                    # no second holder; the item waits, pending, for the very next claim.
                    assert (status, history) == ("pending", [*start, ("lease_expired", None)]), n
                    claimed = new.claim_next(queue)
                    wins["claim on the next try"] += 1
                else:
                    wins["claim"] += 1
                assert [i.id for i in claimed] == [held.id], f"round {n}: {history}"
                status, holder = admin.execute(
                    "SELECT status, claimed_by FROM clawnsole.items WHERE id = %s", [held.id]
                ).fetchone() or (None, None)
                assert (status, holder) == ("claimed", "new-holder"), n
                assert _events(admin, held.id) == [*start, ("lease_expired", None), ("claimed", "new-holder")], n
    assert sum(wins.values()) == ROUNDS, wins


def test_cancel_racing_a_claim_lets_exactly_one_of_them_succeed(db_url: str, admin: psycopg.Connection[Any]) -> None:
    wins: Counter[str] = Counter()
    with (
        WorkQueue(db_url, schema=SCHEMA, agent="canceller", max_connections=1) as canceller,
        WorkQueue(db_url, schema=SCHEMA, agent="claimer", max_connections=1) as claimer,
    ):
        for n in range(ROUNDS):
            queue = f"cancel-{n}"
            item_id = canceller.enqueue(queue, f"round {n}").item.id

            cancelled, claimed = _race(partial(canceller.cancel, item_id), partial(claimer.claim_next, queue))

            history = [event for event, _ in _events(admin, item_id)]
            status = admin.execute("SELECT status FROM clawnsole.items WHERE id = %s", [item_id]).fetchone()
            if isinstance(cancelled, Item):
                assert claimed == [], f"round {n}: cancelled and claimed: {history}"
                assert (status, history) == (("cancelled",), ["enqueued", "cancelled"]), n
                wins["cancel"] += 1
            else:
                assert isinstance(cancelled, Conflict), f"round {n}: {cancelled!r}"
                assert [i.id for i in claimed] == [item_id], f"round {n}: neither succeeded: {history}"
                assert (status, history) == (("claimed",), ["enqueued", "claimed"]), n
                wins["claim"] += 1
    assert sum(wins.values()) == ROUNDS


def test_a_schedule_update_racing_a_tick_is_kept_and_the_window_fires_once(
    db_url: str, admin: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deterministic: the tick runs exactly between the update's locking read and its write.

    The update's operation is stepped as it always is; only, once its `schedule_lock` row is back, a whole
    tick runs on another connection before the update goes on. While the update holds that row lock the
    tick must skip the schedule; an update whose lock is already gone (each statement its own transaction)
    writes back the next run it read, rewinding the tick's advance, and the window fires a second time.
    """
    now = T0 + timedelta(seconds=90)  # the window T0+1m is due
    ticks: list[TickReport] = []
    real_update = schedule_ops.update

    def update_with_a_tick_after_the_lock(name: str, changes: Mapping[str, Any], **options: Any) -> Op[Any]:
        op = real_update(name, changes, **options)
        try:
            step: Step = next(op)
            while True:
                rows = yield step
                if step.name == "schedule_lock" and not ticks:
                    ticks.append(scheduler_runtime.tick(db_url, SCHEMA, agent="racing-tick", now=now))
                step = op.send(rows)
        except StopIteration as stop:
            return stop.value

    with WorkQueue(db_url, schema=SCHEMA, agent="editor") as wq:
        schedules = Schedules(wq)
        schedules.add("hourly", queue="cron", title="old title", every="60", catch_up="all", now=T0)
        monkeypatch.setattr(schedule_ops, "update", update_with_a_tick_after_the_lock)
        schedules.update("hourly", title="new title", now=now)
        monkeypatch.undo()
        assert len(ticks) == 1, "the update never took its row lock"
        # Whatever the tick in between did, a later tick at the same instant must find nothing left to fire.
        scheduler_runtime.tick(db_url, SCHEMA, agent="later-tick", now=now)
        stored = schedules.get("hourly")

    assert stored.title == "new title", "the update was lost"
    runs = admin.execute("SELECT fire_at, outcome, agent FROM clawnsole.schedule_runs ORDER BY id").fetchall()
    fires = [(fire_at, outcome) for fire_at, outcome, _ in runs if outcome in ("enqueued", "duplicate")]
    assert fires == [(T0 + timedelta(minutes=1), "enqueued")], f"the window fired more than once: {runs}"
    assert stored.next_run_at == T0 + timedelta(minutes=2), "the tick's advance was rewound by the update"
    key = f"schedule:hourly:{T0 + timedelta(minutes=1):%Y-%m-%dT%H:%M:%S}Z"
    assert admin.execute("SELECT count(*) FROM clawnsole.items WHERE dedupe_key = %s", [key]).fetchone() == (1,)
