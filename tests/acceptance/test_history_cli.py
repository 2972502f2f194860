"""The history commands as real subprocesses: cleanup, stats, tail, status extras, and the system cleanup
schedule fired by `scheduler tick` (also from the seed's scheduler.yaml)."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import psycopg

from clawnsole import WorkQueue
from clawnsole.models import NewItem
from tests.conftest import Cli


def _old_done(db_url: str, count: int, queue_name: str = "ops") -> list[int]:
    with WorkQueue(db_url) as wq:
        ids = wq.enqueue_many([NewItem(queue_name, f"old {n}", kind="report") for n in range(count)])
        for item in wq.claim_next(queue_name, limit=count):
            wq.done(item.id, lease_token=str(item.lease_token))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE clawnsole.items SET finished_at = now() - interval '40 days' WHERE id = ANY(%s)", [ids])
    return ids


def _count(db_url: str, query: str) -> int:
    with psycopg.connect(db_url) as conn:
        return int(conn.execute(query).fetchall()[0][0])


def test_cleanup_dry_run_then_for_real_prints_counts_and_deletes_only_old_finished_items(cli: Cli, db_url: str) -> None:
    _old_done(db_url, 7)
    cli("workqueue", "enqueue", "--queue", "ops", "--title", "still to do")
    dry = cli("workqueue", "cleanup", "--older-than", "30d", "--dry-run")
    assert dry.code == 0 and dry.stdout.startswith("would delete 7 items and 21 events in 1 batches"), dry
    assert _count(db_url, "SELECT count(*) FROM clawnsole.items") == 8
    done = cli("workqueue", "cleanup", "--older-than", "30d", "--batch", "3", "--json")
    assert done.code == 0, done.stderr
    assert {k: json.loads(done.stdout)[k] for k in ("items", "events", "batches", "dry_run")} == {
        "items": 7, "events": 21, "batches": 3, "dry_run": False,
    }  # fmt: skip
    assert _count(db_url, "SELECT count(*) FROM clawnsole.items WHERE status = 'pending'") == 1
    assert _count(db_url, "SELECT count(*) FROM clawnsole.items") == 1


def test_cleanup_bad_input_is_one_line_naming_the_field_and_deletes_nothing(cli: Cli, db_url: str) -> None:
    _old_done(db_url, 2)
    for args, field in ((["--status", "pending"], "status"), (["--batch", "0"], "batch")):
        result = cli("workqueue", "cleanup", "--older-than", "30d", *args)
        assert result.code == 2 and result.stderr.count("\n") == 1 and field in result.stderr, result
    result = cli("workqueue", "cleanup", "--older-than", "a while")
    assert result.code == 2 and "older_than" in result.stderr
    assert _count(db_url, "SELECT count(*) FROM clawnsole.items") == 2


def test_history_commands_with_the_database_down_say_so_in_one_line(cli: Cli) -> None:
    down = "postgresql://clawnsole@127.0.0.1:1/nowhere"
    for args in (["cleanup", "--older-than", "30d"], ["stats"], ["tail"]):
        result = cli("workqueue", *args, "--database-url", down)
        assert result.code == 5 and result.stderr.startswith("clawnsole: error: cannot connect"), result
        assert "Traceback" not in result.stderr


def test_stats_prints_a_table_and_json_per_queue_and_kind(cli: Cli, db_url: str) -> None:
    _old_done(db_url, 3)
    table = cli("workqueue", "stats", "--since", "1h")
    assert table.code == 0 and "RUN_P95" in table.stdout and "100.0%" in table.stdout, table
    [row] = json.loads(cli("workqueue", "stats", "--json", "--queue", "ops").stdout)
    assert (row["queue"], row["kind"], row["done"], row["success_rate"]) == ("ops", "report", 3, 1.0)
    breakdown = cli("workqueue", "stats", "--breakdown", "--json")
    assert breakdown.code == 0 and json.loads(breakdown.stdout) == []


def test_status_shows_counts_by_kind_and_priority_and_keys_in_cooldown(cli: Cli) -> None:
    cli("workqueue", "enqueue", "--queue", "ops", "--title", "a", "--kind", "report", "--priority", "high")
    cli("workqueue", "enqueue", "--queue", "ops", "--title", "b")
    [row] = json.loads(cli("workqueue", "status", "--json").stdout)
    assert (row["by_kind"], row["by_priority"], row["dedupe_in_cooldown"]) == (
        {"(none)": 1, "report": 1},
        {"75": 1, "50": 1},
        0,
    )
    table = cli("workqueue", "status").stdout
    assert "IN_COOLDOWN" in table and "report=1" in table and "75=1 50=1" in table


def _lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


def test_tail_prints_an_event_enqueued_by_another_process_and_stops_cleanly_on_sigterm(cli: Cli) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "clawnsole", "workqueue", "tail", "--json", "--queue", "ops"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli.env(),
    )
    out: queue.Queue[str] = queue.Queue()
    err: queue.Queue[str] = queue.Queue()
    for stream, into in ((process.stdout, out), (process.stderr, err)):
        threading.Thread(target=_lines, args=(stream, into), daemon=True).start()
    try:
        assert "following events" in err.get(timeout=30)
        cli("workqueue", "enqueue", "--queue", "elsewhere", "--title", "not shown")
        enqueued = json.loads(cli("workqueue", "enqueue", "--queue", "ops", "--title", "shown").stdout)
        event = json.loads(out.get(timeout=15))
        assert (event["item_id"], event["event"], event["queue"]) == (enqueued["id"], "enqueued", "ops")
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert out.empty()  # the other queue's event was never printed
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_tail_since_starts_with_recent_history_in_readable_lines(cli: Cli) -> None:
    enqueued = json.loads(
        cli("workqueue", "enqueue", "--queue", "ops", "--title", "earlier", "--kind", "report").stdout
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "clawnsole", "workqueue", "tail", "--since", "10m"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=cli.env(),
    )
    out: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(process.stdout, out), daemon=True).start()
    try:
        line = out.get(timeout=30)
        assert "enqueued" in line and f"#{enqueued['id']}" in line and "ops/report" in line
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=15) == 0


def _tick(cli: Cli) -> dict[str, Any]:
    result = cli("scheduler", "tick")
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_a_system_cleanup_schedule_fired_by_tick_deletes_old_items_and_is_recorded(cli: Cli, db_url: str) -> None:
    added = cli(
        "schedule", "add", "nightly-cleanup", "--cron", "0 3 * * *", "--system", "cleanup", "--older-than", "30d"
    )
    assert added.code == 0, added.stderr
    schedule = json.loads(added.stdout)
    assert (schedule["queue"], schedule["kind"], schedule["payload"]) == (
        "clawnsole",
        "clawnsole.cleanup",
        {"older_than": "30d"},
    )
    old = _old_done(db_url, 5)
    cli("workqueue", "enqueue", "--queue", "ops", "--title", "pending stays")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE clawnsole.schedules SET next_run_at = now() - interval '1 minute' WHERE name = 'nightly-cleanup'"
        )
    report = _tick(cli)
    [window] = report["schedules"][0]["enqueued"]
    [run] = report["system_items"]
    assert (run["item_id"], run["kind"], run["outcome"]) == (window["item_id"], "clawnsole.cleanup", "done")
    assert (run["result"]["items"], run["result"]["events"]) == (5, 15)
    assert _count(db_url, f"SELECT count(*) FROM clawnsole.items WHERE id IN ({','.join(map(str, old))})") == 0
    shown = json.loads(cli("workqueue", "show", str(window["item_id"])).stdout)
    assert shown["status"] == "done" and shown["result"]["items"] == 5
    assert [e["event"] for e in shown["history"]] == ["enqueued", "claimed", "done"]
    assert _tick(cli)["system_items"] == []  # nothing due: the next window is tomorrow


def test_the_seeds_maintenance_cleanup_entry_imports_as_a_system_cleanup_schedule(cli: Cli, tmp_path: Path) -> None:
    seed = tmp_path / "scheduler.yaml"
    seed.write_text(
        "schedules:\n"
        "  - jobId: maintenance.cleanup\n"
        '    schedule: "0 0 * * *"\n'
        "    enabled: true\n"
        '    timezone: "UTC"\n'
        '    description: "Clean up old job execution records"\n'
        "    input:\n"
        "      retentionDays: 30\n"
    )
    imported = cli("schedule", "import", str(seed))
    assert imported.code == 0 and "create maintenance.cleanup" in imported.stdout, imported
    shown = json.loads(cli("schedule", "show", "maintenance.cleanup").stdout)
    assert (shown["queue"], shown["kind"], shown["payload"], shown["cron"]) == (
        "clawnsole", "clawnsole.cleanup", {"older_than": "30d"}, "0 0 * * *",
    )  # fmt: skip
    assert "0 created, 0 updated, 1 unchanged" in cli("schedule", "import", str(seed)).stdout  # twice: no change
    exported = tmp_path / "exported.yaml"
    assert cli("schedule", "export", "-o", str(exported)).code == 0
    assert "1 unchanged" in cli("schedule", "import", str(exported)).stdout
    seed.write_text(seed.read_text().replace("retentionDays: 30", "retentionDays: 0"))
    refused = cli("schedule", "import", str(seed))
    assert refused.code == 2 and "retentionDays" in refused.stderr


def _failed(db_url: str, queue_name: str, kind: str, count: int) -> list[int]:
    with WorkQueue(db_url) as wq:
        ids = wq.enqueue_many([NewItem(queue_name, f"broken {n}", kind=kind, max_attempts=1) for n in range(count)])
        for item in wq.claim_next(queue_name, limit=count):
            wq.fail(item.id, "boom", lease_token=str(item.lease_token))
    return ids


def test_the_seeds_maintenance_retry_entry_replays_recent_dead_letters_except_its_excluded_jobs(
    cli: Cli, db_url: str, tmp_path: Path
) -> None:
    seed = tmp_path / "scheduler.yaml"
    seed.write_text(
        "schedules:\n"
        "  - jobId: maintenance.retry\n"
        '    schedule: "0 * * * *"\n'
        "    enabled: true\n"
        "    input:\n"
        "      maxRetries: 3\n"
        "      lookbackHours: 24\n"
        "      excludeJobs:\n"
        "        - daily.questmaster.dryrun\n"
        "        - maintenance.cleanup\n"
    )
    imported = cli("schedule", "import", str(seed))
    assert imported.code == 0 and "create maintenance.retry" in imported.stdout, imported
    shown = json.loads(cli("schedule", "show", "maintenance.retry").stdout)
    assert (shown["queue"], shown["kind"], shown["payload"]) == (
        "clawnsole",
        "clawnsole.replay",
        {"since": "24h", "max_replays": 3, "exclude_kinds": ["daily.questmaster.dryrun", "maintenance.cleanup"]},
    )
    replayed = _failed(db_url, "ops", "daily.questmaster", 3)
    excluded = _failed(db_url, "ops", "daily.questmaster.dryrun", 2)
    stale = _failed(db_url, "ops", "daily.questmaster", 1)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE clawnsole.items SET finished_at = now() - interval '2 days' WHERE id = ANY(%s)", [stale])
        conn.execute("UPDATE clawnsole.schedules SET next_run_at = now() - interval '1 minute'")
    [run] = _tick(cli)["system_items"]
    assert (run["kind"], run["outcome"], run["result"]["replayed"]) == ("clawnsole.replay", "done", 3), run
    statuses = dict(
        psycopg.connect(db_url).execute("SELECT id, status FROM clawnsole.items WHERE queue = 'ops'").fetchall()
    )
    assert [statuses[i] for i in replayed] == ["pending"] * 3
    assert [statuses[i] for i in excluded + stale] == ["failed"] * 3
    seed.write_text(seed.read_text().replace("lookbackHours: 24", "lookbackHours: often"))
    refused = cli("schedule", "import", str(seed))
    assert refused.code == 2 and "lookbackHours" in refused.stderr, refused
