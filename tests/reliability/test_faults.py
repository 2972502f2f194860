"""Fault scenarios with real worker processes, judged from the event history: a fault-free load, a storm of
kill -9s, terminated database backends, and a snapshot held open across a drain.

Counts are small in CI mode and full with `--reliability-scale=full` / `--soak N` (see conftest.py); every
scenario adds a row to the reliability table before it asserts, so a failing run still reports.
"""

from __future__ import annotations

import random
import time
from contextlib import nullcontext
from pathlib import Path

import pytest

from clawnsole import WorkQueue
from tests.conftest import SCHEMA
from tests.reliability.conftest import ReliabilityReport, Scale
from tests.reliability.harness import (
    Analysis,
    Fleet,
    Overlap,
    analyse,
    connect,
    dead_tuples,
    enqueue_load,
    held_snapshot,
    listening_agents,
    terminate_worker_backends,
    wait_finished,
)
from tests.worker.helpers import wait_for

pytestmark = pytest.mark.reliability

KILLED_HOLDER = "lease expired after its holder was killed"


def _add(
    report: ReliabilityReport, scenario: str, analysis: Analysis, faults: int, seconds: float, note: str = ""
) -> None:
    report.add(
        scenario,
        items=analysis.items,
        faults=faults,
        lost=len(analysis.lost),
        duplicated=len(analysis.duplicated),
        reruns=len(analysis.rerun_items),
        seconds=seconds,
        note=note or analysis.describe(),
    )


def _assert_no_worker_died_inside(fleet: Fleet) -> None:
    died = [(w.agent, r) for w in fleet.incarnations for r in w.named("side_task_died")]
    assert not died, f"side tasks died: {died}"


def test_a_fault_free_load_runs_every_item_exactly_once(
    db_url: str, wq: WorkQueue, tmp_path: Path, scale: Scale, reliability_report: ReliabilityReport
) -> None:
    count = scale.pick(ci=2_000, full=20_000)
    with Fleet(db_url, tmp_path, concurrency=16, lease="2") as fleet:
        fleet.start_many(4)
        began = time.monotonic()
        enqueue_load(wq, count, seed=1)
        wait_finished(db_url, count, timeout=max(120, count / 20), while_waiting=fleet.assert_running)
        seconds = time.monotonic() - began
        codes = fleet.stop()
        _assert_no_worker_died_inside(fleet)
    analysis = analyse(db_url)
    _add(
        reliability_report,
        "load, no faults",
        analysis,
        0,
        seconds,
        f"{count / seconds:.0f} items/s; " + analysis.describe(),
    )

    assert set(codes.values()) == {0}, codes
    assert analysis.statuses == {"done": count}, analysis.describe()
    assert (analysis.lost, analysis.duplicated, analysis.overlaps, analysis.foreign_dones) == ([], [], [], [])
    # Without faults nothing may run twice: a re-run here is a lease lost by a live, healthy worker.
    assert analysis.rerun_items == [], (
        f"{len(analysis.rerun_items)} items re-ran: {analysis.describe()}; the first: "
        f"{[(r, fleet.story(r.item_id)) for r in analysis.reruns[:2]]}"
    )
    assert set(analysis.claims.values()) == {1} and len(analysis.claims) == count
    assert set(analysis.dones.values()) == {1} and len(analysis.dones) == count


def test_a_sigkill_storm_finishes_every_item_once_and_only_killed_holders_lose_items(
    db_url: str, wq: WorkQueue, tmp_path: Path, scale: Scale, reliability_report: ReliabilityReport
) -> None:
    count = scale.pick(ci=400, full=2_000)
    rng = random.Random(2)
    # Slower items and few slots, so the storm lasts many kills and every kill catches items in flight;
    # attempts to spare, because an item may be caught by several kills in a row.
    enqueue_load(wq, count, seed=2, sleep_ms=(100, 300), cpu_share=0.05, progress_share=0.2, max_attempts=1_000)
    kills = 0
    with Fleet(db_url, tmp_path, concurrency=4, lease="2") as fleet:
        fleet.start_many(4)
        next_kill = time.monotonic() + 0.5

        def storm() -> None:
            nonlocal kills, next_kill
            fleet.assert_running()
            if time.monotonic() >= next_kill:
                fleet.restart(rng.choice(sorted(fleet.current)))
                kills += 1
                next_kill = time.monotonic() + rng.uniform(0.3, 0.7)

        began = time.monotonic()
        wait_finished(db_url, count, timeout=max(120, count / 4), while_waiting=storm)
        seconds = time.monotonic() - began
        codes = fleet.stop()
        killed = fleet.killed_agents
    analysis = analyse(db_url, killed=killed)
    _add(reliability_report, "SIGKILL storm", analysis, kills, seconds)

    assert set(codes.values()) == {0}, codes
    assert analysis.statuses == {"done": count}, analysis.describe()
    assert (analysis.lost, analysis.duplicated, analysis.overlaps, analysis.foreign_dones) == ([], [], [], [])
    assert kills >= 3 and analysis.reruns, f"the storm hit nothing in flight ({kills} kills): {analysis.describe()}"
    # Each item that ran again went back to the queue because its holder was killed, and for no other reason.
    unexpected = [r for r in analysis.reruns if r.reason != KILLED_HOLDER or r.previous not in killed]
    assert unexpected == [], [(r, fleet.story(r.item_id)) for r in unexpected[:3]]


def test_terminated_backends_are_reconnected_and_notifications_resume(
    db_url: str, wq: WorkQueue, tmp_path: Path, scale: Scale, reliability_report: ReliabilityReport
) -> None:
    count = scale.pick(ci=800, full=5_000)
    rng = random.Random(3)
    terminated = 0
    # --poll 60: only a notification can bring the last item in promptly. Items of 20-60 ms on few slots
    # keep the drain going for seconds, long enough for a few dozen terminations.
    with Fleet(db_url, tmp_path, concurrency=4, lease="2", poll="60") as fleet:
        fleet.start_many(3)
        next_kill = time.monotonic() + rng.uniform(0.05, 0.25)

        def kill_a_backend() -> None:
            nonlocal terminated, next_kill
            fleet.assert_running()
            if time.monotonic() >= next_kill:
                terminated += terminate_worker_backends(db_url, rng=rng)
                next_kill = time.monotonic() + rng.uniform(0.05, 0.25)

        began = time.monotonic()
        enqueue_load(wq, count, seed=3, sleep_ms=(20, 60))
        wait_finished(db_url, count, timeout=max(120, count / 10), while_waiting=kill_a_backend)
        # Then every worker connection at once, the listeners among them, before the last enqueue.
        terminated += terminate_worker_backends(db_url, one=False)
        last = wq.enqueue("load", "after the kills").item.id
        wait_finished(db_url, count + 1, timeout=30, while_waiting=fleet.assert_running)
        seconds = time.monotonic() - began
        alive = [w.agent for w in fleet.alive()]
        # Every listener is back, not only the one that happened to catch the last notification.
        wait_for(lambda: listening_agents(db_url) >= set(alive), 15, "every worker to LISTEN again")
        codes = fleet.stop()
        _assert_no_worker_died_inside(fleet)
    with connect(db_url) as conn:
        (latency,) = conn.execute(
            f"""SELECT extract(epoch FROM max(at) FILTER (WHERE event = 'claimed')
                                         - min(at) FILTER (WHERE event = 'enqueued'))::float8
                  FROM {SCHEMA}.item_events WHERE item_id = %s""",
            [last],
        ).fetchone() or (None,)
    analysis = analyse(db_url)
    _add(
        reliability_report,
        "backend terminations",
        analysis,
        terminated,
        seconds,
        f"last item claimed {latency:.2f}s after its enqueue (poll 60 s); " + analysis.describe(),
    )

    assert terminated >= 5, f"only {terminated} backends were terminated"
    assert len(alive) == 3 and set(codes.values()) == {0}, (alive, codes)
    assert analysis.statuses == {"done": count + 1}, analysis.describe()
    assert (analysis.lost, analysis.duplicated, analysis.overlaps, analysis.foreign_dones) == ([], [], [], [])
    assert latency is not None and latency < 5, f"the item after the kills waited {latency}s: notifications lost"


def _drain(
    db_url: str, wq: WorkQueue, log_dir: Path, queue: str, count: int, hold: float | None
) -> tuple[float, float, tuple[int, int]]:
    """Drain `count` items of `queue` with 4 workers, a snapshot held for the first `hold` seconds (None:
    no snapshot); the drain's seconds, how long the snapshot was held, and the dead tuples of the tables
    (items + item_events) before and after a VACUUM run while the snapshot is still held."""
    log_dir.mkdir()
    with Fleet(db_url, log_dir, queues=(queue,), concurrency=16, lease="2") as fleet:
        fleet.start_many(4)
        with held_snapshot(db_url) if hold is not None else nullcontext() as snapshot:
            began = time.monotonic()

            def release_when_due() -> None:
                fleet.assert_running()
                if snapshot is not None and hold is not None and time.monotonic() - snapshot.taken >= hold:
                    snapshot.release()

            enqueue_load(wq, count, queue=queue, seed=4)
            wait_finished(db_url, count, timeout=max(120, count / 20), queue=queue, while_waiting=release_when_due)
            seconds = time.monotonic() - began
            # Workers flush their table statistics when they exit, so count the dead tuples after the stop;
            # then what VACUUM cannot remove while the snapshot (if still held) may see those row versions.
            assert set(fleet.stop().values()) == {0}
            before = sum(dead_tuples(db_url).values())
            with connect(db_url) as conn:
                conn.execute(f"VACUUM {SCHEMA}.items, {SCHEMA}.item_events")
            dead = (before, sum(dead_tuples(db_url).values()))
            held = 0.0
            if snapshot is not None:
                snapshot.release()
                held = snapshot.held or 0.0
    return seconds, held, dead


def test_a_held_snapshot_slows_the_drain_but_claims_stay_correct(
    db_url: str, wq: WorkQueue, tmp_path: Path, scale: Scale, reliability_report: ReliabilityReport
) -> None:
    count = scale.pick(ci=2_000, full=20_000)
    hold = scale.seconds(ci=5, full=60)
    free_seconds, _, free_dead = _drain(db_url, wq, tmp_path / "free", "free", count, None)
    free = analyse(db_url, queue="free")
    held_seconds, held_for, held_dead = _drain(db_url, wq, tmp_path / "held", "held", count, hold)
    held = analyse(db_url, queue="held")
    free_rate, held_rate = count / free_seconds, count / held_seconds
    _add(
        reliability_report,
        "drain, no snapshot",
        free,
        0,
        free_seconds,
        f"dead tuples {free_dead[0]}, {free_dead[1]} left after VACUUM; " + free.describe(),
    )
    _add(
        reliability_report,
        "drain, held snapshot",
        held,
        1,
        held_seconds,
        f"{held_rate:.0f} items/s with the snapshot held {held_for:.1f}s"
        f"{' (the whole drain)' if held_for >= held_seconds else ''} vs {free_rate:.0f} items/s without "
        f"(ratio {held_rate / free_rate:.2f}); dead tuples {held_dead[0]}, {held_dead[1]} left after VACUUM "
        f"(without: {free_dead[0]}, {free_dead[1]} left); " + held.describe(),
    )

    for run in (free, held):
        assert run.statuses == {"done": count}, run.describe()
        assert (run.lost, run.duplicated, run.overlaps, run.foreign_dones) == ([], [], [], [])
        assert run.rerun_items == [], f"{len(run.rerun_items)} items re-ran: {run.describe()}"


def test_the_judge_finds_overlapping_holders_duplicated_dones_and_lost_items(db_url: str, wq: WorkQueue) -> None:
    # The scenarios above are only as good as `analyse`: feed it a history with every defect it looks for.
    clean, overlapped, doubled, lost, expired = enqueue_load(wq, 5, sleep_ms=(0, 0))
    history = [
        (clean, "claimed", "a.0"),
        (clean, "done", "a.0"),
        (overlapped, "claimed", "a.0"),
        (overlapped, "claimed", "b.0"),
        (overlapped, "done", "b.0"),
        (doubled, "claimed", "a.0"),
        (doubled, "done", "a.0"),
        (doubled, "done", "b.0"),
        (lost, "claimed", "a.0"),
        (expired, "claimed", "a.0"),
        (expired, "lease_expired", None),
        (expired, "claimed", "b.0"),
        (expired, "done", "b.0"),
    ]
    with connect(db_url) as conn, conn.cursor() as cur:
        cur.executemany(f"INSERT INTO {SCHEMA}.item_events (item_id, event, agent) VALUES (%s, %s, %s)", history)
        cur.execute(
            f"UPDATE {SCHEMA}.items SET status = 'done' WHERE id = ANY(%s)", [[clean, overlapped, doubled, expired]]
        )
    analysis = analyse(db_url, killed=frozenset({"a.0"}))
    assert analysis.lost == [lost]
    assert analysis.duplicated == [doubled]
    assert analysis.overlaps == [Overlap(overlapped, "a.0", "b.0")]
    assert analysis.foreign_dones == [(doubled, None, "b.0")]
    assert analysis.rerun_items == sorted([overlapped, expired])
    assert analysis.reasons() == {"claimed again while held (overlapping holders)": 1, KILLED_HOLDER: 1}
