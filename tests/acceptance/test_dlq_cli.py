"""`clawnsole dlq list|show|replay` as a user runs it: real subprocesses, tables and JSON, exit codes."""

from __future__ import annotations

import json

import psycopg

from clawnsole import WorkQueue
from tests.conftest import Cli


def _dead(wq: WorkQueue, queue: str, kind: str, error: str) -> int:
    item = wq.enqueue(queue, f"{kind} job", kind=kind).item
    [claimed] = wq.claim_next(queue, agent="w")
    wq.fail(item.id, error, lease_token=str(claimed.lease_token), retry=False)
    return item.id


def _statuses(db_url: str) -> dict[int, str]:
    with psycopg.connect(db_url) as conn:
        return {int(r[0]): str(r[1]) for r in conn.execute("SELECT id, status FROM clawnsole.items")}


def test_list_prints_a_table_with_the_first_line_of_each_error_and_json_with_all_of_it(cli: Cli, wq: WorkQueue) -> None:
    long_error = "Connection refused by api.example.com while syncing the quest board " + "x" * 80 + "\nTraceback: …"
    first = _dead(wq, "ops", "github.sync", long_error)
    second = _dead(wq, "nightly", "daily.questmaster", "no such org")
    table = cli("dlq", "list")
    assert table.code == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "QUEUE", "KIND", "ATTEMPTS", "FINISHED_AT", "TITLE", "LAST_ERROR"]
    assert [r.split()[0] for r in rows] == [str(second), str(first)]  # newest failure first
    assert "Connection refused by api.example.com" in rows[1] and "Traceback" not in table.stdout
    assert "…" in rows[1] and "1/3" in rows[1]
    listed = cli("dlq", "list", "--queue", "ops", "--json")
    assert listed.code == 0, listed.stderr
    [item] = json.loads(listed.stdout)
    assert item["id"] == first and item["last_error"] == long_error and "instructions" not in item
    filtered = cli("dlq", "list", "--kind", "daily.questmaster", "--since", "1h", "--error", "ORG", "--json")
    assert [i["id"] for i in json.loads(filtered.stdout)] == [second]
    assert (
        cli("dlq", "list", "--exclude-kind", "daily.questmaster", "--exclude-kind", "github.sync").stdout == "(none)\n"
    )


def test_show_prints_the_full_error_and_the_history_and_exits_4_for_an_item_that_is_not_failed(
    cli: Cli, wq: WorkQueue
) -> None:
    dead = _dead(wq, "ops", "report", "line one\nline two")
    shown = cli("dlq", "show", str(dead))
    assert shown.code == 0, shown.stderr
    assert "last error:\n  line one\n  line two\n" in shown.stdout
    assert [line.split()[1] for line in shown.stdout.split("history:\n")[1].splitlines()[1:]] == [
        "enqueued",
        "claimed",
        "failed",
    ]
    as_json = json.loads(cli("dlq", "show", str(dead), "--json").stdout)
    assert as_json["last_error"] == "line one\nline two" and [e["event"] for e in as_json["history"]][-1] == "failed"
    pending = wq.enqueue("ops", "fine").item.id
    refused = cli("dlq", "show", str(pending))
    assert refused.code == 4 and refused.stdout == ""
    assert refused.stderr == f"clawnsole: error: item {pending} is not a dead letter (it is pending)\n"


def test_replay_without_yes_says_what_it_would_touch_and_writes_nothing(cli: Cli, wq: WorkQueue, db_url: str) -> None:
    for n in range(3):
        _dead(wq, "ops", "report", f"boom {n}")
    before = _statuses(db_url)
    asked = cli("dlq", "replay", "--queue", "ops")
    assert (asked.code, asked.stdout) == (0, "replay 3 failed items in ops\n"), asked.stderr
    assert "pass --yes" in asked.stderr
    dry = cli("dlq", "replay", "--queue", "ops", "--yes", "--dry-run", "--json")
    assert dry.code == 0 and json.loads(dry.stdout) | {"queues": None} == {
        "dry_run": True,
        "matched": 3,
        "replayed": 0,
        "waiting": 0,
        "queues": None,
        "ids": [],
        "batches": 0,
    }
    assert _statuses(db_url) == before


def test_replay_yes_puts_back_what_failed_in_the_last_day_except_the_excluded_kinds(
    cli: Cli, wq: WorkQueue, db_url: str
) -> None:
    # The seed's maintenance.retry: lookbackHours 24, excludeJobs [daily.questmaster.dryrun, maintenance.cleanup].
    wanted = [_dead(wq, "ops", "daily.questmaster", "timeout"), _dead(wq, "ops", "github.sync", "rate limited")]
    dry_run_job = _dead(wq, "ops", "daily.questmaster.dryrun", "boom")
    cleanup = _dead(wq, "ops", "maintenance.cleanup", "boom")
    old = _dead(wq, "ops", "github.sync", "boom")
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE clawnsole.items SET finished_at = now() - interval '2 days' WHERE id = %s", (old,))
    argv = ["dlq", "replay", "--since", "24h", "--exclude-kind", "daily.questmaster.dryrun"]
    done = cli(*argv, "--exclude-kind", "maintenance.cleanup", "--yes", "--json", CLAWNSOLE_AGENT="ops-cron")
    assert done.code == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["replayed"], report["ids"], report["queues"]) == (2, wanted, {"ops": 2})
    statuses = _statuses(db_url)
    assert [statuses[i] for i in wanted] == ["pending", "pending"]
    assert [statuses[i] for i in (dry_run_job, cleanup, old)] == ["failed"] * 3
    last = wq.history(wanted[0])[-1]
    assert (last.event, last.detail) == ("requeued", {"by": "ops-cron", "replay": True})
    again = cli("dlq", "replay", "--ids", str(old), "--yes")
    assert (again.code, again.stdout) == (0, "replayed 1 failed item in ops\n"), again.stderr
    assert wq.history(old)[-1].agent  # without $CLAWNSOLE_AGENT: user@host


def test_replay_of_ids_that_are_not_dead_letters_exits_4_naming_them_and_writes_nothing(
    cli: Cli, wq: WorkQueue, db_url: str
) -> None:
    dead = _dead(wq, "ops", "report", "boom")
    done = wq.enqueue("ops", "fine").item.id
    [claimed] = wq.claim_next("ops", agent="w")
    wq.done(done, lease_token=str(claimed.lease_token))
    refused = cli("dlq", "replay", "--ids", f"{dead},{done},424242", "--yes")
    assert refused.code == 4 and refused.stdout == ""
    assert refused.stderr == (
        f"clawnsole: error: not a dead letter matching the filter: {done} (done), 424242 (no such item)\n"
    )
    assert _statuses(db_url)[dead] == "failed"


def test_bad_input_is_one_line_naming_the_field_and_exit_2(cli: Cli, wq: WorkQueue, db_url: str) -> None:
    _dead(wq, "ops", "report", "boom")
    for argv, field in (
        (["replay", "--since", "yesterday", "--yes"], "since"),
        (["replay", "--ids", "1,two", "--yes"], "ids"),
        (["replay", "--exclude-kind", "no spaces", "--yes"], "exclude_kinds"),
        (["list", "--queue", "bad queue"], "queue"),
        (["list", "--limit", "0"], "limit"),
    ):
        result = cli("dlq", *argv)
        assert result.code == 2, (argv, result.stderr)
        assert result.stderr.startswith(f"clawnsole: error: {field}: ") and result.stderr.count("\n") == 1, argv
    assert set(_statuses(db_url).values()) == {"failed"}


def test_an_unreachable_database_is_exit_5_and_one_line(cli: Cli) -> None:
    result = cli("dlq", "list", "--database-url", "postgresql://nobody:secret@127.0.0.1:1/none")
    assert result.code == 5 and result.stderr.count("\n") == 1
    assert "cannot connect" in result.stderr and "secret" not in result.stderr
