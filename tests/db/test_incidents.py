"""The incident tools against real PostgreSQL: the workers registry written by real workers (alive, gone,
aged out, never fatal), leases listed and taken back by force (fenced, uncharged, recorded, in id order
under concurrency), the doctor's checks finding a held snapshot, an invalid index and more, and the claim
plan rolled back."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from clawnsole import AsyncWorkQueue, LeaseLost, NotFound, WorkQueue, ops
from clawnsole.errors import InvalidInput
from clawnsole.incidents import AsyncIncidents, Incidents
from clawnsole.incidents.doctor import Thresholds
from clawnsole.incidents.models import FAIL, OK, WARN, DoctorReport
from clawnsole.models import Item
from clawnsole.worker import Context, HandlerFailed, Worker, WorkerOptions
from clawnsole.worker.eventlog import EventLog
from tests.worker.helpers import Events, running, wait_for


@pytest.fixture
def incidents(wq: WorkQueue) -> Incidents:
    return Incidents(wq)


def _sql(db_url: str, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def _worker(db_url: str, handler: Any, events: Events, **options: Any) -> Worker:
    settings: dict[str, Any] = {"queues": ("jobs",), "agent": "w1", "lease": 0.9, "poll": 30.0, "grace": 5.0}
    settings |= options
    return Worker(db_url, handler, WorkerOptions(**settings), log=EventLog(events, fmt="json", agent=settings["agent"]))


def _check(report: DoctorReport, name: str) -> Any:
    [found] = [c for c in report.checks if c.name == name]
    return found


# The workers registry ----------------------------------------------------------------------------------


def test_a_worker_registers_at_start_counts_with_its_heartbeats_and_says_when_it_stopped_cleanly(
    db_url: str, wq: WorkQueue, incidents: Incidents
) -> None:
    def handler(item: Item, ctx: Context) -> None:
        if item.title == "bad":
            raise HandlerFailed("no", retry=False)

    events = Events()
    with running(_worker(db_url, handler, events, concurrency=4), events) as worker:
        [row] = incidents.workers()
        assert (row.agent, row.state, row.queues, row.concurrency, row.stopped_at) == ("w1", "alive", ["jobs"], 4, None)
        assert row.heartbeat_seconds == pytest.approx(0.3)
        assert row.pid is not None and row.host
        for title in ("good", "good", "bad"):
            wq.enqueue("jobs", title)
        # The counts arrive with the next heartbeats (every 0.3 s here), not with each item.
        wait_for(lambda: [(w.done_count, w.failed_count) for w in incidents.workers()] == [(2, 1)], what="counts")
        seen = incidents.workers()[0].last_seen_at
        wait_for(lambda: incidents.workers()[0].last_seen_at > seen, what="a later heartbeat")
        assert worker.stop() == 0
    assert incidents.workers() == []  # a clean stop leaves the default listing
    [stopped] = incidents.workers(include_stopped=True)
    assert (stopped.state, stopped.gone, stopped.done_count, stopped.failed_count) == ("gone", "stopped", 2, 1)
    assert stopped.stopped_at is not None and stopped.in_flight == 0


def test_a_worker_not_seen_for_three_heartbeats_is_gone_silent_and_shows_in_the_doctor(
    db_url: str, incidents: Incidents
) -> None:
    events = Events()
    with running(_worker(db_url, lambda item, ctx: None, events, lease=30.0), events) as worker:
        _sql(db_url, "UPDATE clawnsole.workers SET last_seen_at = now() - interval '31 seconds'")
        # Holding the row locked makes the heartbeat skip its refresh (it never waits on the registry), so
        # the row stays as set while it is read, as it would for a worker that really went quiet.
        with psycopg.connect(db_url) as lock:
            lock.execute("SELECT 1 FROM clawnsole.workers FOR UPDATE")
            [row] = incidents.workers()
            assert (row.state, row.gone) == ("gone", "silent") and row.last_seen_seconds >= 31
            check = _check(incidents.doctor(), "workers")
            assert check.status == WARN and "w1" in check.detail and check.data["silent"] == ["w1"]
        wait_for(lambda: incidents.workers()[0].gone is None, what="the next heartbeat to bring it back")
        worker.stop()


def test_rows_of_workers_gone_a_day_age_out_when_a_worker_registers_and_the_living_stay(
    db_url: str, incidents: Incidents
) -> None:
    insert = (
        "INSERT INTO clawnsole.workers (agent, instance, queues, heartbeat_seconds, last_seen_at, stopped_at)"
        " VALUES (%s, gen_random_uuid(), '{jobs}', 10, now() - %s::interval, now() - %s::interval)"
    )
    _sql(db_url, insert, ["stopped-long-ago", "25 hours", "25 hours"])
    _sql(db_url, insert, ["silent-long-ago", "25 hours", None])
    _sql(db_url, insert, ["stopped-an-hour-ago", "1 hour", "1 hour"])
    _sql(db_url, insert, ["silent-a-minute-ago", "1 minute", None])
    events = Events()
    with running(_worker(db_url, lambda item, ctx: None, events), events) as worker:
        left = sorted(w.agent for w in incidents.workers(include_stopped=True))
        worker.stop()
    assert left == ["silent-a-minute-ago", "stopped-an-hour-ago", "w1"]
    assert incidents.prune_workers(keep=1800) == 1  # the operator's prune: gone for more than half an hour
    assert sorted(w.agent for w in incidents.workers(include_stopped=True)) == ["silent-a-minute-ago", "w1"]


def test_a_heartbeat_writes_the_row_again_when_it_went_missing(db_url: str, incidents: Incidents) -> None:
    events = Events()
    with running(_worker(db_url, lambda item, ctx: None, events), events) as worker:
        _sql(db_url, "DELETE FROM clawnsole.workers")
        wait_for(lambda: [w.agent for w in incidents.workers()] == ["w1"], what="the row written again")
        events.wait("registry_row_missing")
        worker.stop()


def test_a_registry_that_cannot_be_written_is_logged_and_the_heartbeat_keeps_the_lease(
    db_url: str, wq: WorkQueue
) -> None:
    def slow(item: Item, ctx: Context) -> str:
        ctx.cancelled.wait(3.0)  # more than three leases of 0.9 s: only renewals keep it
        return "finished"

    events = Events()
    with running(_worker(db_url, slow, events), events) as worker:
        _sql(db_url, "ALTER TABLE clawnsole.workers RENAME TO workers_away")
        item_id = wq.enqueue("jobs", "slow").item.id
        wait_for(lambda: wq.get(item_id).status == "done", timeout=20, what="the slow item done")
        events.wait("registry_not_updated")
        assert worker.stop() == 0
    item = wq.get(item_id)
    assert (item.result, item.attempts) == ("finished", 1)
    assert not events.named("lease_lost") and not events.named("side_task_died")


# Leases --------------------------------------------------------------------------------------------------


def test_leases_lists_who_holds_what_with_time_left_and_last_progress(
    db_url: str, wq: WorkQueue, incidents: Incidents
) -> None:
    first = wq.enqueue("alpha", "one", kind="build").item.id
    second = wq.enqueue("beta", "two").item.id
    wq.enqueue("alpha", "waiting")
    [held] = wq.claim_next("alpha", agent="a1", lease=60)
    wq.claim_next("beta", agent="b1", lease=600)
    wq.progress(first, lease_token=str(held.lease_token), note="3 of 7", percent=40)
    found = incidents.leases()
    assert [(lease.id, lease.agent, lease.kind) for lease in found] == [(first, "a1", "build"), (second, "b1", None)]
    lease = found[0]
    assert 50 < lease.lease_left_seconds <= 60 and lease.attempts == 1 and lease.claimed_at is not None
    assert (lease.progress_note, lease.progress_percent) == ("3 of 7", 40) and lease.progress_at is not None
    assert found[1].progress_at is None
    assert [lease.id for lease in incidents.leases(queue="beta")] == [second]
    assert [lease.id for lease in incidents.leases(agent="a1")] == [first]
    assert incidents.leases(expired=True) == []
    _sql(db_url, "UPDATE clawnsole.items SET lease_expires_at = now() - interval '90 seconds' WHERE id = %s", [second])
    [expired] = incidents.leases(expired=True)
    assert expired.id == second and expired.lease_left_seconds <= -90


def test_a_forced_release_returns_the_item_uncharged_records_who_and_fences_the_old_holder(
    wq: WorkQueue, incidents: Incidents
) -> None:
    item_id = wq.enqueue("q", "stuck").item.id
    [held] = wq.claim_next("q", agent="w-old")
    token = str(held.lease_token)
    [released] = incidents.release(item_id, reason="host lost", by="alice")
    assert (released.id, released.holder, released.attempts) == (item_id, "w-old", 0)
    item = wq.get(item_id)
    assert (item.status, item.attempts, item.claimed_by, item.lease_token) == ("pending", 0, None, None)
    event = wq.history(item_id)[-1]
    assert (event.event, event.agent) == ("released", "alice")
    assert event.detail == {"by": "alice", "reason": "host lost", "forced": True, "holder": "w-old"}
    # The old holder is fenced off before anyone claims the item again, and after.
    with pytest.raises(LeaseLost):
        wq.progress(item_id, lease_token=token, note="still here")
    [again] = wq.claim_next("q", agent="w-new")
    assert again.id == item_id and again.attempts == 1
    with pytest.raises(LeaseLost):
        wq.done(item_id, lease_token=token)
    wq.done(item_id, lease_token=str(again.lease_token))
    assert [e.event for e in wq.history(item_id)] == ["enqueued", "claimed", "released", "claimed", "done"]


def test_releasing_an_agent_takes_back_only_its_leases_and_nothing_held_is_not_found(
    wq: WorkQueue, incidents: Incidents
) -> None:
    ids = [wq.enqueue("q", f"n{n}").item.id for n in range(4)]
    wq.claim_next("q", agent="a", limit=3)
    [other] = wq.claim_next("q", agent="b")
    released = incidents.release(agent="a", by="ops")
    assert [r.id for r in released] == ids[:3] and {r.holder for r in released} == {"a"}
    assert wq.get(other.id).status == "claimed"
    with pytest.raises(NotFound, match="holds no lease"):
        incidents.release(agent="a", by="ops")
    with pytest.raises(NotFound, match="pending"):
        incidents.release(ids[0], by="ops")
    with pytest.raises(NotFound, match="no item"):
        incidents.release(999_999, by="ops")
    with pytest.raises(InvalidInput, match="id"):
        incidents.release(ids[0], agent="a", by="ops")


def test_concurrent_releases_and_heartbeats_never_deadlock_and_release_each_item_once(
    db_url: str, wq: WorkQueue
) -> None:
    ids = [wq.enqueue("q", f"n{n}").item.id for n in range(40)]
    held = wq.claim_next("q", agent="a", limit=40, lease=600)
    leases = [(i.id, str(i.lease_token)) for i in held]
    results: list[list[int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def release() -> None:
        try:
            with WorkQueue(db_url, agent="op") as queue:
                start.wait()
                try:
                    results.append([r.id for r in Incidents(queue).release(agent="a")])
                except NotFound:
                    results.append([])
        except BaseException as error:
            errors.append(error)

    def beat() -> None:
        try:
            with WorkQueue(db_url, agent="a") as queue:
                start.wait()
                for _ in range(20):
                    queue.run_steps(ops.heartbeat(leases, agent="a"))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=release), threading.Thread(target=release), threading.Thread(target=beat)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(results[0] + results[1]) == ids
    released = _sql(
        db_url, "SELECT item_id, count(*) FROM clawnsole.item_events WHERE event = 'released' GROUP BY item_id"
    )
    assert sorted(released) == [(i, 1) for i in ids]


# The doctor ----------------------------------------------------------------------------------------------


def test_the_doctor_finds_nothing_to_fail_on_a_fresh_schema(incidents: Incidents) -> None:
    report = incidents.doctor()
    assert [c.name for c in report.checks] == [
        "schema",
        "indexes",
        "claim_plan",
        "vacuum",
        "oldest_transaction",
        "notifications",
        "expired_leases",
        "queues",
        "workers",
    ]
    assert all(c.status == OK for c in report.checks), report.to_json()
    assert not report.failed and report.status == OK


@pytest.fixture
def held_snapshot(db_url: str) -> Iterator[int]:
    """A second connection in a REPEATABLE READ transaction that has taken its snapshot; yields its pid."""
    with psycopg.connect(db_url, application_name="report-export") as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.execute("SELECT count(*) FROM clawnsole.items")
        [(pid,)] = conn.execute("SELECT pg_backend_pid()").fetchall()
        yield int(pid)
        conn.rollback()


def test_the_doctor_names_the_session_holding_a_snapshot_and_fails_past_the_limit(
    incidents: Incidents, held_snapshot: int
) -> None:
    assert _check(incidents.doctor(), "oldest_transaction").status == OK  # younger than 5 minutes
    warned = _check(incidents.doctor(Thresholds(transaction_warn_after=0)), "oldest_transaction")
    assert warned.status == WARN and f"pid {held_snapshot}" in warned.detail and "report-export" in warned.detail
    assert f"pg_terminate_backend({held_snapshot})" in (warned.hint or "")
    report = incidents.doctor(Thresholds(transaction_warn_after=0, transaction_fail_after=0))
    assert _check(report, "oldest_transaction").status == FAIL and report.failed


def test_the_doctor_fails_on_an_index_left_invalid_by_a_failed_concurrent_build(
    db_url: str, wq: WorkQueue, incidents: Incidents
) -> None:
    wq.enqueue("q", "same")
    wq.enqueue("q", "same")
    with pytest.raises(psycopg.errors.UniqueViolation):
        _sql(db_url, "CREATE UNIQUE INDEX CONCURRENTLY items_title_idx ON clawnsole.items (title)")
    check = _check(incidents.doctor(), "indexes")
    assert check.status == FAIL and "items_title_idx on items" in check.detail
    assert check.data["invalid"] == ["items_title_idx on items"] and "REINDEX" in (check.hint or "")


def test_the_doctor_warns_about_a_claim_plan_without_the_partial_index(db_url: str, incidents: Incidents) -> None:
    _sql(db_url, "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'clawnsole.items_claimable_idx'::regclass")
    report = incidents.doctor()
    assert _check(report, "claim_plan").status == WARN
    assert "items_claimable_idx on items" in _check(report, "indexes").detail


def test_the_doctor_warns_about_paused_queues_and_leases_nobody_recovers(
    db_url: str, wq: WorkQueue, incidents: Incidents
) -> None:
    _sql(db_url, "INSERT INTO clawnsole.queues (name, state, state_by) VALUES ('billing', 'paused', 'alice')")
    wq.enqueue("reports", "r")
    wq.claim_next("reports", agent="gone")
    _sql(db_url, "UPDATE clawnsole.items SET lease_expires_at = now() - interval '10 minutes'")
    report = incidents.doctor()
    queues, leases = _check(report, "queues"), _check(report, "expired_leases")
    assert queues.status == WARN and "billing paused" in queues.detail and "by alice" in queues.detail
    assert leases.status == WARN and "reports (1, oldest 10 min)" in leases.detail
    assert not report.failed


def test_the_doctor_reports_a_missing_schema_as_failed_checks_rather_than_stopping(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as conn:
        report = Incidents(WorkQueue(conn)).doctor()
    schema = _check(report, "schema")
    assert schema.status == FAIL and "not set up" in schema.detail and "migrate" in (schema.hint or "")
    assert report.failed and _check(report, "claim_plan").status == FAIL


# The claim plan ------------------------------------------------------------------------------------------


def test_explain_claim_runs_the_live_claim_and_rolls_it_back(db_url: str, wq: WorkQueue, incidents: Incidents) -> None:
    ids = [wq.enqueue("jobs", f"n{n}").item.id for n in range(3)]
    before = _sql(db_url, "SELECT count(*) FROM clawnsole.item_events")
    found = incidents.explain_claim(["jobs"], limit=2)
    assert found.analyzed and found.uses_claimable_index and found.queues == ["jobs"]
    assert "actual time" in found.plan and "Buffers" in found.plan and "Update on items" in found.plan
    as_json = incidents.explain_claim(limit=1, fmt="json")  # the default queue: one with pending items
    assert as_json.queues == ["jobs"] and as_json.plan[0]["Plan"] and as_json.uses_claimable_index
    assert [(i.status, i.attempts, i.claimed_by) for i in map(wq.get, ids)] == [("pending", 0, None)] * 3
    assert _sql(db_url, "SELECT count(*) FROM clawnsole.item_events") == before
    assert [i.id for i in wq.claim_next("jobs", limit=3)] == ids  # nothing left locked either


def test_explain_claim_inside_a_callers_transaction_rolls_back_only_itself(db_url: str, wq: WorkQueue) -> None:
    item_id = wq.enqueue("jobs", "x").item.id
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO clawnsole.queues (name) VALUES ('mine')")
        Incidents(wq).explain_claim(["jobs"], conn=conn)
        conn.commit()
    assert wq.get(item_id).status == "pending"
    assert _sql(db_url, "SELECT name FROM clawnsole.queues") == [("mine",)]


def test_the_async_twin_lists_releases_and_explains_like_the_sync_one(db_url: str, wq: WorkQueue) -> None:
    item_id = wq.enqueue("jobs", "x").item.id
    wq.claim_next("jobs", agent="w")

    async def main() -> tuple[list[int], list[int], bool, str]:
        async with AsyncWorkQueue(db_url, agent="ops") as queue:
            incidents = AsyncIncidents(queue)
            held = [lease.id for lease in await incidents.leases()]
            released = [r.id for r in await incidents.release(item_id, reason="test")]
            plan = await incidents.explain_claim(["jobs"])
            report = await incidents.doctor()
            return held, released, plan.uses_claimable_index, report.status

    held, released, uses_index, status = asyncio.run(main())
    assert held == released == [item_id] and uses_index and status == OK
    assert wq.get(item_id).status == "pending" and wq.history(item_id)[-1].agent == "ops"
