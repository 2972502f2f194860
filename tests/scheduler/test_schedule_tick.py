"""The tick: each window's item exactly once, catch-up after outages, overlap, DST, failures kept apart."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from clawnsole import WorkQueue
from clawnsole.schedules.api import Schedules
from tests.scheduler.conftest import sql

NOW = datetime(2026, 11, 21, 9, 20, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def keys(wq: WorkQueue, queue: str = "q") -> list[str]:
    return sorted(i.dedupe_key or "" for i in wq.list(queue, limit=10_000))


def outage(db_url: str, name: str, next_run_at: datetime) -> None:
    """Simulate a scheduler that was down: the schedule's next run is back in the past."""
    sql(db_url, "UPDATE clawnsole.schedules SET next_run_at = %s WHERE name = %s", [next_run_at, name])


def test_a_due_window_is_enqueued_once_with_its_key_and_the_schedule_advances(
    schedules: Schedules, wq: WorkQueue
) -> None:
    schedules.add("hourly-pr-review", queue="dev-team", title="Review open PRs", cron="0 * * * *",
                  instructions="Review and ship", payload={"repo": "x"}, priority=60, now=NOW)  # fmt: skip
    assert schedules.tick(now=utc(2026, 11, 21, 9, 59, 59)).fired == []
    report = schedules.tick(now=utc(2026, 11, 21, 10, 0, 1))
    [item] = wq.list("dev-team")
    assert report.enqueued == 1 and report.fired[0].enqueued == [(utc(2026, 11, 21, 10), item.id)]
    assert item.dedupe_key == "schedule:hourly-pr-review:2026-11-21T10:00:00Z"
    assert (item.title, item.instructions, item.payload, item.priority) == (
        "Review open PRs", "Review and ship", {"repo": "x"}, 60,
    )  # fmt: skip
    assert [e.agent for e in wq.history(item.id)] == ["schedule:hourly-pr-review"]
    after = schedules.get("hourly-pr-review")
    assert (after.next_run_at, after.last_run_at, after.run_count, after.last_item_id) == (
        utc(2026, 11, 21, 11), utc(2026, 11, 21, 10), 1, item.id,
    )  # fmt: skip
    assert schedules.tick(now=utc(2026, 11, 21, 10, 30)).fired == []
    assert len(wq.list("dev-team")) == 1


def test_a_window_fired_again_finds_its_item_by_key_and_creates_none(
    schedules: Schedules, wq: WorkQueue, db_url: str
) -> None:
    schedules.add("x", queue="q", title="t", cron="0 * * * *", now=NOW)
    schedules.tick(now=utc(2026, 11, 21, 10, 0, 5))
    # As if a scheduler had enqueued the window but its advance were lost: the key still holds.
    outage(db_url, "x", utc(2026, 11, 21, 10))
    report = schedules.tick(now=utc(2026, 11, 21, 10, 0, 9))
    assert report.enqueued == 0 and len(report.fired[0].duplicates) == 1
    assert keys(wq) == ["schedule:x:2026-11-21T10:00:00Z"]
    assert [r.outcome for r in schedules.runs("x")] == ["duplicate", "enqueued"]


def test_catch_up_latest_enqueues_one_item_for_the_most_recent_missed_window(
    schedules: Schedules, wq: WorkQueue, db_url: str
) -> None:
    schedules.add("x", queue="q", title="t", cron="0 * * * *", now=NOW)
    outage(db_url, "x", utc(2026, 11, 21, 3))
    schedules.tick(now=utc(2026, 11, 21, 9, 20))
    assert keys(wq) == ["schedule:x:2026-11-21T09:00:00Z"]
    assert schedules.get("x").next_run_at == utc(2026, 11, 21, 10)
    missed, enqueued = reversed(schedules.runs("x"))
    assert (missed.outcome, missed.fire_at, missed.detail) == (
        "missed", utc(2026, 11, 21, 3), {"until": "2026-11-21T09:00:00Z", "catch_up": "latest"},
    )  # fmt: skip
    assert enqueued.outcome == "enqueued"


def test_catch_up_all_enqueues_every_missed_window_capped(schedules: Schedules, wq: WorkQueue, db_url: str) -> None:
    schedules.add("hourly", queue="q", title="t", cron="0 * * * *", catch_up="all", now=NOW)
    schedules.add("minutely", queue="m", title="t", cron="* * * * *", catch_up="all", now=NOW)
    outage(db_url, "hourly", utc(2026, 11, 21, 3))
    outage(db_url, "minutely", utc(2026, 11, 21, 3))
    schedules.tick(now=utc(2026, 11, 21, 9, 20))
    assert keys(wq) == [f"schedule:hourly:2026-11-21T0{h}:00:00Z" for h in range(3, 10)]
    minutely = keys(wq, "m")
    assert len(minutely) == 100
    assert minutely[0] == "schedule:minutely:2026-11-21T07:41:00Z"
    assert minutely[-1] == "schedule:minutely:2026-11-21T09:20:00Z"


def test_catch_up_none_skips_to_the_next_future_window(schedules: Schedules, wq: WorkQueue, db_url: str) -> None:
    schedules.add("x", queue="q", title="t", cron="0 * * * *", catch_up="none", now=NOW)
    outage(db_url, "x", utc(2026, 11, 21, 3))
    schedules.tick(now=utc(2026, 11, 21, 9, 20))
    assert keys(wq) == []
    assert schedules.get("x").next_run_at == utc(2026, 11, 21, 10)
    # On time (within the grace), `none` fires as usual.
    schedules.tick(now=utc(2026, 11, 21, 10, 0, 30))
    assert keys(wq) == ["schedule:x:2026-11-21T10:00:00Z"]


def test_overlap_skip_waits_while_the_previous_item_is_open(schedules: Schedules, wq: WorkQueue) -> None:
    schedules.add("review", queue="q", title="t", cron="0 * * * *", overlap="skip", now=NOW)
    schedules.tick(now=utc(2026, 11, 21, 10, 0, 1))
    [first] = wq.list("q")
    skipped = schedules.tick(now=utc(2026, 11, 21, 11, 0, 1))  # still pending
    assert skipped.fired[0].skipped == [utc(2026, 11, 21, 11)]
    [claimed] = wq.claim_next("q")
    schedules.tick(now=utc(2026, 11, 21, 12, 0, 1))  # claimed: still open
    wq.done(claimed.id, lease_token=str(claimed.lease_token))
    schedules.tick(now=utc(2026, 11, 21, 13, 0, 1))  # finished: the next window goes ahead
    assert keys(wq) == ["schedule:review:2026-11-21T10:00:00Z", "schedule:review:2026-11-21T13:00:00Z"]
    after = schedules.get("review")
    assert (after.run_count, after.skip_count) == (2, 2)
    assert [r.outcome for r in schedules.runs("review")] == ["enqueued", "skipped", "skipped", "enqueued"]
    assert first.id == claimed.id


def test_overlap_allow_piles_up(schedules: Schedules, wq: WorkQueue) -> None:
    schedules.add("review", queue="q", title="t", cron="0 * * * *", now=NOW)
    for hour in (10, 11, 12):
        schedules.tick(now=utc(2026, 11, 21, hour, 0, 1))
    assert len(keys(wq)) == 3


def test_a_failing_schedule_counts_its_error_and_does_not_stop_the_others(
    schedules: Schedules, wq: WorkQueue, db_url: str
) -> None:
    for name in ("a-first", "b-broken", "c-last"):
        schedules.add(name, queue="q", title="t", cron="0 * * * *", now=NOW)
    # A target queue the enqueue refuses (stored by plain SQL: the API would refuse it up front).
    sql(db_url, "UPDATE clawnsole.schedules SET queue = 'bad queue!' WHERE name = 'b-broken'")
    report = schedules.tick(now=utc(2026, 11, 21, 10, 0, 1))
    assert keys(wq) == ["schedule:a-first:2026-11-21T10:00:00Z", "schedule:c-last:2026-11-21T10:00:00Z"]
    assert report.errors == 1
    broken = schedules.get("b-broken")
    assert broken.error_count == 1 and "is not a queue name" in (broken.last_error or "")
    assert broken.next_run_at == utc(2026, 11, 21, 11)  # advanced: not retried on every tick
    assert [r.outcome for r in schedules.runs("b-broken")] == ["error"]


def test_a_database_error_in_one_schedule_rolls_back_only_that_one(
    schedules: Schedules, wq: WorkQueue, db_url: str
) -> None:
    schedules.add("fine", queue="q", title="fine", cron="0 * * * *", now=NOW)
    schedules.add("explodes", queue="q", title="explode", cron="0 * * * *", now=NOW)
    sql(db_url, "ALTER TABLE clawnsole.items ADD CONSTRAINT no_explosions CHECK (title <> 'explode')")
    report = schedules.tick(now=utc(2026, 11, 21, 10, 0, 1))
    assert keys(wq) == ["schedule:fine:2026-11-21T10:00:00Z"]
    assert report.errors == 1
    broken = schedules.get("explodes")
    assert broken.error_count == 1 and "no_explosions" in (broken.last_error or "")
    assert broken.next_run_at == utc(2026, 11, 21, 11) and broken.run_count == 0


@pytest.mark.parametrize(
    ("zone", "expression", "ticks", "expected"),
    [
        # Daily 09:00 New York across spring-forward (Mar 8) and fall-back (Nov 1).
        ("America/New_York", "0 9 * * *", [utc(2026, 3, 7, 15), utc(2026, 3, 8, 15), utc(2026, 3, 9, 15)],
         ["2026-03-07T14:00:00Z", "2026-03-08T13:00:00Z", "2026-03-09T13:00:00Z"]),
        ("America/New_York", "0 9 * * *", [utc(2026, 10, 31, 15), utc(2026, 11, 1, 15), utc(2026, 11, 2, 15)],
         ["2026-10-31T13:00:00Z", "2026-11-01T14:00:00Z", "2026-11-02T14:00:00Z"]),
        # 02:30 Berlin on spring-forward day fires once (03:30 CEST); 02:30 on fall-back day once (CEST).
        ("Europe/Berlin", "30 2 * * *", [utc(2026, 3, 29, 1), utc(2026, 3, 29, 4), utc(2026, 3, 29, 12)],
         ["2026-03-28T01:30:00Z", "2026-03-29T01:30:00Z"]),
        ("Europe/Berlin", "30 2 * * *",
         [utc(2026, 10, 24, 1), utc(2026, 10, 25, 0, 45), utc(2026, 10, 25, 1, 45), utc(2026, 10, 25, 9)],
         ["2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z"]),
    ],
)  # fmt: skip
def test_daylight_saving_changes_fire_each_local_time_once(
    schedules: Schedules, wq: WorkQueue, zone: str, expression: str, ticks: list[datetime], expected: list[str]
) -> None:
    schedules.add("dst", queue="q", title="t", cron=expression, timezone=zone, now=ticks[0] - timedelta(days=1))
    for now in ticks:
        schedules.tick(now=now)
    assert keys(wq) == [f"schedule:dst:{e}" for e in expected]


def test_four_concurrent_tickers_over_100_due_schedules_enqueue_each_window_once(db_url: str, wq: WorkQueue) -> None:
    schedules = Schedules(wq)
    for n in range(100):
        schedules.add(f"s{n:03}", queue="q", title="t", every="1h", catch_up="all", now=NOW)
    # Each was due five times over (a 4 h 30 min outage).
    sql(db_url, "UPDATE clawnsole.schedules SET next_run_at = %s", [NOW - timedelta(hours=4, minutes=30)])
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def ticker(agent: str) -> None:
        try:
            with psycopg.connect(db_url) as conn:
                mine = Schedules(WorkQueue(conn, agent=agent).open())
                barrier.wait()
                mine.tick(now=NOW + timedelta(seconds=1))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=ticker, args=(f"ticker-{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    rows = sql(db_url, "SELECT count(*), count(DISTINCT dedupe_key) FROM clawnsole.items")
    assert rows == [(500, 500)]
    # The row locks did the work: no ticker even needed the dedupe key to stop a second enqueue.
    outcomes = sql(db_url, "SELECT outcome, count(*) FROM clawnsole.schedule_runs GROUP BY 1")
    assert outcomes == [("enqueued", 500)]
