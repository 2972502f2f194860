"""Pure fire-time functions for schedules: no I/O, no clock — every function that needs the time takes `now`.

A schedule's timing is either a five-field cron expression read on the wall clock of an IANA time zone, or
a fixed interval. Fire times are UTC instants; the dedupe key of a window is built from its fire time, so
any number of schedulers computing the same window enqueue the same key.

The daylight-saving rule (cron schedules): the fields are matched against the local wall clock, and each
matching wall-clock time fires once.
- A time the clock skips (spring forward) fires at the instant it would have had without the change,
  i.e. shifted forward by the gap: 02:30 in New York on the spring-forward day fires at 03:30 EDT. If that
  instant is also another matching time (an hourly job's 02:00 and 03:00), it is one window, fired once.
- A time the clock shows twice (fall back) fires once, at its first occurrence: 01:30 in New York on the
  fall-back day fires at 01:30 EDT, not again at 01:30 EST.
This is how `zoneinfo` reads a wall-clock time with `fold=0`, so the rule is the standard library's.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from clawnsole import validate
from clawnsole.errors import InvalidInput

CATCH_UP_POLICIES = ("latest", "all", "none")
OVERLAP_POLICIES = ("allow", "skip")
SCHEDULE_STATUSES = ("active", "paused")

# `catch_up: all` enqueues at most this many missed windows (the most recent ones) after an outage.
CATCH_UP_LIMIT = 100
# `catch_up: none` still fires a window this late: a scheduler that woke a little after the due time (a
# busy host, a cron tick at :00:40) is on time, not an outage.
MISFIRE_GRACE = timedelta(minutes=5)

# Used with `fullmatch`: `$` would also match before a trailing newline and let "name\n" through.
SCHEDULE_NAME = re.compile(r"[A-Za-z0-9._\-]{1,128}")
_MAX_INTERVAL_SECONDS = 10 * 365 * 86400
# Longer than any daylight-saving gap in tzdata (usually 1 h, 2 h at most), so a search around a
# transition always sees both sides of it.
_TRANSITION_REACH = timedelta(hours=3)
_CRON_FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week")


@dataclass(frozen=True)
class Timing:
    """When a schedule fires: a cron expression in a time zone, or every `interval_seconds`."""

    cron: str | None
    timezone: str
    interval_seconds: int | None

    @property
    def zone(self) -> ZoneInfo:
        return parse_timezone(self.timezone)


# --- validation ------------------------------------------------------------------------------------------


def schedule_name(value: str) -> str:
    """A schedule name: 1-128 letters, digits, '.', '_' or '-' (it becomes part of every dedupe key)."""
    if not isinstance(value, str) or not SCHEDULE_NAME.fullmatch(value):
        raise InvalidInput("name", f"{value!r} is not a schedule name (1-128 of letters, digits, '.', '_', '-')")
    return value


def parse_cron(expression: str) -> str:
    """A five-field cron expression, normalised to single spaces; it must fire at least once."""
    from croniter import CroniterBadCronError, CroniterBadDateError, croniter

    if not isinstance(expression, str):
        raise InvalidInput("cron", "must be text such as '0 * * * *'")
    fields = expression.split()
    if len(fields) != 5:
        # croniter also takes seconds and years (six or seven fields) and @-macros; we keep to the classic
        # five so an expression means the same here as in crontab(5).
        raise InvalidInput(
            "cron",
            f"{expression!r} must have exactly five fields ({' '.join(_CRON_FIELDS)}), not {len(fields)}",
        )
    normalised = " ".join(fields)
    try:
        croniter(normalised, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise InvalidInput("cron", f"{normalised!r} never fires") from None
    except (CroniterBadCronError, ValueError, KeyError) as error:
        raise InvalidInput("cron", f"{normalised!r} is not a valid cron expression ({error})") from None
    return normalised


@cache
def parse_timezone(name: str) -> ZoneInfo:
    """The IANA time zone of that name (e.g. America/New_York, UTC)."""
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("timezone", "must be an IANA time zone name such as Europe/Berlin or UTC")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput("timezone", f"{name!r} is not a known IANA time zone (e.g. Europe/Berlin, UTC)") from None


def parse_interval(value: float | int | str) -> int:
    """A whole number of seconds, at least one, from 90, '90s', '15m', '2h', '1d'."""
    if isinstance(value, bool):
        raise InvalidInput("every", "must be a duration such as 15m")
    seconds = validate.duration(value, "every")
    if seconds < 1 or seconds != int(seconds):
        # Fire times (and so dedupe keys) have a resolution of one second.
        raise InvalidInput("every", "must be a whole number of seconds, at least 1")
    if seconds > _MAX_INTERVAL_SECONDS:
        raise InvalidInput("every", "must be at most ten years")
    return int(seconds)


def parse_choice(value: str, field: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise InvalidInput(field, f"{value!r} is not one of {', '.join(choices)}")
    return value


def timing(cron: str | None, timezone: str | None, every: float | int | str | None) -> Timing:
    """A checked Timing from the user's options: exactly one of a cron expression or an interval."""
    if cron is not None and every is not None:
        raise InvalidInput("schedule", "give either a cron expression or an interval (every), not both")
    if cron is None and every is None:
        raise InvalidInput("schedule", "give a cron expression (e.g. '0 * * * *') or an interval (e.g. every 15m)")
    zone_name = "UTC" if timezone is None else timezone
    parse_timezone(zone_name)
    if cron is not None:
        return Timing(parse_cron(cron), zone_name, None)
    assert every is not None
    return Timing(None, zone_name, parse_interval(every))


# --- fire times ------------------------------------------------------------------------------------------


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    """The naive local wall-clock time an instant shows in the zone."""
    return instant.astimezone(zone).replace(tzinfo=None)


def _instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant a wall-clock time names, by the daylight-saving rule in the module docstring."""
    return wall.replace(tzinfo=zone).astimezone(UTC)


def _near_transition(wall: datetime, zone: ZoneInfo) -> bool:
    before = (wall - _TRANSITION_REACH).replace(tzinfo=zone).utcoffset()
    after = (wall + _TRANSITION_REACH).replace(tzinfo=zone).utcoffset()
    return before != after


def _cron_next(expression: str, zone: ZoneInfo, after: datetime) -> datetime:
    from croniter import croniter

    # croniter walks naive wall-clock times, so its own (historically buggy) DST handling never runs.
    start = _wall(after, zone)
    if _near_transition(start, zone):
        # Around a change the wall clock is not monotonic in real time: start early, skip what is past.
        start -= _TRANSITION_REACH
    walk = croniter(expression, start)
    while True:
        wall = walk.get_next(datetime)
        best = _instant(wall, zone)
        if best > after:  # false only for the repeat of a fall-back hour, whose times already fired
            break
    if _near_transition(wall, zone):
        # A skipped time maps forward by the gap, past real times just after it: look at those too.
        horizon = wall + _TRANSITION_REACH
        while (later := walk.get_next(datetime)) < horizon:
            candidate = _instant(later, zone)
            if after < candidate < best:
                best = candidate
    return best


def _cron_previous(expression: str, zone: ZoneInfo, at: datetime) -> datetime:
    from croniter import croniter

    # Start one second past `at` so a fire time equal to `at` counts (get_prev excludes its start).
    start = _wall(at, zone) + timedelta(seconds=1)
    if _near_transition(start, zone):
        # In the repeat of a fall-back hour, earlier instants show later wall-clock times: start late.
        start += _TRANSITION_REACH
    walk = croniter(expression, start)
    while True:
        wall = walk.get_prev(datetime)
        best = _instant(wall, zone)
        if best <= at:
            break
    if _near_transition(wall, zone):
        horizon = wall - _TRANSITION_REACH
        while (earlier := walk.get_prev(datetime)) > horizon:
            candidate = _instant(earlier, zone)
            if best < candidate <= at:
                best = candidate
    return best


def next_fire(timing: Timing, after: datetime, *, anchor: datetime | None = None) -> datetime:
    """The first fire time strictly after `after`. Interval schedules fire at anchor + k * interval."""
    after = after.astimezone(UTC)
    if timing.cron is not None:
        return _cron_next(timing.cron, timing.zone, after)
    step = timedelta(seconds=_interval(timing))
    if anchor is None:
        return after + step
    anchor = anchor.astimezone(UTC)
    if after < anchor:
        return anchor
    return anchor + ((after - anchor) // step + 1) * step


def previous_fire(timing: Timing, at: datetime, *, anchor: datetime | None = None) -> datetime | None:
    """The last fire time at or before `at` (None for an interval schedule whose anchor is later)."""
    at = at.astimezone(UTC)
    if timing.cron is not None:
        return _cron_previous(timing.cron, timing.zone, at)
    if anchor is None:
        raise ValueError("an interval schedule needs its anchor to find a previous fire time")
    anchor = anchor.astimezone(UTC)
    if at < anchor:
        return None
    step = timedelta(seconds=_interval(timing))
    return anchor + ((at - anchor) // step) * step


def upcoming(timing: Timing, after: datetime, count: int, *, anchor: datetime | None = None) -> list[datetime]:
    """The next `count` fire times after `after` (a preview for people)."""
    times: list[datetime] = []
    current = after
    for _ in range(count):
        current = next_fire(timing, current, anchor=anchor)
        times.append(current)
    return times


def first_run(timing: Timing, now: datetime) -> datetime:
    """The first fire time of a schedule created (or re-timed) at `now`.

    A cron schedule fires at its next matching time. An interval schedule first fires one interval after
    it is added (from `now` truncated to the second), then every interval after each scheduled time.
    """
    if timing.cron is not None:
        return next_fire(timing, now)
    return now.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=_interval(timing))


def resume_run(timing: Timing, next_run_at: datetime, now: datetime) -> datetime:
    """The next fire time of a schedule resumed at `now`: windows missed while paused are not caught up.

    An interval schedule keeps its phase (the same grid as before the pause).
    """
    return next_fire(timing, now, anchor=next_run_at)


def _interval(timing: Timing) -> int:
    if timing.interval_seconds is None:
        raise ValueError("not an interval schedule")
    return timing.interval_seconds


@dataclass(frozen=True)
class Windows:
    """What a tick does for one due schedule: the windows to enqueue, those missed, the next due time."""

    fire: list[datetime]
    # The first missed window and the first window after the missed run (None: nothing missed).
    missed_from: datetime | None
    missed_until: datetime | None
    next_run_at: datetime


def due_windows(
    timing: Timing,
    next_run_at: datetime,
    now: datetime,
    catch_up: str,
    *,
    limit: int = CATCH_UP_LIMIT,
    grace: timedelta = MISFIRE_GRACE,
) -> Windows:
    """The windows of a schedule due at `next_run_at` that a tick at `now` enqueues, by catch-up policy.

    - `latest`: one item, for the most recent due window (on time, that is the only one).
    - `all`: every due window, the most recent `limit` of them when more were missed.
    - `none`: the most recent window only if it is at most `grace` late; otherwise nothing.
    """
    anchor = next_run_at.astimezone(UTC)
    now = now.astimezone(UTC)
    if anchor > now:
        return Windows([], None, None, anchor)
    latest = max(previous_fire(timing, now, anchor=anchor) or anchor, anchor)
    following = next_fire(timing, now, anchor=anchor)
    fire: list[datetime]
    if catch_up == "latest":
        fire = [latest]
    elif catch_up == "none":
        fire = [latest] if now - latest <= grace else []
    elif catch_up == "all":
        fire = [latest]
        while len(fire) < limit:
            earlier = previous_fire(timing, fire[-1] - timedelta(microseconds=1), anchor=anchor)
            if earlier is None or earlier < anchor:
                break
            fire.append(earlier)
        fire.reverse()
    else:
        raise ValueError(f"unknown catch-up policy {catch_up!r}")
    if not fire:
        return Windows([], anchor, following, following)
    if fire[0] > anchor:
        return Windows(fire, anchor, fire[0], following)
    return Windows(fire, None, None, following)


# --- keys and descriptions -------------------------------------------------------------------------------


def utc_iso(instant: datetime) -> str:
    """UTC, ISO 8601, whole seconds, `Z`: 2026-11-21T09:00:00Z."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dedupe_key(name: str, fire_at: datetime) -> str:
    """The dedupe key of one window: `schedule:<name>:<fire time in UTC>`."""
    return f"schedule:{name}:{utc_iso(fire_at)}"


def run_now_key(name: str, now: datetime) -> str:
    """The dedupe key of a manual run: never a window's key; the same command twice in one second is one item."""
    return f"schedule:{name}:run-now:{utc_iso(now)}"


_UNITS = ((86400, "day"), (3600, "hour"), (60, "minute"), (1, "second"))


def format_interval(seconds: int) -> str:
    """Compact text for an interval that `parse_interval` reads back: 90s, 15m, 2h, 1d."""
    for size, unit in _UNITS:
        if seconds % size == 0:
            return f"{seconds // size}{unit[0]}"
    return f"{seconds}s"


def describe(timing: Timing) -> str:
    """A human description: 'Every 15 minutes', 'At 09:00, Monday through Friday'."""
    if timing.interval_seconds is not None:
        for size, unit in _UNITS:
            if timing.interval_seconds % size == 0:
                count = timing.interval_seconds // size
                return f"Every {unit}" if count == 1 else f"Every {count} {unit}s"
    assert timing.cron is not None
    try:
        from cron_descriptor import Options, get_description  # type: ignore[import-untyped]

        options = Options(locale_code="en_US", use_24hour_time_format=True)
        return str(get_description(timing.cron, options))
    except Exception:
        # The description is for people only; an expression the describer cannot read still runs.
        return timing.cron
