"""Each condition is one query over the queue's own tables: checked against a history written with explicit
times, it finds exactly the subjects for which it holds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from clawnsole.alerts import conditions
from clawnsole.alerts.api import definition
from clawnsole.alerts.conditions import Finding
from clawnsole.queue import WorkQueue
from tests.alerts.conftest import History, sql


def found(wq: WorkQueue, history: History, **rule: Any) -> dict[str, Finding]:
    checked = definition("probe", conditions=rule)
    return {f.subject: f for f in wq.run(conditions.find(checked, history.now))}


def test_consecutive_failures_hold_when_the_last_n_attempts_of_a_job_failed(wq: WorkQueue, history: History) -> None:
    for seconds_ago in (300, 200, 100):
        history.attempt("nightly", ok=False, seconds_ago=seconds_ago)
    history.attempt("hourly", ok=False, seconds_ago=300)
    history.attempt("hourly", ok=False, seconds_ago=200)
    history.attempt("hourly", ok=True, seconds_ago=100)
    result = found(wq, history, consecutiveFailures=3)
    assert list(result) == ["nightly"]
    assert result["nightly"].details["failures"] == 3
    assert result["nightly"].details["last_error"] == "boom"
    assert conditions.command(definition("r", conditions={"consecutiveFailures": 3}), result["nightly"]) == (
        "clawnsole dlq list --kind nightly"
    )


def test_a_success_after_the_failures_ends_consecutive_failures(wq: WorkQueue, history: History) -> None:
    for seconds_ago in (400, 300, 200):
        history.attempt("nightly", ok=False, seconds_ago=seconds_ago)
    assert "nightly" in found(wq, history, consecutiveFailures=3)
    history.attempt("nightly", ok=True, seconds_ago=100)
    assert found(wq, history, consecutiveFailures=3) == {}


def test_failure_count_counts_failures_of_matching_jobs_within_the_window(wq: WorkQueue, history: History) -> None:
    history.attempt("questmaster.daily", ok=False, seconds_ago=60)
    history.attempt("github-sync", ok=False, seconds_ago=7200)  # outside the default hour
    history.attempt("other", ok=False, seconds_ago=60)
    result = found(wq, history, jobPattern="^(questmaster|sprintplanner|github-sync)", failureCount=1)
    assert list(result) == ["questmaster.daily"]
    assert list(found(wq, history, jobPattern="^github", failureCount=1, timeWindow="3h")) == ["github-sync"]


def test_timeouts_count_expired_leases_and_timeout_errors_only(wq: WorkQueue, history: History) -> None:
    history.attempt("slow", ok=False, seconds_ago=60, error="timeout: still running after 30s, terminated")
    expired = history.item("ops", "slow", "pending")
    history.event(expired, "lease_expired", 30, {"attempt": 1, "now": "pending"})
    history.attempt("slow", ok=False, seconds_ago=20, error="ValueError")
    result = found(wq, history, timeouts=2)
    assert result["slow"].details["failures"] == 2
    assert found(wq, history, timeouts=3) == {}


def test_dlq_size_counts_failed_items_per_queue(wq: WorkQueue, history: History) -> None:
    first = history.item("ops", status="failed")
    second = history.item("ops", status="failed")
    history.item("ops", status="done")
    history.item("reports", status="failed")
    result = found(wq, history, dlqSize=2)
    assert list(result) == ["ops"]
    assert result["ops"].item_ids == [second, first]
    assert result["ops"].subject_type == "queue"


def test_pending_jobs_counts_the_backlog(wq: WorkQueue, history: History) -> None:
    for _ in range(3):
        history.item("ops")
    history.item("quiet")
    assert {s: f.details["pending"] for s, f in found(wq, history, pendingJobs=3).items()} == {"ops": 3}


def test_oldest_pending_seconds_measures_the_oldest_due_item(wq: WorkQueue, history: History) -> None:
    history.item("ops", run_at=history.at(900))
    history.item("fresh", run_at=history.at(60))
    history.item("future", run_at=history.now + timedelta(hours=1))
    result = found(wq, history, oldestPendingSeconds="10m")
    assert list(result) == ["ops"]
    assert result["ops"].details["oldest_pending_seconds"] == 900


def test_paused_holds_for_queues_paused_longer_than_for_seconds(wq: WorkQueue, history: History) -> None:
    sql(
        history.db_url,
        "INSERT INTO clawnsole.queues (name, state, state_since) VALUES ('ops', 'paused', %s), "
        "('drain', 'draining', %s), ('new', 'paused', %s), ('live', 'active', %s)",
        [history.at(600), history.at(600), history.at(10), history.at(600)],
    )
    assert sorted(found(wq, history, paused=True, forSeconds=300)) == ["drain", "ops"]
    assert sorted(found(wq, history, paused=True)) == ["drain", "new", "ops"]


def test_expired_leases_counts_claims_past_their_lease(wq: WorkQueue, history: History) -> None:
    history.item("ops", status="claimed", lease_expires_at=history.at(30))
    history.item("ops", status="claimed")
    assert found(wq, history, expiredLeases=1)["ops"].details["expired_leases"] == 1
    assert found(wq, history, expiredLeases=2) == {}


def test_no_workers_holds_for_queues_with_due_items_and_no_live_worker(wq: WorkQueue, history: History) -> None:
    for queue in ("served", "stale", "stopped", "orphan"):
        history.item(queue)
    sql(
        history.db_url,
        "INSERT INTO clawnsole.workers (agent, instance, queues, heartbeat_seconds, last_seen_at, stopped_at) "
        "SELECT agent, gen_random_uuid(), queues::text[], 10, seen, stopped FROM (VALUES "
        "('a', '{served,other}', %s::timestamptz, NULL::timestamptz), ('b', '{stale}', %s, NULL), "
        "('c', '{stopped}', %s, %s)) AS w(agent, queues, seen, stopped)",
        [history.at(5), history.at(60), history.at(5), history.at(1)],
    )
    assert sorted(found(wq, history, noWorkers=True)) == ["orphan", "stale", "stopped"]


def test_success_rate_holds_below_the_rate_over_enough_runs(wq: WorkQueue, history: History) -> None:
    for n in range(5):
        history.attempt("flaky", ok=n < 3, seconds_ago=60 + n)  # 3 of 5
        history.attempt("steady", ok=n < 4, seconds_ago=60 + n)  # 4 of 5
    history.attempt("rare", ok=False, seconds_ago=60)
    result = found(wq, history, jobPattern=".*", successRate=0.8, timeWindow=3600, minRuns=5)
    assert list(result) == ["flaky"]
    assert result["flaky"].details["success_rate"] == 0.6
    assert len(result["flaky"].item_ids) == 2


def test_duration_increase_compares_the_window_median_with_the_previous_day(wq: WorkQueue, history: History) -> None:
    for n in range(3):
        history.attempt("report", ok=True, seconds_ago=7200 + n * 60, runtime=10)
        history.attempt("report", ok=True, seconds_ago=60 + n * 60, runtime=25)
        history.attempt("even", ok=True, seconds_ago=7200 + n * 60, runtime=10)
        history.attempt("even", ok=True, seconds_ago=60 + n * 60, runtime=12)
    result = found(wq, history, jobPattern=".*", durationIncrease=2.0, timeWindow=3600, minRuns=3)
    assert list(result) == ["report"]
    assert result["report"].details["median_seconds"] == 25
    assert result["report"].details["baseline_median_seconds"] == 10


def test_concurrency_saturation_compares_claimed_items_with_the_limit(wq: WorkQueue, history: History) -> None:
    sql(history.db_url, "INSERT INTO clawnsole.queues (name, concurrency_limit) VALUES ('ops', 2), ('wide', 10)")
    for queue in ("ops", "ops", "wide", "unlimited"):
        history.item(queue, status="claimed")
    result = found(wq, history, concurrencySaturation=0.9)
    assert list(result) == ["ops"]
    assert result["ops"].details["saturation"] == 1


def _schedule(history: History, name: str, every: int | None) -> int:
    return int(
        sql(
            history.db_url,
            "INSERT INTO clawnsole.schedules (name, queue, title, cron, interval_seconds, next_run_at) "
            "VALUES (%s, 'ops', 't', %s, %s, now()) RETURNING id",
            [name, None if every else "0 * * * *", every],
        )[0][0]
    )


def test_missed_runs_count_the_windows_a_missed_entry_covers(wq: WorkQueue, history: History) -> None:
    minutely = _schedule(history, "minutely", 60)
    hourly = _schedule(history, "hourly", None)
    sql(
        history.db_url,
        "INSERT INTO clawnsole.schedule_runs (schedule_id, fire_at, at, outcome, detail) VALUES "
        "(%s, %s, %s, 'missed', jsonb_build_object('until', %s::timestamptz)), (%s, %s, %s, 'missed', '{}')",
        [minutely, history.at(600), history.at(300), history.at(300), hourly, history.at(7200), history.at(60)],
    )
    assert {s: f.details["missed"] for s, f in found(wq, history, missedRuns=1).items()} == {"minutely": 5, "hourly": 1}
    assert list(found(wq, history, missedRuns=5)) == ["minutely"]


def test_not_finished_within_finds_schedule_items_still_open_after_s_seconds(wq: WorkQueue, history: History) -> None:
    late = _schedule(history, "late", 60)
    fine = _schedule(history, "fine", 60)
    stuck = history.item("ops")
    done = history.item("ops", status="done")
    young = history.item("ops")
    sql(
        history.db_url,
        "INSERT INTO clawnsole.schedule_runs (schedule_id, fire_at, at, outcome, item_id) VALUES "
        "(%s, %s, %s, 'enqueued', %s), (%s, %s, %s, 'enqueued', %s), (%s, %s, %s, 'enqueued', %s)",
        [late, history.at(900), history.at(900), stuck, fine, history.at(900), history.at(900), done,
         fine, history.at(30), history.at(30), young],
    )  # fmt: skip
    result = found(wq, history, notFinishedWithin=600)
    assert list(result) == ["late"]
    assert result["late"].item_ids == [stuck]
