"""The worker runtime in-process against real PostgreSQL: wake-ups, heartbeats and fencing, failures,
graceful stop and release, outages, budgets, side tasks and the systemd watchdog."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from clawnsole import SchemaMissing, WorkQueue, ops
from clawnsole.models import Item
from clawnsole.worker import Context, HandlerFailed, Registry, SideTask, Worker, WorkerOptions
from clawnsole.worker.eventlog import EventLog
from clawnsole.worker.sdnotify import Notifier

from .helpers import Events, running, wait_for

Handler = Callable[[Item, Context], Any]


def _worker(
    db_url: str,
    handler: Handler,
    events: Events,
    *,
    notifier: Notifier | None = None,
    side_tasks: tuple[SideTask, ...] = (),
    **options: Any,
) -> Worker:
    settings: dict[str, Any] = {
        "queues": ("jobs",),
        "agent": "w1",
        "lease": 2.0,
        "poll": 30.0,
        "grace": 5.0,
        "kill_grace": 1.0,
    } | options
    return Worker(
        db_url,
        handler,
        WorkerOptions(**settings),
        log=EventLog(events, fmt="json", agent=settings["agent"]),
        notifier=notifier,
        side_tasks=side_tasks,
    )


def _status(wq: WorkQueue, item_id: int) -> str:
    return wq.get(item_id).status


def _events(wq: WorkQueue, item_id: int) -> list[str]:
    return [e.event for e in wq.history(item_id)]


def _steal(db_url: str, wq: WorkQueue, item_id: int) -> Item:
    """What a second worker does once a lease expires: recover the item and claim it."""
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE clawnsole.items SET lease_expires_at = now() - interval '1 second' WHERE id = %s", [item_id]
        )
    # Recovery and claim in one transaction: recovery wakes the queue's listeners, and the worker itself
    # must not take the item back between the two.
    [stolen] = wq.run(ops.claim(["jobs"], agent="thief", lease=60))
    assert stolen.id == item_id
    return stolen


def _idle(db_url: str) -> bool:
    """True once the worker's claim connection rests after computing its next wake-up (it is waiting)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle'"
            " AND application_name LIKE 'clawnsole-worker:%%' AND query LIKE '%%min(lease_expires_at)%%'"
        ).fetchall()
    return bool(rows)


def test_an_idle_worker_picks_up_a_new_item_at_once_not_at_the_next_poll(db_url: str, wq: WorkQueue) -> None:
    events = Events()
    with running(_worker(db_url, lambda item, ctx: {"ran": item.id}, events, poll=30.0), events) as worker:
        wait_for(lambda: _idle(db_url), what="the worker to go idle")
        started = time.monotonic()
        item_id = wq.enqueue("jobs", "wake up").item.id
        wait_for(lambda: _status(wq, item_id) == "done", timeout=5)
        assert time.monotonic() - started < 2.0
        assert worker.stop() == 0
    assert wq.get(item_id).result == {"ran": item_id}
    assert [r["event"] for r in events.records() if r.get("id") == item_id] == ["claimed", "done"]


def test_a_delayed_item_wakes_the_worker_when_due_without_polling_meanwhile(db_url: str, wq: WorkQueue) -> None:
    events = Events()
    worker = _worker(db_url, lambda item, ctx: None, events, poll=30.0)
    claims: list[float] = []
    claim = worker._claim

    def counted(limit: int, recover: bool) -> list[Item]:
        claims.append(time.monotonic())
        return claim(limit, recover)

    worker._claim = counted  # type: ignore[method-assign]
    with running(worker, events):
        item_id = wq.enqueue("jobs", "later", delay=2.0).item.id
        enqueued = time.monotonic()
        wait_for(lambda: _status(wq, item_id) == "done", timeout=10)
        assert 1.8 < time.monotonic() - enqueued < 5.0
    # Woken once by the enqueue (nothing due yet), then once when it came due: no claims in between.
    assert len([t for t in claims if t >= enqueued]) <= 3


def test_heartbeats_keep_a_handler_running_three_times_the_lease_alive(db_url: str, wq: WorkQueue) -> None:
    def slow(item: Item, ctx: Context) -> dict[str, bool]:
        return {"cancelled": ctx.cancelled.wait(12.0)}

    events = Events()
    # A 4 s lease renewed every 4/3 s: a busy CI machine may delay a beat without the lease running out.
    with running(_worker(db_url, slow, events, lease=4.0), events):
        item_id = wq.enqueue("jobs", "slow").item.id
        events.wait("claimed", id=item_id)  # the thief must not win the first claim
        while _status(wq, item_id) != "done":
            # Another worker trying all along: it would recover the item the moment its lease ran out.
            assert wq.claim_next("jobs", agent="thief") == []
            time.sleep(0.05)
    item = wq.get(item_id)
    assert item.result == {"cancelled": False} and item.attempts == 1
    assert _events(wq, item_id) == ["enqueued", "claimed", "done"]


def test_a_handler_whose_lease_is_stolen_is_stopped_and_its_outcome_dropped(db_url: str, wq: WorkQueue) -> None:
    stopped: dict[str, Any] = {}

    def patient(item: Item, ctx: Context) -> str:
        stopped["cancelled"] = ctx.cancelled.wait(30)
        stopped["reason"] = ctx.cancel_reason
        return "too late"

    events = Events()
    with running(_worker(db_url, patient, events, lease=1.0), events):
        item_id = wq.enqueue("jobs", "contested").item.id
        events.wait("claimed", id=item_id)
        stolen = _steal(db_url, wq, item_id)
        lost = events.wait("lease_lost", id=item_id, timeout=5)
        wait_for(lambda: "reason" in stopped)
    assert stopped == {"cancelled": True, "reason": "lease lost"}
    assert "stopping the handler" in lost["detail"]
    item = wq.get(item_id)
    assert (item.status, item.claimed_by, item.lease_token) == ("claimed", "thief", stolen.lease_token)
    assert "done" not in _events(wq, item_id)
    assert not events.named("done")


def test_a_late_done_after_the_lease_was_stolen_is_rejected(db_url: str, wq: WorkQueue) -> None:
    proceed = threading.Event()

    def blocked(item: Item, ctx: Context) -> str:
        proceed.wait(30)
        return "late result"

    events = Events()
    # A long lease: the heartbeat does not look before the handler returns, so the write itself is fenced.
    with running(_worker(db_url, blocked, events, lease=60.0), events):
        item_id = wq.enqueue("jobs", "contested").item.id
        events.wait("claimed", id=item_id)
        _steal(db_url, wq, item_id)
        proceed.set()
        rejected = events.wait("lease_lost", id=item_id)
    assert rejected["outcome"] == "done"
    item = wq.get(item_id)
    assert (item.status, item.claimed_by, item.result) == ("claimed", "thief", None)


def test_exceptions_fail_the_attempt_and_handler_failed_can_skip_retries(db_url: str, wq: WorkQueue) -> None:
    def failing(item: Item, ctx: Context) -> None:
        if item.title == "retry me":
            raise ValueError("bad input")
        raise HandlerFailed("the order does not exist", retry=False)

    events = Events()
    with running(_worker(db_url, failing, events), events):
        retried = wq.enqueue("jobs", "retry me").item.id
        final = wq.enqueue("jobs", "give up").item.id
        wait_for(lambda: _status(wq, final) == "failed" and wq.get(retried).last_error is not None)
    again = wq.get(retried)
    assert (again.status, again.last_error, again.attempts) == ("pending", "ValueError: bad input", 1)
    assert wq.get(final).last_error == "the order does not exist"
    assert events.wait("failed", id=retried)["retry_at"]
    assert "retry_at" not in events.wait("failed", id=final)


def test_an_item_of_an_unknown_kind_fails_for_good_at_once(db_url: str, wq: WorkQueue) -> None:
    registry = Registry({"health-check": lambda item, ctx: "ok"}, "ops_jobs")
    events = Events()
    with running(_worker(db_url, registry, events), events):
        known = wq.enqueue("jobs", "check", kind="health-check").item.id
        unknown = wq.enqueue("jobs", "mystery", kind="reindex", max_attempts=5).item.id
        wait_for(lambda: _status(wq, unknown) == "failed" and _status(wq, known) == "done")
    item = wq.get(unknown)
    assert item.attempts == 1
    assert item.last_error == "no handler for kind 'reindex' in ops_jobs (it handles: health-check)"


def test_progress_is_recorded_and_a_result_must_be_json(db_url: str, wq: WorkQueue) -> None:
    def reporting(item: Item, ctx: Context) -> Any:
        assert ctx.progress(note="halfway", percent=50) is True
        return {"set": {1, 2}} if item.title == "bad result" else ["fine"]

    events = Events()
    with running(_worker(db_url, reporting, events), events):
        good = wq.enqueue("jobs", "good result").item.id
        bad = wq.enqueue("jobs", "bad result").item.id
        wait_for(lambda: _status(wq, good) == "done" and wq.get(bad).last_error is not None)
    assert wq.get(good).result == ["fine"]
    progress = [e for e in wq.history(good) if e.event == "progress"]
    assert progress and progress[0].detail == {"note": "halfway", "percent": 50}
    assert "not JSON-serialisable" in (wq.get(bad).last_error or "")


def test_concurrency_runs_that_many_items_at_once(db_url: str, wq: WorkQueue) -> None:
    barrier = threading.Barrier(4, timeout=10)

    def together(item: Item, ctx: Context) -> int:
        return barrier.wait()

    events = Events()
    with running(_worker(db_url, together, events, concurrency=4), events):
        ids = [wq.enqueue("jobs", f"part {n}").item.id for n in range(4)]
        wait_for(lambda: all(_status(wq, i) == "done" for i in ids))
    assert sorted(wq.get(i).result for i in ids) == [0, 1, 2, 3]


def test_items_enqueued_one_by_one_to_an_idle_worker_never_run_more_than_its_concurrency(
    db_url: str, wq: WorkQueue
) -> None:
    # Each enqueue notifies: the listening thread claims on the notification while the claim loop is idle, the
    # claim loop when it is not. Together they must never hold more than the free slots.
    lock = threading.Lock()
    now_running = [0]
    most = [0]

    def held(item: Item, ctx: Context) -> None:
        with lock:
            now_running[0] += 1
            most[0] = max(most[0], now_running[0])
        time.sleep(0.01)  # a short piece of work, so items overlap
        with lock:
            now_running[0] -= 1

    events = Events()
    with running(_worker(db_url, held, events, concurrency=2), events):
        wait_for(lambda: _idle(db_url), what="the worker to go idle")
        ids = [wq.enqueue("jobs", f"one by one {n}").item.id for n in range(40)]
        wait_for(lambda: all(_status(wq, i) == "done" for i in ids), timeout=30)
    assert 1 <= most[0] <= 2
    for item_id in ids:
        assert _events(wq, item_id).count("claimed") == 1
    assert sorted(r["id"] for r in events.records() if r["event"] == "claimed") == ids


def test_a_stopped_worker_leaves_no_connection_open_listening_included(db_url: str, wq: WorkQueue) -> None:
    def connections() -> int:
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name = 'clawnsole-worker:w-conns'"
            ).fetchone()
        return int(row[0]) if row else 0

    events = Events()
    with running(_worker(db_url, lambda item, ctx: None, events, agent="w-conns"), events) as worker:
        item_id = wq.enqueue("jobs", "picked up by the listening thread").item.id
        wait_for(lambda: _status(wq, item_id) == "done")
        assert connections() >= 2  # claiming and listening, at least
        assert worker.stop() == 0
    wait_for(lambda: connections() == 0, what="the worker's connections to close")


def test_max_items_holds_for_items_arriving_while_the_worker_is_idle(db_url: str, wq: WorkQueue) -> None:
    events = Events()
    with running(_worker(db_url, lambda item, ctx: None, events, max_items=3, concurrency=2), events) as worker:
        wait_for(lambda: _idle(db_url), what="the worker to go idle")
        ids = [wq.enqueue("jobs", f"n{n}").item.id for n in range(6)]
        assert worker.join() == 0
    assert sorted(_status(wq, i) for i in ids) == ["done"] * 3 + ["pending"] * 3
    assert sum(_events(wq, i).count("claimed") for i in ids) == 3
    assert events.wait("stopped")["reason"] == "max items"


def test_stop_waits_for_items_finishing_within_the_grace(db_url: str, wq: WorkQueue) -> None:
    finish = threading.Event()
    events = Events()
    with running(_worker(db_url, lambda item, ctx: finish.wait(30), events, grace=20.0), events) as worker:
        item_id = wq.enqueue("jobs", "almost there").item.id
        events.wait("claimed", id=item_id)
        worker.worker.stop()
        events.wait("stopping")
        assert wq.claim_next("jobs", agent="other") == []
        finish.set()
        assert worker.join() == 0
    assert (wq.get(item_id).status, wq.get(item_id).result) == ("done", True)
    assert not events.named("released")


def test_stop_releases_what_outlives_the_grace_without_charging_an_attempt(db_url: str, wq: WorkQueue) -> None:
    seen: dict[str, Any] = {}

    def honours_cancel(item: Item, ctx: Context) -> None:
        seen["cancelled"] = ctx.cancelled.wait(30)
        seen["reason"] = ctx.cancel_reason

    events = Events()
    with running(_worker(db_url, honours_cancel, events, grace=0.3), events) as worker:
        item_id = wq.enqueue("jobs", "long").item.id
        events.wait("claimed", id=item_id)
        assert worker.stop() == 0
    assert seen == {"cancelled": True, "reason": "worker shutting down"}
    item = wq.get(item_id)
    assert (item.status, item.attempts, item.claimed_by) == ("pending", 0, None)
    last = wq.history(item_id)[-1]
    assert (last.event, last.detail) == ("released", {"reason": "shutdown"})
    assert events.wait("released", id=item_id)


def test_an_immediate_stop_releases_at_once(db_url: str, wq: WorkQueue) -> None:
    events = Events()
    with running(_worker(db_url, lambda item, ctx: ctx.cancelled.wait(30), events, grace=60.0), events) as w:
        item_id = wq.enqueue("jobs", "long").item.id
        events.wait("claimed", id=item_id)
        w.worker.stop()
        events.wait("stopping")
        started = time.monotonic()
        w.worker.stop(immediate=True)
        assert w.join() == 0
        assert time.monotonic() - started < 5
    assert _status(wq, item_id) == "pending"


def _terminate_worker_connections(server_url: str, db_url: str) -> int:
    """Kill every connection the worker holds to the test database, as a server restart would."""
    with psycopg.connect(server_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name LIKE 'clawnsole-worker:%%'",
            [psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]],
        ).fetchall()
    return len(rows)


def test_the_worker_reconnects_after_its_connections_are_killed(db_url: str, server_url: str, wq: WorkQueue) -> None:
    proceed = threading.Event()
    events = Events()
    with running(_worker(db_url, lambda item, ctx: proceed.wait(30) and "ok", events), events):
        first = wq.enqueue("jobs", "in flight during the outage").item.id
        events.wait("claimed", id=first)
        assert _terminate_worker_connections(server_url, db_url) >= 2  # claiming and listening, at least
        events.wait("db_unavailable")
        proceed.set()
        wait_for(lambda: _status(wq, first) == "done")
        second = wq.enqueue("jobs", "after the outage").item.id
        wait_for(lambda: _status(wq, second) == "done", timeout=10)
    assert wq.get(first).attempts == 1


def test_an_unreachable_database_is_retried_until_stopped(empty_db_url: str) -> None:
    unreachable = psycopg.conninfo.make_conninfo(empty_db_url, port="1", host="127.0.0.1")
    events = Events()
    with running(_worker(unreachable, lambda item, ctx: None, events), events, wait_ready=False) as worker:
        wait_for(lambda: len(events.named("db_unavailable", during="connecting")) >= 2)
        assert worker.stop() == 0


def test_a_missing_schema_at_start_is_a_configuration_error(empty_db_url: str) -> None:
    events = Events()
    worker = _worker(empty_db_url, lambda item, ctx: None, events)
    with running(worker, events, wait_ready=False) as run, pytest.raises(SchemaMissing, match="clawnsole migrate"):
        run.join()


def test_max_items_exits_after_the_budget(db_url: str, wq: WorkQueue) -> None:
    ids = [wq.enqueue("jobs", f"n{n}").item.id for n in range(5)]
    events = Events()
    with running(_worker(db_url, lambda item, ctx: None, events, max_items=3, concurrency=2), events) as worker:
        assert worker.join() == 0
    assert sorted(_status(wq, i) for i in ids) == ["done"] * 3 + ["pending"] * 2
    assert events.wait("stopped")["reason"] == "max items"


def test_a_pass_runs_what_is_due_up_to_its_budget_then_returns(db_url: str, wq: WorkQueue) -> None:
    events = Events()
    with running(_worker(db_url, lambda item, ctx: None, events, once=True, max_items=10), events) as worker:
        assert worker.join() == 0
    assert events.wait("stopped")["reason"] == "queue empty"
    ids = [wq.enqueue("jobs", f"n{n}").item.id for n in range(3)]
    events = Events()
    with running(_worker(db_url, lambda item, ctx: None, events, once=True, max_items=2), events) as worker:
        assert worker.join() == 0
    assert sorted(_status(wq, i) for i in ids) == ["done", "done", "pending"]


def test_a_side_task_that_dies_stops_the_worker_loudly(db_url: str) -> None:
    started = threading.Event()

    def scheduler(stop: threading.Event) -> None:
        started.set()
        raise RuntimeError("schedule table is corrupt")

    events = Events()
    worker = _worker(db_url, lambda item, ctx: None, events, side_tasks=(SideTask("scheduler", scheduler),))
    with running(worker, events, wait_ready=False) as run:
        assert run.join() == 1
    died = events.wait("side_task_died")
    assert died["task"] == "scheduler" and "schedule table is corrupt" in died["error"]


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"clawnsole-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    yield "@" + name, sock
    sock.close()


def _messages(sock: socket.socket) -> list[str]:
    received = []
    while True:
        try:
            received.extend(sock.recv(4096).decode().split("\n"))
        except BlockingIOError:
            return received


def test_the_watchdog_is_fed_only_while_the_database_answers(
    db_url: str, server_url: str, notify_socket: tuple[str, socket.socket]
) -> None:
    address, sock = notify_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "600000"})
    dbname = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
    events = Events()
    seen: list[str] = []
    with running(_worker(db_url, lambda item, ctx: None, events, notifier=notifier), events) as worker:
        wait_for(lambda: seen.extend(_messages(sock)) or seen.count("WATCHDOG=1") >= 2)
        assert "READY=1" in seen and any(m.startswith("STATUS=") for m in seen)
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
            try:
                _terminate_worker_connections(server_url, db_url)
                events.wait("db_unavailable", during="heartbeat")
                _messages(sock)
                failed = len(events.named("db_unavailable", during="heartbeat"))
                # Several more heartbeats fail while the database is away: none of them may ping.
                wait_for(lambda: len(events.named("db_unavailable", during="heartbeat")) >= failed + 3)
                assert "WATCHDOG=1" not in _messages(sock)
            finally:
                admin.execute(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
        wait_for(lambda: "WATCHDOG=1" in _messages(sock), timeout=10, what="the watchdog to resume")
        seen = []
        assert worker.stop() == 0
    assert "STOPPING=1" in seen + _messages(sock)


def test_max_runtime_stops_gracefully_and_exits_0(db_url: str) -> None:
    events = Events()
    with running(_worker(db_url, lambda item, ctx: None, events, max_runtime=0.5), events) as worker:
        assert worker.join() == 0
    assert events.wait("stopped")["reason"] == "max runtime"
