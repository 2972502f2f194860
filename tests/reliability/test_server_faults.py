"""Server faults: the database restarting under running workers, and too few connection slots for them all.

Each scenario runs its own private PostgreSQL cluster (tests/reliability/private_cluster.py), never the
shared test server, and real `clawnsole workqueue worker-loop` processes. Verdicts come from the
database's event history; the workers' JSON logs are checked for how they behaved while waiting.
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from clawnsole import WorkQueue
from tests.conftest import SCHEMA
from tests.reliability.conftest import ReliabilityReport, Scale
from tests.reliability.harness import Analysis, Fleet, WorkerProcess, analyse, connect, enqueue_load
from tests.reliability.private_cluster import (
    binaries_missing,
    connections_by_worker,
    done_count,
    private_cluster,
    reconnected_since,
    require_alive,
)
from tests.worker.helpers import wait_for

pytestmark = pytest.mark.reliability

# How long the server stays down: long enough for every worker to notice and back off a few times. Not
# scaled up for full runs: the longer the outage, the longer each worker's next backoff (up to 30 s).
DOWNTIME = 3.0
SLEEP_MS = 5  # each item's work in the restart scenario
# The promise: once the server is back, work resumes within this long (the workers' backoff is capped at
# 30 s, but with full jitter and several workers the first to retry is far sooner).
RECOVERY_LIMIT = 15.0
# What PostgreSQL says when no slot is left: to non-superusers while only reserved slots remain (15:
# "...for non-replication superuser connections", 16+: "...for roles with the SUPERUSER attribute"), and
# to anyone once every slot is taken.
NO_SLOT_MESSAGES = ("remaining connection slots are reserved", "too many clients already")
# A worker's connections once it has claimed, finished and beaten once: claiming, finishing, heartbeat
# (and progress), LISTEN. The connection-exhaustion scenario sizes the server by it.
WORKER_CONNECTIONS = 4
ROOT_WARNING_PREFIX = "clawnsole: warning: running as root"


@pytest.fixture(autouse=True)
def _needs_postgresql_binaries() -> None:
    if (reason := binaries_missing()) is None:
        return
    if os.environ.get("CLAWNSOLE_PG_BINDIR"):
        # Binaries asked for by name (CI's PostgreSQL 18 run) must be there: skipping would hide a broken job.
        pytest.fail(f"no private PostgreSQL cluster possible: {reason}")
    pytest.skip(f"no private PostgreSQL cluster possible: {reason}")


def _enqueue(url: str, queue: str, count: int, sleep_ms: int) -> None:
    with WorkQueue(url, schema=SCHEMA, agent="fault-test") as wq:
        enqueue_load(wq, count, queue=queue, sleep_ms=(sleep_ms, sleep_ms), cpu_share=0, progress_share=0)


def _scalar(url: str, query: str, params: dict[str, Any]) -> Any:
    with connect(url) as conn:
        row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _first_event_after(url: str, event: str, since: datetime) -> datetime | None:
    query = "SELECT min(at) FROM clawnsole.item_events WHERE event = %(event)s AND at >= %(since)s"
    first: datetime | None = _scalar(url, query, {"event": event, "since": since})
    return first


def _first_write_per_agent(url: str, since: datetime) -> list[tuple[str, float]]:
    """Per worker, seconds from `since` to its first claim or done (a worker that found no work has none)."""
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT agent, extract(epoch FROM min(at) - %(since)s) FROM clawnsole.item_events "
            "WHERE event IN ('claimed', 'done') AND at >= %(since)s GROUP BY agent ORDER BY agent",
            {"since": since},
        ).fetchall()
    return [(str(agent), float(seconds)) for agent, seconds in rows]


def _longest_claim_to_done(url: str, since: datetime) -> float:
    """The longest wait, among items claimed and done after `since`, from claim to done: handlers take
    milliseconds, so the rest is an outcome waiting to be recorded."""
    seconds = _scalar(
        url,
        """SELECT coalesce(max(extract(epoch FROM d.at - c.at)), 0) FROM clawnsole.item_events d
           CROSS JOIN LATERAL (SELECT max(at) AS at FROM clawnsole.item_events
                                WHERE item_id = d.item_id AND event = 'claimed' AND at <= d.at) c
           WHERE d.event = 'done' AND c.at >= %(since)s""",
        {"since": since},
    )
    return float(seconds)


def _unexpected_output(worker: WorkerProcess) -> list[str]:
    """stderr lines that are neither event records nor the root warning: a traceback would show here."""
    lines = worker.log.read_text(errors="replace").splitlines()
    return [line for line in lines if line.strip() and not line.startswith(("{", ROOT_WARNING_PREFIX))]


def _attempts_out_of_order(worker: WorkerProcess) -> list[tuple[str, int]]:
    """The retry lines whose `attempt` does not follow on from the previous line of the same activity (1, 2,
    3, … or a new series at 1). Each activity retries in one thread, so one line per attempt means exactly
    this: no attempt logged twice, none skipped. (A listener noticing its connection drop logs one line
    without an attempt number before it starts retrying.)"""
    previous: dict[str, int] = {}
    wrong = []
    for record in worker.named("db_unavailable"):
        during, attempt = str(record.get("during")), record.get("attempt")
        if attempt is None:
            continue
        if attempt not in (1, previous.get(during, 0) + 1):
            wrong.append((during, attempt))
        previous[during] = attempt
    return wrong


def _report(
    report: ReliabilityReport, scenario: str, url: str, queue: str, faults: int, began: float, note: str
) -> Analysis:
    """Record the scenario's row before any assertion, so a failing run still shows what it found."""
    found = analyse(url, queue)
    report.add(
        scenario,
        items=found.items,
        faults=faults,
        lost=len(found.lost),
        duplicated=len(found.duplicated),
        reruns=len(found.rerun_items),
        seconds=time.monotonic() - began,
        note=f"{note}; {found.describe()}",
    )
    return found


def _assert_judged_clean(found: Analysis, count: int) -> None:
    assert found.items == count
    assert found.lost == [] and dict(found.statuses) == {"done": count}, found.describe()
    assert found.duplicated == []
    assert found.overlaps == [] and found.foreign_dones == [], found.describe()


def test_workers_ride_out_a_database_restart_and_every_item_is_done_exactly_once(
    scale: Scale, reliability_report: ReliabilityReport, tmp_path: Path
) -> None:
    began = time.monotonic()
    count = scale.pick(ci=1000, full=10_000)
    queue = "restart"
    with private_cluster() as cluster:
        url = cluster.create_database("faults")
        version = cluster.server.status().version
        _enqueue(url, queue, count, sleep_ms=SLEEP_MS)
        with Fleet(url, tmp_path, queues=(queue,), concurrency=8, lease="5") as fleet:
            running = [fleet.start(slot, ready=False) for slot in ("restart-a", "restart-b", "restart-c")]
            agents = [w.agent for w in running]
            wait_for(
                lambda: require_alive(running) and done_count(url, queue) >= count // 5,
                60,
                f"{count // 5} items done before the fault",
            )

            cluster.stop()
            went_down = time.monotonic()
            # Down for DOWNTIME at least, and until every worker has noticed (it logs each failed attempt).
            wait_for(
                lambda: (
                    require_alive(running)
                    and time.monotonic() - went_down >= DOWNTIME
                    and all(w.named("db_unavailable") for w in running)
                ),
                DOWNTIME + 20,
                "every worker to log db_unavailable while the server is down",
            )
            cluster.start()
            returned = cluster.server_started_at("faults")  # the database's clock, like the event history's

            wait_for(
                lambda: require_alive(running) and done_count(url, queue) == count,
                90,
                f"all {count} items done after the restart",
            )

            # Each worker reconnects on its own backoff (full jitter, up to 30 s a wait): the fleet resumes
            # within RECOVERY_LIMIT, and a worker that found the queue drained must still come back.
            def all_back() -> dict[str, datetime]:
                back = reconnected_since(url, returned)
                return back if back.keys() >= set(agents) else {}

            wait_for(all_back, 45, "every worker to reconnect")
            alive = {w.agent: w.alive() for w in running}
            codes = fleet.stop()
        first_claim = _first_event_after(url, "claimed", returned)
        first_done = _first_event_after(url, "done", returned)
        done_before = _scalar(
            url, "SELECT count(*) FROM clawnsole.item_events WHERE event = 'done' AND at < %(t)s", {"t": returned}
        )
        resumed = [t for t in (first_claim, first_done) if t is not None]
        recovery = (min(resumed) - returned).total_seconds() if resumed else float("inf")
        claim_after = "none" if first_claim is None else f"{(first_claim - returned).total_seconds():.2f}s"
        per_worker = ", ".join(f"{agent} {seconds:.1f}s" for agent, seconds in _first_write_per_agent(url, returned))
        note = (
            f"PostgreSQL {version} down {DOWNTIME:.0f}s+ after {done_before} done; work resumed {recovery:.2f}s "
            f"after it returned (first claim {claim_after}; first write per worker: {per_worker}; longest "
            f"claim-to-done after it {_longest_claim_to_done(url, returned):.1f}s for {SLEEP_MS} ms of work)"
        )
        found = _report(reliability_report, "server restart", url, queue, 1, began, note)

    assert done_before < count, "the queue was drained before the server went down: the fault hit nothing"
    assert recovery <= RECOVERY_LIMIT, note
    _assert_judged_clean(found, count)
    assert alive == dict.fromkeys(agents, True), "a worker died during the outage"
    assert codes == dict.fromkeys(agents, 0)
    for worker in running:
        records = worker.records()
        unavailable = [r for r in records if r["event"] == "db_unavailable"]
        assert unavailable, f"{worker.agent} logged no db_unavailable line"
        # One clear line naming the server and what went wrong, not a driver's raw message.
        assert all(" the database at " in str(r.get("error")) for r in unavailable), unavailable
        assert _attempts_out_of_order(worker) == [], worker.agent
        assert _unexpected_output(worker) == [], f"{worker.agent} wrote something other than event records"
        assert not worker.named("side_task_died"), worker.agent
        assert records[-1]["event"] == "stopped", worker.agent


def test_workers_beyond_the_connection_limit_wait_their_turn_and_finish_the_rest(
    scale: Scale, reliability_report: ReliabilityReport, tmp_path: Path
) -> None:
    began = time.monotonic()
    count = scale.pick(ci=400, full=4000)
    queue = "crowded"
    # 12 slots, 3 of them kept for superusers: 9 for the (non-superuser) workers, who use WORKER_CONNECTIONS
    # each, so two fit and a third gets at most one connection (it needs two to start). The test watches as
    # the superuser, so it is never refused, and only through short connections, which a refused worker's
    # next attempt outlasts.
    with private_cluster({"max_connections": "12", "superuser_reserved_connections": "3"}) as cluster:
        worker_url = cluster.create_database("crowded", owner="clawnsole_worker")
        url = cluster.url("crowded")
        # Slow enough items (2 slots x 100 ms per worker) that the first two cannot drain the queue
        # before the waiting ones have been turned away.
        _enqueue(url, queue, count, sleep_ms=100)
        # The later two run more items at once (same connections): they have the bigger share to do.
        with (
            Fleet(worker_url, tmp_path, queues=(queue,), concurrency=2, lease="5") as first,
            Fleet(worker_url, tmp_path, queues=(queue,), concurrency=6, lease="5") as later,
        ):
            admitted = [first.start(slot, ready=False) for slot in ("first-a", "first-b")]
            # Every connection of the first two is open (the finisher's after its first outcome, the
            # heartbeat's after its first beat) before anyone else asks for one.
            wait_for(
                lambda: (
                    require_alive(admitted)
                    and all(connections_by_worker(url).get(w.agent, 0) >= WORKER_CONNECTIONS for w in admitted)
                ),
                30,
                "the first two workers to open their four connections each",
            )
            turned_away = [later.start(slot, ready=False) for slot in ("waiting-c", "waiting-d")]
            waiting = [w.agent for w in turned_away]
            wait_for(
                lambda: require_alive(turned_away) and all(_refusals(w) for w in turned_away),
                30,
                "the extra workers to log that no connection slot is left",
            )
            claimed_by_waiting_early = _by(url, "claimed", waiting)
            left = count - done_count(url, queue)  # the first two still finish what they hold when stopped
            first_codes = {w.agent: w.terminate() for w in admitted}
            wait_for(
                lambda: require_alive(turned_away) and done_count(url, queue) == count,
                90,
                f"all {count} items done",
            )
            alive = {w.agent: w.alive() for w in turned_away}
            waiting_codes = later.stop()
        done_by_first = _by(url, "done", [w.agent for w in admitted])
        done_by_waiting = _by(url, "done", waiting)
        note = (
            f"{left} items left when the first two were stopped; they did {done_by_first}, "
            f"the two that had waited {done_by_waiting}"
        )
        found = _report(reliability_report, "connection exhaustion", url, queue, 1, began, note)

    assert claimed_by_waiting_early == 0, "a worker beyond the limit claimed while it had no room"
    assert first_codes == {w.agent: 0 for w in admitted}
    _assert_judged_clean(found, count)
    # Nothing here should end a lease early: a re-run would mean a write was refused to a live holder.
    assert found.reruns == [], found.describe()
    assert not [r for w in [*admitted, *turned_away] for r in w.named("lease_lost")]
    assert done_by_waiting > 0, "the waiting workers did nothing: the first two drained the queue too soon"
    assert done_by_first + done_by_waiting == count, note
    assert alive == dict.fromkeys(waiting, True), "a waiting worker gave up"
    assert waiting_codes == dict.fromkeys(waiting, 0)
    for worker in [*admitted, *turned_away]:
        assert _unexpected_output(worker) == [], f"{worker.agent} wrote something other than event records"
        assert not worker.named("side_task_died"), worker.agent
        assert _attempts_out_of_order(worker) == [], worker.agent


def _refusals(worker: WorkerProcess) -> list[dict[str, Any]]:
    """The worker's db_unavailable lines that carry the server's no-slot message."""
    return [
        r
        for r in worker.named("db_unavailable")
        if any(message in str(r.get("error", "")) for message in NO_SLOT_MESSAGES)
    ]


def _by(url: str, event: str, agents: list[str]) -> int:
    """How many `event`s the history has from these agents."""
    query = "SELECT count(*) FROM clawnsole.item_events WHERE event = %(event)s AND agent = ANY(%(agents)s)"
    return int(_scalar(url, query, {"event": event, "agents": agents}))
