"""The Schedules API: add, get, list, update, pause, resume, remove, run-now, import (sync and asyncio)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from clawnsole import InvalidInput, NotFound, WorkQueue
from clawnsole.queue import AsyncWorkQueue
from clawnsole.schedules.api import AsyncSchedules, Schedules
from clawnsole.schedules.models import ScheduleDef
from tests.scheduler.conftest import sql

NOW = datetime(2026, 11, 21, 9, 20, 7, 123456, tzinfo=UTC)


def test_add_stores_the_schedule_with_its_first_run(schedules: Schedules) -> None:
    added = schedules.add(
        "hourly-pr-review", queue="dev-team", title="Review open PRs", cron="0 * * * *",
        instructions="Review and ship", payload={"repo": "x"}, priority="high", now=NOW,
    )  # fmt: skip
    assert added.next_run_at == datetime(2026, 11, 21, 10, tzinfo=UTC)
    assert (added.status, added.catch_up, added.overlap, added.timezone, added.priority) == (
        "active", "latest", "allow", "UTC", 75,
    )  # fmt: skip
    assert schedules.get("hourly-pr-review") == added
    assert [s.name for s in schedules.list()] == ["hourly-pr-review"]
    assert added.created_at == NOW


def test_an_interval_schedule_first_fires_one_interval_after_it_is_added(schedules: Schedules) -> None:
    added = schedules.add("sync", queue="ops", title="Sync", every="15m", now=NOW)
    assert added.next_run_at == datetime(2026, 11, 21, 9, 35, 7, tzinfo=UTC)
    assert added.interval_seconds == 900 and added.cron is None


def test_a_cron_schedule_in_a_zone_first_fires_at_the_local_time(schedules: Schedules) -> None:
    added = schedules.add("ny", queue="ops", title="NY", cron="0 9 * * *", timezone="America/New_York", now=NOW)
    assert added.next_run_at == datetime(2026, 11, 21, 14, tzinfo=UTC)


def test_a_taken_name_is_bad_input_and_changes_nothing(schedules: Schedules) -> None:
    first = schedules.add("x", queue="q", title="t", every="1h", now=NOW)
    with pytest.raises(InvalidInput, match="already exists"):
        schedules.add("x", queue="other", title="t2", cron="0 * * * *")
    assert schedules.get("x") == first


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"cron": "0 9 * * * *"}, "cron"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Base"}, "timezone"),
        ({"every": "0"}, "every"),
        ({"every": "-5m"}, "every"),
        ({}, "schedule"),
        ({"cron": "0 * * * *", "every": "1h"}, "schedule"),
        ({"cron": "0 * * * *", "catch_up": "sometimes"}, "catch_up"),
        ({"cron": "0 * * * *", "overlap": "never"}, "overlap"),
        ({"cron": "0 * * * *", "queue": "bad queue!"}, "queue"),
    ],
)
def test_bad_input_is_refused_before_anything_is_written(
    schedules: Schedules, options: dict[str, str], field: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        schedules.add("x", **({"queue": "q", "title": "t"} | options))
    assert raised.value.field == field
    assert schedules.list() == []


@pytest.mark.parametrize("call", ["get", "pause", "resume", "remove", "run_now", "update", "runs"])
def test_an_unknown_name_is_not_found(schedules: Schedules, call: str) -> None:
    method = getattr(schedules, call)
    with pytest.raises(NotFound, match="no schedule named 'nope'"):
        method("nope", title="x") if call == "update" else method("nope")


def test_pause_keeps_a_schedule_from_firing_and_resume_starts_from_the_next_window(
    schedules: Schedules, wq: WorkQueue
) -> None:
    schedules.add("hourly", queue="q", title="t", cron="0 * * * *", now=NOW)
    paused = schedules.pause("hourly")
    assert paused.status == "paused"
    assert schedules.pause("hourly") == paused  # pausing twice changes nothing
    assert schedules.tick(now=NOW + timedelta(hours=5)).fired == []
    resumed = schedules.resume("hourly", now=NOW + timedelta(hours=5))
    # Windows 10:00 … 14:00 passed while paused: none is caught up; the next is 15:00.
    assert resumed.status == "active"
    assert resumed.next_run_at == datetime(2026, 11, 21, 15, tzinfo=UTC)
    assert wq.list() == []


def test_update_keeps_the_next_run_unless_the_timing_changes(schedules: Schedules) -> None:
    added = schedules.add("x", queue="q", title="t", cron="0 * * * *", instructions="secret", now=NOW)
    renamed = schedules.update("x", title="New title", instructions="", priority=10, now=NOW + timedelta(minutes=5))
    assert (renamed.title, renamed.instructions, renamed.priority) == ("New title", None, 10)
    assert renamed.next_run_at == added.next_run_at
    assert renamed.updated_at == NOW + timedelta(minutes=5)
    retimed = schedules.update("x", every="10m", now=NOW + timedelta(minutes=5))
    assert (retimed.cron, retimed.interval_seconds) == (None, 600)
    assert retimed.next_run_at == datetime(2026, 11, 21, 9, 35, 7, tzinfo=UTC)
    back = schedules.update("x", cron="30 9 * * *", timezone="Europe/Berlin", now=NOW)
    assert (back.cron, back.interval_seconds, back.next_run_at) == (
        "30 9 * * *", None, datetime(2026, 11, 22, 8, 30, tzinfo=UTC),
    )  # fmt: skip


def test_update_validates_the_result_and_writes_nothing_when_bad(schedules: Schedules) -> None:
    added = schedules.add("x", queue="q", title="t", cron="0 * * * *", now=NOW)
    for changes in ({"cron": "nope"}, {"timezone": "Nowhere/Land"}, {"every": "0"}, {"title": " "}):
        with pytest.raises(InvalidInput):
            schedules.update("x", **changes)
    assert schedules.get("x") == added


def test_remove_deletes_the_schedule_and_its_log_but_not_its_items(
    schedules: Schedules, wq: WorkQueue, db_url: str
) -> None:
    schedules.add("x", queue="q", title="t", cron="0 * * * *", now=NOW)
    schedules.run_now("x")
    removed = schedules.remove("x")
    assert removed.name == "x"
    assert schedules.list() == []
    assert sql(db_url, "SELECT count(*) FROM clawnsole.schedule_runs") == [(0,)]
    assert len(wq.list("q")) == 1
    with pytest.raises(NotFound):
        schedules.remove("x")


def test_run_now_enqueues_under_its_own_key_even_when_paused(schedules: Schedules) -> None:
    added = schedules.add("x", queue="q", title="t", cron="0 * * * *", payload={"a": 1}, paused=True, now=NOW)
    outcome = schedules.run_now("x", now=NOW)
    assert outcome.created
    item = outcome.item
    assert (item.queue, item.title, item.payload, item.dedupe_key) == (
        "q", "t", {"a": 1}, "schedule:x:run-now:2026-11-21T09:20:07Z",
    )  # fmt: skip
    assert not schedules.run_now("x", now=NOW).created  # the same command twice in one second: one item
    after = schedules.get("x")
    assert after.next_run_at == added.next_run_at and after.run_count == 1 and after.last_item_id == item.id
    assert [r.outcome for r in schedules.runs("x")] == ["duplicate", "run_now"]


def test_add_inside_the_callers_transaction_rolls_back_with_it(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        schedules = Schedules(WorkQueue(conn).open())
        with pytest.raises(RuntimeError), conn.transaction():
            schedules.add("x", queue="q", title="t", every="1h", conn=conn)
            raise RuntimeError("the application's own write failed")
        assert schedules.list() == []


def test_apply_is_an_idempotent_upsert_by_name_with_prune_and_dry_run(schedules: Schedules) -> None:
    one = ScheduleDef(name="one", queue="q", title="One", cron="0 * * * *")
    two = ScheduleDef(name="two", queue="q", title="Two", interval_seconds=600, status="paused")
    first = schedules.apply([one, two], now=NOW)
    assert (first.created, first.updated, first.unchanged) == (["one", "two"], {}, [])
    before = schedules.list()
    again = schedules.apply([one, two], now=NOW + timedelta(hours=1))
    assert (again.created, again.updated, again.unchanged) == ([], {}, ["one", "two"])
    assert schedules.list() == before
    changed = ScheduleDef(name="one", queue="q", title="One!", cron="0 * * * *")
    dry = schedules.apply([changed], prune=True, dry_run=True)
    assert (dry.updated, dry.removed, dry.dry_run) == ({"one": ["title"]}, ["two"], True)
    assert schedules.list() == before
    real = schedules.apply([changed], prune=True)
    assert (real.updated, real.removed) == ({"one": ["title"]}, ["two"])
    assert [(s.name, s.title) for s in schedules.list()] == [("one", "One!")]


def test_apply_is_all_or_nothing(schedules: Schedules) -> None:
    good = ScheduleDef(name="good", queue="q", title="t", cron="0 * * * *")
    bad = ScheduleDef(name="bad", queue="q", title="t", cron="0 * * * * *")
    with pytest.raises(InvalidInput, match=r"schedules\[1\] \('bad'\) cron"):
        schedules.apply([good, bad])
    twice = ScheduleDef(name="good", queue="q", title="t2", cron="0 * * * *")
    with pytest.raises(InvalidInput, match="more than once"):
        schedules.apply([good, twice])
    assert schedules.list() == []


def test_export_gives_back_what_apply_takes(schedules: Schedules) -> None:
    schedules.add("a", queue="q", title="t", cron="0 9 * * 1-5", timezone="Europe/Berlin", payload={"k": [1]})
    schedules.add("b", queue="q", title="t", every="90s", paused=True, catch_up="all", overlap="skip")
    assert schedules.apply(schedules.export()).unchanged == ["a", "b"]


def test_the_asyncio_api_mirrors_the_sync_one(db_url: str) -> None:
    async def scenario() -> list[str]:
        async with AsyncWorkQueue(db_url, agent="async-test") as queue:
            schedules = AsyncSchedules(queue)
            await schedules.add("a", queue="q", title="t", cron="0 * * * *", now=NOW)
            await schedules.pause("a")
            await schedules.resume("a", now=NOW)
            await schedules.update("a", title="t2")
            enqueued = await schedules.run_now("a")
            tick = await schedules.tick(now=NOW + timedelta(hours=1))
            assert [s.title for s in await schedules.list()] == ["t2"]
            assert (await schedules.get("a")).run_count == 2
            assert enqueued.created and tick.enqueued == 1
            runs = [r.outcome for r in await schedules.runs("a")]
            await schedules.remove("a")
            return runs

    assert asyncio.run(scenario()) == ["enqueued", "run_now"]
