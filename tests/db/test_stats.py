"""Stats from the event history against real PostgreSQL: a fixture of known durations (events inserted with
explicit times), step breakdowns, the fenced step record, and the status extras."""

from __future__ import annotations

import math
from typing import Any

import psycopg
import pytest

from clawnsole import WorkQueue
from clawnsole.errors import InvalidInput
from clawnsole.stats.api import Stats


def percentile_cont(values: list[float], fraction: float) -> float:
    """PostgreSQL's percentile_cont: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# Each item: (queue, kind, [(event, seconds after the start, detail)]). Started 30 minutes ago.
HISTORY: list[tuple[str, str | None, list[tuple[str, float, dict[str, Any] | None]]]] = [
    ("ops", "fetch", [("enqueued", 0, None), ("claimed", 10, {"attempt": 1}), ("done", 12, None)]),
    ("ops", "fetch", [("enqueued", 0, None), ("claimed", 20, {"attempt": 1}), ("done", 24, None)]),
    (
        "ops",
        "fetch",
        [
            ("enqueued", 0, None),
            ("claimed", 30, {"attempt": 1}),
            ("retry_scheduled", 31, {"attempt": 1}),
            ("claimed", 40, {"attempt": 2}),
            ("failed", 46, {"attempt": 2}),
        ],
    ),
    (
        "ops",
        "fetch",
        [
            ("enqueued", 0, None),
            ("claimed", 5, {"attempt": 1}),
            ("lease_expired", 400, {"now": "pending"}),
            ("claimed", 401, {"attempt": 2}),
            ("done", 409, None),
        ],
    ),
    (
        "ops",
        "fetch",
        [
            ("enqueued", 0, None),
            ("claimed", 3, {"attempt": 1}),
            ("lease_expired", 300, {"now": "failed"}),
        ],
    ),
    ("ops", None, [("enqueued", 0, None), ("claimed", 1, {"attempt": 1}), ("done", 2, None)]),
    ("dev", "review", [("enqueued", 0, None), ("claimed", 7, {"attempt": 1}), ("done", 107, None)]),
]
RUNS = [2.0, 4.0, 1.0, 6.0, 8.0]  # ops/fetch: claim -> done, retry, failed of the same attempt
WAITS = [10.0, 20.0, 30.0, 5.0, 3.0]  # ops/fetch: enqueued -> first claim
STEPS = {"fetch": [0.5, 1.5, 2.5], "parse": [0.1, 0.3]}


def _insert(conn: psycopg.Connection[Any], queue: str, kind: str | None, events: list[Any], start: str) -> int:
    status = {"done": "done", "failed": "failed"}.get(events[-1][0], "failed")
    [(item_id,)] = conn.execute(
        "INSERT INTO clawnsole.items (queue, kind, title, status, finished_at) VALUES (%s, %s, 't', %s, now()) "
        "RETURNING id",
        [queue, kind, status],
    ).fetchall()
    for event, seconds, detail in events:
        conn.execute(
            "INSERT INTO clawnsole.item_events (item_id, at, event, detail) "
            f"VALUES (%s, now() - interval '{start}' + make_interval(secs => %s), %s, %s)",
            [item_id, seconds, event, psycopg.types.json.Jsonb(detail) if detail else None],
        )
    return item_id


@pytest.fixture
def history(db_url: str) -> list[int]:
    # One transaction: every insert reads the same now(), so the durations are exactly the ones written.
    with psycopg.connect(db_url) as conn:
        ids = [_insert(conn, queue, kind, events, "30 minutes") for queue, kind, events in HISTORY]
        # Two hours ago: outside --since 1h, inside the default day.
        ids.append(_insert(conn, "ops", "fetch", [("enqueued", 0, None), ("claimed", 1, None), ("done", 900, None)],
                           "2 hours"))  # fmt: skip
        for step, seconds in [(s, v) for s, values in STEPS.items() for v in values]:
            conn.execute(
                "INSERT INTO clawnsole.item_events (item_id, at, event, detail) VALUES (%s, now() - interval "
                "'20 minutes', 'step', jsonb_build_object('step', %s::text, 'seconds', %s::float8, 'attempt', 1))",
                [ids[0], step, seconds],
            )
    return ids


def test_stats_give_outcomes_success_rate_and_run_and_wait_percentiles_per_queue_and_kind(
    wq: WorkQueue, history: list[int]
) -> None:
    rows = {(r.queue, r.kind): r for r in Stats(wq).stats(since="1h")}
    assert set(rows) == {("dev", "review"), ("ops", None), ("ops", "fetch")}
    fetch = rows[("ops", "fetch")]
    # done: items 1, 2 and 4; failed: item 3's last attempt and item 5's expired last lease; retried: item 3's
    # first attempt and item 4's expired lease.
    assert (fetch.claimed, fetch.done, fetch.failed, fetch.retried) == (7, 3, 2, 2)
    assert fetch.success_rate == pytest.approx(0.6)
    assert fetch.run_p50 == pytest.approx(percentile_cont(RUNS, 0.5), abs=1e-3)
    assert fetch.run_p95 == pytest.approx(percentile_cont(RUNS, 0.95), abs=1e-3)
    assert fetch.wait_p50 == pytest.approx(percentile_cont(WAITS, 0.5), abs=1e-3)
    assert fetch.wait_p95 == pytest.approx(percentile_cont(WAITS, 0.95), abs=1e-3)
    review = rows[("dev", "review")]
    assert (review.done, review.success_rate, review.run_p50, review.wait_p50) == (1, 1.0, 100.0, 7.0)


def test_stats_filter_by_queue_kind_and_window(wq: WorkQueue, history: list[int]) -> None:
    api = Stats(wq)
    assert [(r.queue, r.kind) for r in api.stats(queue="dev", since="1h")] == [("dev", "review")]
    assert [(r.queue, r.kind) for r in api.stats(kind="fetch", since="1h")] == [("ops", "fetch")]
    [day] = api.stats(kind="fetch")  # the default window, a day, also holds the item of two hours ago
    assert (day.done, day.run_p95 is not None and day.run_p95 > 400) == (4, True)
    assert api.stats(since="10m") == []


def test_the_breakdown_gives_count_total_and_percentiles_per_step_slowest_first(
    wq: WorkQueue, history: list[int]
) -> None:
    rows = Stats(wq).breakdown(since="1h")
    assert [(r.queue, r.kind, r.step, r.count) for r in rows] == [
        ("ops", "fetch", "fetch", 3),
        ("ops", "fetch", "parse", 2),
    ]
    fetch, parse = rows
    assert fetch.total_seconds == pytest.approx(4.5) and parse.total_seconds == pytest.approx(0.4)
    assert fetch.p50 == pytest.approx(1.5) and fetch.p95 == pytest.approx(percentile_cont(STEPS["fetch"], 0.95))
    assert parse.p50 == pytest.approx(0.2)


def test_a_step_is_recorded_only_while_the_lease_is_held(wq: WorkQueue) -> None:
    wq.enqueue("q", "t")
    [item] = wq.claim_next("q")
    token = str(item.lease_token)
    assert Stats(wq).record_step(item.id, lease_token=token, step="fetch", seconds=0.25)
    wq.done(item.id, lease_token=token)
    assert not Stats(wq).record_step(item.id, lease_token=token, step="late", seconds=1.0)
    steps = [e.detail for e in wq.history(item.id) if e.event == "step"]
    assert steps == [{"step": "fetch", "seconds": 0.25, "attempt": 1}]


@pytest.mark.parametrize(
    ("call", "field"),
    [
        ({"step": "two words", "seconds": 1.0}, "step"),
        ({"step": "ok", "seconds": -1.0}, "seconds"),
        ({"step": "ok", "seconds": float("nan")}, "seconds"),
    ],
)
def test_a_bad_step_names_its_field_and_writes_nothing(wq: WorkQueue, call: dict[str, Any], field: str) -> None:
    wq.enqueue("q", "t")
    [item] = wq.claim_next("q")
    with pytest.raises(InvalidInput) as raised:
        Stats(wq).record_step(item.id, lease_token=str(item.lease_token), **call)
    assert raised.value.field == field
    assert [e.event for e in wq.history(item.id)] == ["enqueued", "claimed"]


def test_a_bad_window_is_bad_input(wq: WorkQueue) -> None:
    with pytest.raises(InvalidInput) as raised:
        Stats(wq).stats(since="yesterday")
    assert raised.value.field == "since"


def test_status_counts_by_kind_and_priority_and_the_dedupe_keys_in_cooldown(wq: WorkQueue) -> None:
    wq.enqueue("q", "a", kind="fetch", priority=75)
    wq.enqueue("q", "b", kind="fetch")
    wq.enqueue("q", "c")
    for key, cooldown in (("k1", "1h"), ("k2", None), ("k3", "1h")):
        wq.enqueue("done-q", key, dedupe_key=key, cooldown=cooldown)
    for item in wq.claim_next("done-q", limit=3):
        wq.done(item.id, lease_token=str(item.lease_token))
    counts = {(c.queue, c.status): c for c in wq.status()}
    pending = counts[("q", "pending")]
    assert (pending.items, pending.by_kind, pending.by_priority) == (3, {"(none)": 1, "fetch": 2}, {"75": 1, "50": 2})
    assert list(pending.by_priority) == ["75", "50"]  # highest first
    done = counts[("done-q", "done")]
    # k2 is held for ever (no cooldown): not "in cooldown"; k1 and k3 are until their hour is up.
    assert (done.items, done.dedupe_in_cooldown) == (3, 2)


def test_the_tail_cursor_shows_an_id_that_commits_late_once_and_forgets_gaps_after_a_while() -> None:
    from datetime import UTC, datetime, timedelta

    from clawnsole.stats.tail import TailCursor

    at = datetime(2026, 11, 21, 9, tzinfo=UTC)

    def row(event_id: int, wanted: bool = True) -> dict[str, Any]:
        return {"id": event_id, "item_id": 1, "at": at, "event": "done", "agent": None, "detail": None,
                "queue": "q", "kind": None, "wanted": wanted}  # fmt: skip

    cursor = TailCursor(10, at - timedelta(seconds=5))
    assert [e.id for e in cursor.take([row(11), row(13), row(14, wanted=False)], now=0.0)] == [11, 13]
    assert (cursor.after, cursor.gaps, cursor.horizon) == (14, [12], at - timedelta(seconds=5))
    assert [e.id for e in cursor.take([row(12), row(13)], now=1.0)] == [12]  # late commit shown; 13 not again
    cursor.take([row(16)], now=2.0)
    assert cursor.gaps == [15]
    cursor.take([], now=40.0)
    assert cursor.gaps == []  # an aborted transaction's id is not read for ever
