"""The command line as a user runs it: real subprocesses, JSON out, documented exit codes."""

from __future__ import annotations

import json
import subprocess
import threading
import time

import psycopg
import pytest

from tests.conftest import Cli

DOCUMENTED = (
    'clawnsole workqueue enqueue --queue dev-team --title "Review open PRs" --instructions "Review and ship any '
    'safe PRs. Leave comments if blocked." --priority 50 --dedupeKey "hourly-pr-review:$(date -u +%Y-%m-%dT%H)"'
)


def _count(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM clawnsole.items").fetchone()
    assert row is not None
    return int(row[0])


def test_the_documented_enqueue_command_works_verbatim_and_is_idempotent(cli: Cli, db_url: str) -> None:
    runs = [
        subprocess.run(["bash", "-c", DOCUMENTED], capture_output=True, text=True, env=cli.env(), timeout=60)
        for _ in range(2)
    ]
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    first, second = (json.loads(r.stdout) for r in runs)
    assert first["created"] is True and second["created"] is False and first["id"] == second["id"]
    assert first["queue"] == "dev-team" and first["priority"] == 50 and first["status"] == "pending"
    assert first["dedupe_key"].startswith("hourly-pr-review:20")
    assert _count(db_url) == 1


def test_enqueue_claim_progress_done_round_trip(cli: Cli) -> None:
    enq = cli(
        "workqueue",
        "enqueue",
        "--queue",
        "ops",
        "--title",
        "rebuild the index",
        "--kind",
        "reindex",
        "--payload",
        '{"index": "main"}',
        "--priority",
        "high",
    )
    assert enq.code == 0, enq.stderr
    created = json.loads(enq.stdout)
    assert {"id", "queue", "status", "priority", "attempts", "created"} <= created.keys()
    claim = cli("workqueue", "claim-next", "--queue", "ops", "--agent", "cron-1", "--lease", "2m")
    assert claim.code == 0, claim.stderr
    item = json.loads(claim.stdout)
    assert item["id"] == created["id"] and item["claimed_by"] == "cron-1" and item["payload"] == {"index": "main"}
    assert item["lease_token"] and item["lease_expires_at"] and item["priority"] == 75
    prog = cli(
        "workqueue",
        "progress",
        "--id",
        str(item["id"]),
        "--agent",
        "cron-1",
        "--note",
        "half",
        "--percent",
        "50",
        "--extend",
        "10m",
    )
    assert prog.code == 0 and json.loads(prog.stdout)["progress_percent"] == 50
    done = cli("workqueue", "done", "--id", str(item["id"]), "--lease", item["lease_token"], "--result", '{"ok": 1}')
    assert done.code == 0 and json.loads(done.stdout)["status"] == "done"
    again = cli("workqueue", "done", "--id", str(item["id"]), "--agent", "cron-1")
    assert again.code == 3 and "already done" in again.stderr
    shown = json.loads(cli("workqueue", "show", str(item["id"])).stdout)
    assert [e["event"] for e in shown["history"]] == ["enqueued", "claimed", "progress", "done"]


def test_the_item_env_vars_identify_the_held_item(cli: Cli) -> None:
    cli("workqueue", "enqueue", "--queue", "ops", "--title", "x")
    item = json.loads(cli("workqueue", "claim-next", "--queue", "ops", "--agent", "w").stdout)
    env = {"CLAWNSOLE_ITEM_ID": str(item["id"]), "CLAWNSOLE_LEASE": item["lease_token"], "CLAWNSOLE_AGENT": "w"}
    assert cli("workqueue", "progress", "--note", "from the child", **env).code == 0
    assert cli("workqueue", "fail", "--error", "boom", "--no-retry", **env).code == 0
    assert json.loads(cli("workqueue", "show", "--id", str(item["id"])).stdout)["status"] == "failed"
    assert cli("workqueue", "retry", str(item["id"])).code == 0


def test_claim_next_on_an_empty_queue_prints_nothing_and_exits_zero(cli: Cli) -> None:
    result = cli("workqueue", "claim-next", "--queue", "empty", "--agent", "cron")
    assert (result.code, result.stdout) == (0, "")


def test_claim_next_wait_wakes_on_enqueue(cli: Cli, db_url: str) -> None:
    from clawnsole import WorkQueue

    outcome: dict[str, object] = {}

    def waiter() -> None:
        started = time.monotonic()
        result = cli("workqueue", "claim-next", "--queue", "wake", "--agent", "w", "--wait", "30")
        outcome.update(result=result, seconds=time.monotonic() - started)

    thread = threading.Thread(target=waiter)
    thread.start()
    with psycopg.connect(db_url, autocommit=True) as conn:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # wait until the CLI is listening
            row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%'").fetchone()
            if row and row[0]:
                break
            time.sleep(0.05)
    with WorkQueue(db_url) as wq:
        wq.enqueue("wake", "now")
    thread.join(30)
    result = outcome["result"]
    assert result.code == 0 and json.loads(result.stdout)["title"] == "now"  # type: ignore[attr-defined]
    assert float(outcome["seconds"]) < 25  # type: ignore[arg-type]


def test_list_and_status(cli: Cli) -> None:
    for n in range(3):
        cli("workqueue", "enqueue", "--queue", "reports", "--title", f"report {n}", "--instructions", "TOPSECRET")
    table = cli("workqueue", "list", "--queue", "reports")
    assert table.code == 0 and "report 2" in table.stdout and "TOPSECRET" not in table.stdout
    listed = json.loads(cli("workqueue", "list", "--json", "--status", "pending").stdout)
    assert len(listed) == 3 and all("instructions" not in i for i in listed)
    status = json.loads(cli("workqueue", "status", "--json").stdout)
    assert status == [
        {
            "queue": "reports",
            "status": "pending",
            "items": 3,
            "oldest_pending_seconds": status[0]["oldest_pending_seconds"],
            "expired_leases": 0,
            "dedupe_in_cooldown": 0,
            "by_kind": {"(none)": 3},
            "by_priority": {"50": 3},
        }
    ]
    assert "reports" in cli("workqueue", "status").stdout


def test_instructions_and_payload_from_files_and_stdin(cli: Cli, tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "payload.json"  # type: ignore[operator]
    path.write_text('{"from": "file"}')
    result = cli(
        "workqueue",
        "enqueue",
        "--queue",
        "q",
        "--title",
        "t",
        "--payload-file",
        str(path),
        "--instructions-file",
        "-",
        input="do the thing\n",
    )
    assert result.code == 0, result.stderr
    shown = json.loads(cli("workqueue", "show", str(json.loads(result.stdout)["id"])).stdout)
    assert shown["payload"] == {"from": "file"} and shown["instructions"] == "do the thing\n"


BAD_INPUT = [
    (["enqueue", "--queue", "bad queue", "--title", "t"], "queue"),
    (["enqueue", "--queue", "", "--title", "t"], "queue"),
    (["enqueue", "--queue", "q" * 129, "--title", "t"], "queue"),
    (["enqueue", "--queue", "q", "--title", "  "], "title"),
    (["enqueue", "--queue", "q", "--title", "t", "--payload", "[1]"], "payload"),
    (["enqueue", "--queue", "q", "--title", "t", "--payload", "{nope"], "payload"),
    (["enqueue", "--queue", "q", "--title", "t", "--payload-file", "-"], "payload"),
    (["enqueue", "--queue", "q", "--title", "t", "--priority", "urgent"], "priority"),
    (["enqueue", "--queue", "q", "--title", "t", "--run-at", "tomorrow"], "run_at"),
    (["enqueue", "--queue", "q", "--title", "t", "--run-at", "2026-01-01T09:00:00"], "run_at"),
    (["enqueue", "--queue", "q", "--title", "t", "--delay", "soon"], "delay"),
    (["enqueue", "--queue", "q", "--title", "t", "--max-attempts", "0"], "max_attempts"),
    (["enqueue", "--queue", "q", "--title", "t", "--cooldown", "1h"], "cooldown"),
    (["enqueue", "--queue", "q", "--title", "t", "--lease", "-5"], "lease"),
    (["enqueue", "--queue", "q", "--title", "t", "--payload-file", "/nonexistent/p.json"], "payload"),
    (["claim-next", "--queue", "q", "--lease", "-5"], "lease"),
    (["claim-next", "--queue", "q", "--lease", "0"], "lease"),
    (["list", "--status", "running"], "status"),
    (["done", "--id", "1"], "agent"),
    (["done", "--id", "1", "--agent", "a", "--result", "{bad"], "result"),
    (["progress", "--id", "1", "--agent", "a", "--percent", "101"], "percent"),
    (["enqueue", "--title", "t"], "--queue"),
    (["enqueue", "--queue", "q", "--title", "t", "--max-attempts", "three"], "--max-attempts"),
]


@pytest.mark.parametrize(("args", "field"), BAD_INPUT, ids=[f"{a[0]}-{f}-{i}" for i, (a, f) in enumerate(BAD_INPUT)])
def test_bad_input_exits_2_naming_the_field_and_writes_nothing(
    cli: Cli, db_url: str, args: list[str], field: str
) -> None:
    cli("workqueue", "enqueue", "--queue", "q", "--title", "existing")
    before = _count(db_url)
    oversized = '{"x": "' + "y" * (1024 * 1024) + '"}'  # only read by --payload-file -
    result = cli("workqueue", *args, input=oversized)
    assert result.code == 2, (result.stdout, result.stderr)
    assert field in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert _count(db_url) == before


def test_unknown_id_exits_4(cli: Cli) -> None:
    for args in (
        ["show", "424242"],
        ["cancel", "--id", "424242"],
        ["retry", "424242"],
        ["done", "--id", "424242", "--lease", "6f1c8d2e-0000-4000-8000-000000000000"],
    ):
        result = cli("workqueue", *args)
        assert result.code == 4, (args, result.stderr)
        assert result.stderr.count("\n") == 1


def test_database_down_is_one_line_exit_5_without_the_password(cli: Cli) -> None:
    result = cli(
        "workqueue",
        "enqueue",
        "--queue",
        "q",
        "--title",
        "t",
        CLAWNSOLE_DATABASE_URL="postgresql://app:sup3rsecret@127.0.0.1:1/nowhere",
    )
    assert result.code == 5
    assert "sup3rsecret" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert result.stderr.startswith("clawnsole: error: cannot connect") and result.stderr.count("\n") == 1


def test_missing_schema_says_run_migrate_then_migrate_fixes_it(empty_db_url: str) -> None:
    cli = Cli(empty_db_url)
    result = cli("workqueue", "list")
    assert result.code == 5 and "clawnsole migrate" in result.stderr
    assert "pending" in cli("migrate", "--status").stdout
    assert cli("migrate").code == 0
    assert "up to date" in cli("migrate").stdout
    assert cli("workqueue", "list").code == 0


def test_concurrent_migrations_are_safe(empty_db_url: str) -> None:
    cli = Cli(empty_db_url)
    procs = [
        subprocess.Popen(
            ["python", "-m", "clawnsole", "migrate"],
            env=cli.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], results
    assert sum("applied" in out for out, _ in results) == 1


def test_schema_option_and_variable_select_another_schema(cli: Cli, db_url: str) -> None:
    assert cli("migrate", "--schema", "team_b").code == 0
    made = cli("workqueue", "enqueue", "--queue", "q", "--title", "in b", "--schema", "team_b")
    assert made.code == 0, made.stderr
    assert json.loads(cli("workqueue", "list", "--json", CLAWNSOLE_SCHEMA="team_b").stdout)[0]["title"] == "in b"
    assert json.loads(cli("workqueue", "list", "--json").stdout) == []
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM team_b.items").fetchone() == (1,)
    bad = cli("workqueue", "list", "--schema", "Bad-Name")
    assert bad.code == 2 and "schema" in bad.stderr
