"""Cleanup against real PostgreSQL: bounded batches, dry runs, what is never deleted, and what goes with an item."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from clawnsole import WorkQueue
from clawnsole.errors import InvalidInput
from clawnsole.models import NewItem
from clawnsole.retention.api import Retention
from clawnsole.schedules.api import Schedules


def sql(db_url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []


def finished(wq: WorkQueue, db_url: str, count: int, *, queue: str = "q", days_ago: int = 40) -> list[int]:
    """`count` items claimed and done, their finish moved `days_ago` days back (a progress event each too)."""
    ids = wq.enqueue_many([NewItem(queue, f"item {n}") for n in range(count)])
    for item in wq.claim_next(queue, limit=count):
        wq.progress(item.id, lease_token=str(item.lease_token), note="half way")
        wq.done(item.id, lease_token=str(item.lease_token))
    age(db_url, ids, days_ago)
    return ids


def age(db_url: str, ids: list[int], days_ago: int) -> None:
    sql(db_url, "UPDATE clawnsole.items SET finished_at = now() - make_interval(days => %s) WHERE id = ANY(%s)",
        [days_ago, ids])  # fmt: skip


def items(db_url: str) -> int:
    return int(sql(db_url, "SELECT count(*) FROM clawnsole.items")[0][0])


def events_of(db_url: str, ids: list[int]) -> int:
    return int(sql(db_url, "SELECT count(*) FROM clawnsole.item_events WHERE item_id = ANY(%s)", [ids])[0][0])


def test_thirty_five_old_items_go_in_four_batches_of_at_most_ten_with_every_event(wq: WorkQueue, db_url: str) -> None:
    old = finished(wq, db_url, 35)
    assert events_of(db_url, old) == 35 * 4  # enqueued, claimed, progress, done
    report = Retention(wq).cleanup("30d", batch=10)
    assert (report.items, report.events, report.batches, report.dry_run) == (35, 140, 4, False)
    assert items(db_url) == 0 and events_of(db_url, old) == 0


def test_a_dry_run_counts_what_would_go_and_writes_nothing(wq: WorkQueue, db_url: str) -> None:
    old = finished(wq, db_url, 12)
    finished(wq, db_url, 3, days_ago=5)
    before = sql(db_url, "SELECT id, status, updated_at FROM clawnsole.items ORDER BY id")
    report = Retention(wq).cleanup("30d", batch=5, dry_run=True)
    assert (report.items, report.events, report.batches, report.dry_run) == (12, 48, 3, True)
    assert sql(db_url, "SELECT id, status, updated_at FROM clawnsole.items ORDER BY id") == before
    assert events_of(db_url, old) == 48


def test_pending_waiting_and_claimed_items_survive_even_with_an_old_finish_time(wq: WorkQueue, db_url: str) -> None:
    pending, waiting, claimed = wq.enqueue_many([NewItem("q", "p"), NewItem("q", "w"), NewItem("other", "c")])
    [held] = wq.claim_next("other")
    assert held.id == claimed
    sql(db_url, "UPDATE clawnsole.items SET status = 'waiting' WHERE id = %s", [waiting])
    age(db_url, [pending, waiting, claimed], 400)  # as if a buggy write had stamped them: status still rules
    old = finished(wq, db_url, 2, queue="finished")
    report = Retention(wq).cleanup("30d")
    assert report.items == 2
    left = dict(sql(db_url, "SELECT id, status FROM clawnsole.items"))
    assert left == {pending: "pending", waiting: "waiting", claimed: "claimed"}
    assert events_of(db_url, [pending, waiting, claimed]) == 4 and events_of(db_url, old) == 0


def test_only_the_statuses_and_the_queue_asked_for_are_deleted(wq: WorkQueue, db_url: str) -> None:
    done_q = finished(wq, db_url, 2, queue="q")
    done_other = finished(wq, db_url, 2, queue="other")
    [failed] = wq.enqueue_many([NewItem("q", "doomed", max_attempts=1)])
    [item] = wq.claim_next("q")
    wq.fail(item.id, "broken", lease_token=str(item.lease_token))
    age(db_url, [failed], 40)
    report = Retention(wq).cleanup("30d", statuses="done", queue="q")
    assert report.items == 2
    assert sorted(r[0] for r in sql(db_url, "SELECT id FROM clawnsole.items")) == sorted([*done_other, failed])
    assert events_of(db_url, done_q) == 0


def test_an_item_still_in_its_dedupe_cooldown_is_kept_until_the_cooldown_ends(wq: WorkQueue, db_url: str) -> None:
    cooling = wq.enqueue("q", "cooling", dedupe_key="k1", cooldown="60d").item.id
    forever = wq.enqueue("q", "held for ever", dedupe_key="k2").item.id
    for item in wq.claim_next("q", limit=2):
        wq.done(item.id, lease_token=str(item.lease_token))
    age(db_url, [cooling, forever], 40)
    report = Retention(wq).cleanup("30d")
    # The key held for ever goes with its item (after 30 days the window it guarded is long past); the one in
    # its cooldown would be freed 20 days early, so that item stays.
    assert (report.items, report.kept_in_cooldown) == (1, 1)
    assert [r[0] for r in sql(db_url, "SELECT id FROM clawnsole.items")] == [cooling]
    age(db_url, [cooling], 61)
    assert Retention(wq).cleanup("30d").items == 1
    assert wq.enqueue("q", "again", dedupe_key="k1").created


def test_a_finished_prerequisite_of_a_waiting_item_is_kept_and_dependency_rows_go_with_their_items(
    wq: WorkQueue, db_url: str
) -> None:
    prerequisite, lone = finished(wq, db_url, 2)
    [dependent] = wq.enqueue_many([NewItem("q", "waits")])
    [other_dependent] = wq.enqueue_many([NewItem("q", "released long ago")])
    sql(db_url, "UPDATE clawnsole.items SET status = 'waiting' WHERE id = %s", [dependent])
    sql(db_url, "INSERT INTO clawnsole.item_dependencies VALUES (%s, %s), (%s, %s)",
        [dependent, prerequisite, other_dependent, lone])  # fmt: skip
    report = Retention(wq).cleanup("30d")
    assert (report.items, report.dependencies, report.kept_as_prerequisite) == (1, 1, 1)
    assert sql(db_url, "SELECT item_id, prerequisite_id FROM clawnsole.item_dependencies") == [
        (dependent, prerequisite)
    ]


def test_a_row_locked_by_another_transaction_is_skipped_not_waited_for(wq: WorkQueue, db_url: str) -> None:
    ids = finished(wq, db_url, 5)
    with psycopg.connect(db_url) as holder:
        holder.execute("SELECT 1 FROM clawnsole.items WHERE id = %s FOR UPDATE", [ids[2]])
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '2s'")  # a cleanup that waited would fail here, not hang
            report = Retention(WorkQueue(conn).open()).cleanup("30d", batch=2)
        assert (report.items, report.left) == (4, 1)
    assert [r[0] for r in sql(db_url, "SELECT id FROM clawnsole.items")] == [ids[2]]


def test_deleting_an_item_clears_the_schedule_and_run_log_references_to_it(wq: WorkQueue, db_url: str) -> None:
    schedules = Schedules(wq)
    schedules.add("s", queue="q", title="t", every="1h")
    [fired] = [schedules.run_now("s").item.id]
    [item] = wq.claim_next("q")
    wq.done(item.id, lease_token=str(item.lease_token))
    age(db_url, [fired], 40)
    assert Retention(wq).cleanup("30d").items == 1
    assert schedules.get("s").last_item_id is None
    assert [r.item_id for r in schedules.runs("s")] == [None]


def test_the_foreign_keys_clear_through_their_partial_indexes_not_a_scan(db_url: str) -> None:
    # What ON DELETE SET NULL runs for each deleted item (a parameterised equality): the partial indexes on
    # schedules.last_item_id and schedule_runs.item_id answer it, so deleting items stays cheap however
    # many schedule runs there are.
    with psycopg.connect(db_url) as conn:
        conn.execute("SET enable_seqscan = off")
        conn.execute("SET plan_cache_mode = force_generic_plan")
        for table, column, index in (
            ("schedules", "last_item_id", "schedules_last_item_idx"),
            ("schedule_runs", "item_id", "schedule_runs_item_idx"),
        ):
            conn.execute(
                f"PREPARE p_{table} (bigint) AS UPDATE clawnsole.{table} SET {column} = NULL WHERE {column} = $1"
            )
            plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN EXECUTE p_{table}(1)"))
            assert index in plan, plan


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"older_than": "soon"}, "older_than"),
        ({"older_than": "30d", "statuses": "done,pending"}, "status"),
        ({"older_than": "30d", "statuses": ["claimed"]}, "status"),
        ({"older_than": "30d", "batch": 0}, "batch"),
        ({"older_than": "30d", "queue": "bad queue"}, "queue"),
    ],
)
def test_bad_options_name_their_field_and_delete_nothing(
    wq: WorkQueue, db_url: str, options: dict[str, Any], field: str
) -> None:
    finished(wq, db_url, 1)
    older_than = options.pop("older_than")
    with pytest.raises(InvalidInput) as raised:
        Retention(wq).cleanup(older_than, **options)
    assert raised.value.field == field
    assert items(db_url) == 1
