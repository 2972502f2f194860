"""The worker survives what used to stop it or run an item twice: its own expired claim handed back to it,
output the database will not store, and a heartbeat held up by a row lock."""

from __future__ import annotations

import math
import threading
from typing import Any

import psycopg

from clawnsole import WorkQueue
from clawnsole.models import Item
from clawnsole.worker import Context, HandlerFailed, Worker, WorkerOptions
from clawnsole.worker.eventlog import EventLog

from .helpers import Events, running, wait_for


def _worker(db_url: str, handler: Any, events: Events, **options: Any) -> Worker:
    settings: dict[str, Any] = {"queues": ("jobs",), "agent": "w1", "lease": 3.0, "poll": 30.0, "grace": 5.0} | options
    return Worker(db_url, handler, WorkerOptions(**settings), log=EventLog(events, fmt="json", agent="w1"))


def test_a_worker_handed_back_its_own_expired_claim_stops_the_older_handler(db_url: str, wq: WorkQueue) -> None:
    first_run_cancelled = threading.Event()
    runs: list[int] = []

    def handler(item: Item, ctx: Context) -> str:
        runs.append(item.attempts)
        if item.title == "slow" and item.attempts == 1:
            if ctx.cancelled.wait(30):
                first_run_cancelled.set()
            return "the first run's late outcome"
        return "the second run"

    events = Events()
    with running(_worker(db_url, handler, events, lease=30.0, concurrency=2), events):
        item_id = wq.enqueue("jobs", "slow", priority=90).item.id
        events.wait("claimed", id=item_id)
        # A busy claim loop recovers expired leases at most once a second: let that second pass.
        wait_for(lambda: _seconds_since_claim(db_url, item_id) > 1.2, what="a second since the claim")
        with psycopg.connect(db_url) as conn:  # its lease runs out while the handler still runs
            conn.execute("UPDATE clawnsole.items SET lease_expires_at = now() - interval '1 second'")
        wq.enqueue("jobs", "a wake-up for the claim loop, which recovers the expired lease first")
        wait_for(lambda: wq.get(item_id).status == "done", what="the second run to finish")
        assert first_run_cancelled.wait(10), "the older handler was told to stop"
    item = wq.get(item_id)
    assert (item.attempts, item.result) == (2, "the second run")
    history = [e.event for e in wq.history(item_id)]
    assert history.count("done") == 1 and history.count("claimed") == 2
    assert "claimed again" in events.wait("lease_lost", id=item_id)["detail"]


def test_output_the_database_refuses_fails_its_own_item_and_the_worker_goes_on(db_url: str, wq: WorkQueue) -> None:
    def handler(item: Item, ctx: Context) -> Any:
        kind = item.payload["kind"]
        if kind == "nul-result":
            return {"out\x00key": "before\x00after", "list": ["\x00"]}
        if kind == "surrogate-result":
            return {"out": "bad \udcff byte"}
        if kind == "nul-error":
            raise HandlerFailed("stderr said \x00 and more", retry=False)
        if kind == "unstorable":
            return {"value": math.nan}  # JSON text PostgreSQL's jsonb will not take
        return {"ok": item.id}

    kinds = ["nul-result", "surrogate-result", "nul-error", "unstorable"] + ["plain"] * 20
    ids = [wq.enqueue("jobs", kind, payload={"kind": kind}, max_attempts=1).item.id for kind in kinds]
    events = Events()
    with running(_worker(db_url, handler, events), events) as worker:
        wait_for(lambda: all(wq.get(i).status in ("done", "failed") for i in ids), what="every item to finish")
        assert worker.thread.is_alive()
    assert not events.named("side_task_died")
    by_kind = {kind: wq.get(item_id) for kind, item_id in zip(kinds, ids, strict=True)}
    assert by_kind["nul-result"].result == {"out\ufffdkey": "before\ufffdafter", "list": ["\ufffd"]}
    assert by_kind["surrogate-result"].result == {"out": "bad \ufffd byte"}
    failed = by_kind["nul-error"]
    assert (failed.status, failed.last_error) == ("failed", "stderr said \ufffd and more")
    unstorable = by_kind["unstorable"]
    assert unstorable.status == "failed" and unstorable.last_error is not None
    assert unstorable.last_error.startswith("the result could not be stored")
    plain = [wq.get(i) for kind, i in zip(kinds, ids, strict=True) if kind == "plain"]
    assert all(item.status == "done" and item.result == {"ok": item.id} for item in plain)


def test_a_beat_held_up_past_half_the_lease_is_logged_and_the_lease_kept(db_url: str, wq: WorkQueue) -> None:
    proceed = threading.Event()

    def handler(item: Item, ctx: Context) -> str:
        proceed.wait(30)
        return "kept"

    events = Events()
    with running(_worker(db_url, handler, events, lease=3.0), events) as worker:
        item_id = wq.enqueue("jobs", "held").item.id
        events.wait("claimed", id=item_id)
        with psycopg.connect(db_url) as holder:
            holder.execute("SELECT 1 FROM clawnsole.items WHERE id = %s FOR UPDATE", [item_id])
            wait_for(lambda: _a_renewal_waits(db_url), what="the heartbeat to wait on the row lock", timeout=10)
            wait_for(lambda: worker.worker._heartbeat.worst_gap == 0.0 and _held_for(holder, 1.6), timeout=10)
        late = events.wait("heartbeat_late", timeout=10)
        proceed.set()
        wait_for(lambda: wq.get(item_id).status == "done", what="the item to finish")
    assert late["gap"] > 1.5 and late["lease"] == 3.0
    history = [e.event for e in wq.history(item_id)]
    assert "lease_expired" not in history and history.count("claimed") == 1


def _a_renewal_waits(db_url: str) -> bool:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            " AND application_name LIKE 'clawnsole-worker:%%'"
        ).fetchall()
    return bool(rows)


def _held_for(holder: psycopg.Connection[Any], seconds: float) -> bool:
    """True once the holder's transaction has been open this long (by the database clock)."""
    row = holder.execute("SELECT extract(epoch FROM clock_timestamp() - now()) >= %s", [seconds]).fetchone()
    return bool(row and row[0])


def _seconds_since_claim(db_url: str, item_id: int) -> float:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT extract(epoch FROM now() - claimed_at) FROM clawnsole.items WHERE id = %s", [item_id]
        )
        value = row.fetchone()
    return float(value[0]) if value and value[0] is not None else 0.0
