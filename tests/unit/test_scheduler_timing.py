"""Fire-time math without a database: cron in time zones across DST, intervals, catch-up, dedupe keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clawnsole.errors import InvalidInput
from clawnsole.schedules import fire_times
from clawnsole.schedules.fire_times import Timing, due_windows, next_fire, previous_fire


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def cron(expression: str, zone: str = "UTC") -> Timing:
    return fire_times.timing(expression, zone, None)


def fires(timing: Timing, start: datetime, end: datetime) -> list[datetime]:
    """Every fire time in (start, end], by repeated next_fire."""
    found = []
    current = start
    while (current := next_fire(timing, current)) <= end:
        found.append(current)
    return found


# --- validation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 9 * * * *", "exactly five fields"),
        ("0 9 * * * * 2026", "exactly five fields"),
        ("@hourly", "exactly five fields"),
        ("* * * *", "exactly five fields"),
        ("61 * * * *", "not a valid cron expression"),
        ("0 9 * * funday", "not a valid cron expression"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_cron_expressions_other_than_five_valid_fields_are_rejected(expression: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as raised:
        fire_times.parse_cron(expression)
    assert raised.value.field == "cron"


def test_cron_whitespace_is_normalised() -> None:
    assert fire_times.parse_cron("  0   9 * *  1-5 ") == "0 9 * * 1-5"


def test_unknown_time_zones_are_rejected() -> None:
    for name in ("Mars/Base", "", "../../etc/passwd"):
        with pytest.raises(InvalidInput) as raised:
            fire_times.parse_timezone(name)
        assert raised.value.field == "timezone"


@pytest.mark.parametrize("value", [0, -5, "0s", "-5m", "1.5s", 0.5, "soon", True])
def test_intervals_must_be_whole_positive_seconds(value: object) -> None:
    with pytest.raises(InvalidInput) as raised:
        fire_times.parse_interval(value)  # type: ignore[arg-type]
    assert raised.value.field == "every"


def test_intervals_read_durations() -> None:
    assert [fire_times.parse_interval(v) for v in ("15m", "90", 90, "2h", "1d")] == [900, 90, 90, 7200, 86400]


def test_a_schedule_is_either_cron_or_interval() -> None:
    with pytest.raises(InvalidInput, match="not both"):
        fire_times.timing("0 * * * *", None, "15m")
    with pytest.raises(InvalidInput, match="give a cron expression"):
        fire_times.timing(None, None, None)
    assert fire_times.timing(None, None, "15m") == Timing(None, "UTC", 900)


# --- cron across daylight saving time --------------------------------------------------------------------


def test_daily_nine_am_in_new_york_stays_at_nine_local_across_spring_forward_and_fall_back() -> None:
    nine = cron("0 9 * * *", "America/New_York")
    # 2026-03-08: EST (UTC-5) -> EDT (UTC-4); 2026-11-01: back to EST.
    assert fires(nine, utc(2026, 3, 6), utc(2026, 3, 10)) == [
        utc(2026, 3, 6, 14), utc(2026, 3, 7, 14), utc(2026, 3, 8, 13), utc(2026, 3, 9, 13),
    ]  # fmt: skip
    assert fires(nine, utc(2026, 10, 30), utc(2026, 11, 3)) == [
        utc(2026, 10, 30, 13), utc(2026, 10, 31, 13), utc(2026, 11, 1, 14), utc(2026, 11, 2, 14),
    ]  # fmt: skip


def test_daily_nine_am_in_berlin_stays_at_nine_local_across_both_changes() -> None:
    nine = cron("0 9 * * *", "Europe/Berlin")
    # 2026-03-29: CET (UTC+1) -> CEST (UTC+2); 2026-10-25: back to CET.
    assert fires(nine, utc(2026, 3, 28), utc(2026, 3, 30, 12)) == [
        utc(2026, 3, 28, 8), utc(2026, 3, 29, 7), utc(2026, 3, 30, 7),
    ]  # fmt: skip
    assert fires(nine, utc(2026, 10, 24), utc(2026, 10, 26, 12)) == [
        utc(2026, 10, 24, 7), utc(2026, 10, 25, 8), utc(2026, 10, 26, 8),
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        # 02:30 does not exist that night: it fires once, shifted forward by the gap (03:30 summer time).
        ("America/New_York", (2026, 3, 8), utc(2026, 3, 8, 7, 30)),
        ("Europe/Berlin", (2026, 3, 29), utc(2026, 3, 29, 1, 30)),
    ],
)
def test_a_time_skipped_by_spring_forward_fires_once_shifted_by_the_gap(
    zone: str, day: tuple[int, int, int], expected: datetime
) -> None:
    job = cron("30 2 * * *", zone)
    start = utc(*day) - timedelta(days=1)
    assert fires(job, start, start + timedelta(days=3))[1] == expected
    assert len(fires(job, utc(*day), utc(*day) + timedelta(days=1))) == 1
    assert expected.astimezone(job.zone).strftime("%H:%M") == "03:30"


@pytest.mark.parametrize(
    ("zone", "expression", "day", "expected"),
    [
        # 01:30 happens twice in New York (EDT, then EST): it fires at the first only.
        ("America/New_York", "30 1 * * *", (2026, 11, 1), utc(2026, 11, 1, 5, 30)),
        # 02:30 happens twice in Berlin (CEST, then CET): the first only.
        ("Europe/Berlin", "30 2 * * *", (2026, 10, 25), utc(2026, 10, 25, 0, 30)),
    ],
)
def test_a_time_repeated_by_fall_back_fires_once_at_its_first_occurrence(
    zone: str, expression: str, day: tuple[int, int, int], expected: datetime
) -> None:
    job = cron(expression, zone)
    assert fires(job, utc(*day), utc(*day) + timedelta(days=1)) == [expected]


def test_hourly_in_new_york_fires_each_wall_clock_hour_once_on_change_days() -> None:
    hourly = cron("0 * * * *", "America/New_York")
    zone = hourly.zone
    spring = fires(
        hourly, datetime(2026, 3, 8, tzinfo=zone) - timedelta(seconds=1), datetime(2026, 3, 8, 23, tzinfo=zone)
    )
    fall = fires(
        hourly, datetime(2026, 11, 1, tzinfo=zone) - timedelta(seconds=1), datetime(2026, 11, 1, 23, tzinfo=zone)
    )
    # 02:00 is skipped in spring (it becomes 03:00, one window); 01:00 repeats in autumn (fires once).
    assert len(spring) == 23
    assert len(fall) == 24
    for times in (spring, fall):
        assert times == sorted(set(times))


def _brute_force_fires(expression: str, zone_name: str, first_day: datetime, days: int) -> list[datetime]:
    """The rule in the module docstring, spelled out: every matching wall-clock time (a plain walk over
    naive times), read with fold=0 (a skipped time shifted forward by the gap, a repeat at its first)."""
    from zoneinfo import ZoneInfo

    from croniter import croniter

    zone = ZoneInfo(zone_name)
    found = set()
    walk = croniter(expression, first_day - timedelta(minutes=1))
    while (wall := walk.get_next(datetime)) < first_day + timedelta(days=days):
        found.add(wall.replace(tzinfo=zone).astimezone(UTC))
    return sorted(found)


@pytest.mark.parametrize("expression", ["*/20 * * * *", "15,45 1-3 * * *", "0 * * * *"])
@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("America/New_York", datetime(2026, 3, 8)),
        ("America/New_York", datetime(2026, 11, 1)),
        ("Europe/Berlin", datetime(2026, 3, 29)),
        ("Europe/Berlin", datetime(2026, 10, 25)),
    ],
)
def test_next_and_previous_fire_agree_with_the_rule_spelled_out(expression: str, zone: str, day: datetime) -> None:
    reference = _brute_force_fires(expression, zone, day - timedelta(days=1), 3)
    job = cron(expression, zone)
    instant = reference[0] + timedelta(hours=12)
    while instant < reference[-1] - timedelta(hours=12):
        assert next_fire(job, instant) == min(f for f in reference if f > instant), instant
        assert previous_fire(job, instant) == max(f for f in reference if f <= instant), instant
        instant += timedelta(minutes=11, seconds=30)


# --- intervals and first runs ----------------------------------------------------------------------------


def test_an_interval_schedule_first_fires_one_interval_after_it_is_added() -> None:
    every = fire_times.timing(None, None, "15m")
    assert fire_times.first_run(every, utc(2026, 11, 21, 9, 0, 12) + timedelta(microseconds=345)) == utc(
        2026, 11, 21, 9, 15, 12
    )


def test_interval_fire_times_follow_the_schedule_not_the_run() -> None:
    every = fire_times.timing(None, None, "1h")
    anchor = utc(2026, 11, 21, 9, 0, 12)
    # A tick that runs late (09:40) still puts the next window on the grid (10:00:12).
    assert next_fire(every, utc(2026, 11, 21, 9, 40), anchor=anchor) == utc(2026, 11, 21, 10, 0, 12)
    assert previous_fire(every, utc(2026, 11, 21, 11, 30), anchor=anchor) == utc(2026, 11, 21, 11, 0, 12)
    assert previous_fire(every, utc(2026, 11, 21, 8), anchor=anchor) is None


def test_resuming_an_interval_schedule_keeps_its_phase() -> None:
    every = fire_times.timing(None, None, "1h")
    assert fire_times.resume_run(every, utc(2026, 1, 1, 0, 30), utc(2026, 1, 3, 7, 45)) == utc(2026, 1, 3, 8, 30)


def test_a_cron_schedule_first_fires_at_its_next_match() -> None:
    assert fire_times.first_run(cron("0 * * * *"), utc(2026, 11, 21, 9, 0)) == utc(2026, 11, 21, 10)
    assert fire_times.first_run(cron("0 * * * *"), utc(2026, 11, 21, 9, 0, 1)) == utc(2026, 11, 21, 10)


# --- catch-up --------------------------------------------------------------------------------------------


HOURLY = cron("0 * * * *")
DOWN_SINCE = utc(2026, 11, 21, 3)  # next_run_at when the scheduler stopped
BACK_AT = utc(2026, 11, 21, 9, 20)  # windows 03:00 … 09:00 were missed


def test_on_time_every_policy_fires_the_one_due_window() -> None:
    for policy in fire_times.CATCH_UP_POLICIES:
        plan = due_windows(HOURLY, utc(2026, 11, 21, 9), utc(2026, 11, 21, 9, 0, 2), policy)
        assert plan.fire == [utc(2026, 11, 21, 9)]
        assert plan.missed_from is None
        assert plan.next_run_at == utc(2026, 11, 21, 10)


def test_catch_up_latest_fires_only_the_most_recent_missed_window() -> None:
    plan = due_windows(HOURLY, DOWN_SINCE, BACK_AT, "latest")
    assert plan.fire == [utc(2026, 11, 21, 9)]
    assert (plan.missed_from, plan.missed_until) == (DOWN_SINCE, utc(2026, 11, 21, 9))
    assert plan.next_run_at == utc(2026, 11, 21, 10)


def test_catch_up_all_fires_every_missed_window() -> None:
    plan = due_windows(HOURLY, DOWN_SINCE, BACK_AT, "all")
    assert plan.fire == [utc(2026, 11, 21, h) for h in range(3, 10)]
    assert plan.missed_from is None


def test_catch_up_all_is_capped_at_the_most_recent_windows() -> None:
    every_minute = cron("* * * * *")
    plan = due_windows(every_minute, utc(2026, 11, 21, 0), utc(2026, 11, 21, 5), "all")
    assert len(plan.fire) == fire_times.CATCH_UP_LIMIT
    assert plan.fire[-1] == utc(2026, 11, 21, 5)
    assert plan.fire[0] == utc(2026, 11, 21, 5) - timedelta(minutes=fire_times.CATCH_UP_LIMIT - 1)
    assert plan.missed_from == utc(2026, 11, 21, 0)


def test_catch_up_none_skips_to_the_next_future_window() -> None:
    plan = due_windows(HOURLY, DOWN_SINCE, BACK_AT, "none")
    assert plan.fire == []
    assert plan.missed_from == DOWN_SINCE
    assert plan.next_run_at == utc(2026, 11, 21, 10)


def test_catch_up_none_still_fires_a_window_that_is_only_a_little_late() -> None:
    plan = due_windows(HOURLY, DOWN_SINCE, utc(2026, 11, 21, 9, 3), "none")
    assert plan.fire == [utc(2026, 11, 21, 9)]


def test_catch_up_on_an_interval_schedule_uses_its_grid() -> None:
    every = fire_times.timing(None, None, "15m")
    plan = due_windows(every, utc(2026, 11, 21, 8, 5), utc(2026, 11, 21, 9, 0), "all")
    assert plan.fire == [
        utc(2026, 11, 21, 8, 5),
        utc(2026, 11, 21, 8, 20),
        utc(2026, 11, 21, 8, 35),
        utc(2026, 11, 21, 8, 50),
    ]
    assert plan.next_run_at == utc(2026, 11, 21, 9, 5)


def test_a_schedule_not_yet_due_fires_nothing() -> None:
    plan = due_windows(HOURLY, utc(2026, 11, 21, 10), utc(2026, 11, 21, 9, 59), "all")
    assert plan.fire == [] and plan.next_run_at == utc(2026, 11, 21, 10)


# --- keys and descriptions -------------------------------------------------------------------------------


def test_the_dedupe_key_names_the_schedule_and_the_window_in_utc() -> None:
    berlin_ten = datetime(2026, 11, 21, 10, tzinfo=fire_times.parse_timezone("Europe/Berlin"))
    assert fire_times.dedupe_key("hourly-pr-review", berlin_ten) == "schedule:hourly-pr-review:2026-11-21T09:00:00Z"
    assert fire_times.run_now_key("x", utc(2026, 1, 2, 3, 4, 5)) == "schedule:x:run-now:2026-01-02T03:04:05Z"


@pytest.mark.parametrize(
    ("timing", "text"),
    [
        (cron("* * * * *"), "Every minute"),
        (cron("0 * * * *"), "Every hour"),
        (cron("0 9 * * *"), "At 09:00"),
        (cron("30 2 * * 1-5"), "At 02:30, Monday through Friday"),
        (cron("0 9 * * 1"), "At 09:00, only on Monday"),
        (cron("0 0 1 * *"), "At 00:00, on day 1 of the month"),
        (Timing(None, "UTC", 900), "Every 15 minutes"),
        (Timing(None, "UTC", 3600), "Every hour"),
        (Timing(None, "UTC", 90), "Every 90 seconds"),
    ],
)
def test_timings_are_described_for_people(timing: Timing, text: str) -> None:
    assert fire_times.describe(timing) == text


def test_intervals_format_back_to_what_they_parse_from() -> None:
    for seconds in (1, 90, 900, 3600, 5400, 86400, 172800):
        assert fire_times.parse_interval(fire_times.format_interval(seconds)) == seconds
