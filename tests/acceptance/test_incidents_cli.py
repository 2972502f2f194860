"""`clawnsole workers`, `leases`, `leases release`, `doctor` and `explain-claim` as a user runs them: real
worker processes, real subprocess calls, the documented exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from clawnsole import WorkQueue
from tests.conftest import Cli
from tests.worker.helpers import wait_for


@pytest.fixture
def start(cli: Cli, tmp_path: Path) -> Iterator[Any]:
    """Starts `clawnsole workqueue worker-loop` processes (killed at the end if still running)."""
    started: list[subprocess.Popen[bytes]] = []

    def run(agent: str, *args: str) -> subprocess.Popen[bytes]:
        with open(tmp_path / f"{agent}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "clawnsole", "workqueue", "worker-loop", "--agent", agent, *args],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=cli.env(),
            )
        started.append(process)
        return process

    yield run
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def _workers(cli: Cli, *args: str) -> dict[str, dict[str, Any]]:
    done = cli("workers", "--json", *args)
    assert done.code == 0, done.stderr
    return {w["agent"]: w for w in json.loads(done.stdout)}


def _sql(db_url: str, statement: str, params: Any = None) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(statement, params)


def test_workers_lists_real_worker_processes_alive_then_gone_when_killed_or_stopped(
    cli: Cli, db_url: str, wq: WorkQueue, start: Any
) -> None:
    killed = start("w-killed", "--queue", "jobs", "--exec", "true", "--lease", "1.5")
    stopped = start("w-stopped", "--queue", "other", "--exec", "true", "--lease", "30")
    wait_for(lambda: len(_workers(cli)) == 2, timeout=30, what="both workers registered")
    row = _workers(cli)["w-killed"]
    assert (row["state"], row["pid"], row["queues"], row["gone"]) == ("alive", killed.pid, ["jobs"], None)
    for n in range(3):
        wq.enqueue("jobs", f"n{n}")
    wait_for(lambda: _workers(cli)["w-killed"]["done_count"] == 3, timeout=30, what="the counts to arrive")

    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    # Gone silent takes 3 heartbeat intervals (1.5 s here); set its last heartbeat back instead of waiting.
    _sql(db_url, "UPDATE clawnsole.workers SET last_seen_at = now() - interval '1 minute' WHERE agent = 'w-killed'")
    assert _workers(cli)["w-killed"]["gone"] == "silent"
    doctor = cli("doctor")
    assert doctor.code == 0 and "WARN  workers" in doctor.stdout and "w-killed" in doctor.stdout

    stopped.send_signal(signal.SIGTERM)
    assert stopped.wait(30) == 0
    assert "w-stopped" not in _workers(cli)  # a clean stop leaves the default listing
    row = _workers(cli, "--all")["w-stopped"]
    assert (row["state"], row["gone"]) == ("gone", "stopped") and row["stopped_at"]
    table = cli("workers", "--all")
    assert table.code == 0 and "gone (stopped)" in table.stdout and "gone (silent)" in table.stdout


def test_workers_prune_deletes_rows_gone_a_day(cli: Cli, db_url: str) -> None:
    _sql(
        db_url,
        "INSERT INTO clawnsole.workers (agent, instance, queues, last_seen_at, stopped_at) VALUES"
        " ('old', gen_random_uuid(), '{q}', now() - interval '2 days', now() - interval '2 days')",
    )
    done = cli("workers", "--all", "--prune", "--json")
    assert done.code == 0 and json.loads(done.stdout) == [] and "pruned 1 worker row" in done.stderr


def test_a_forced_release_fences_the_old_holder_and_the_item_is_claimed_again_uncharged(
    cli: Cli, wq: WorkQueue
) -> None:
    item_id = wq.enqueue("jobs", "stuck").item.id
    claimed = json.loads(cli("workqueue", "claim-next", "--queue", "jobs", "--agent", "w-old").stdout)
    listed = json.loads(cli("leases", "--queue", "jobs", "--json").stdout)
    assert [(lease["id"], lease["agent"], lease["attempts"]) for lease in listed] == [(item_id, "w-old", 1)]
    assert "w-old" in cli("leases").stdout

    released = cli("leases", "release", "--id", str(item_id), "--reason", "host lost", "--by", "alice", "--json")
    assert released.code == 0, released.stderr
    assert json.loads(released.stdout) == [{"id": item_id, "queue": "jobs", "attempts": 0, "holder": "w-old"}]
    late = cli("workqueue", "done", "--id", str(item_id), "--lease", claimed["lease_token"])
    assert late.code == 3 and "lease lost" in late.stderr
    again = json.loads(cli("workqueue", "claim-next", "--queue", "jobs", "--agent", "w-new").stdout)
    assert (again["id"], again["attempts"]) == (item_id, 1)
    history = json.loads(cli("workqueue", "show", str(item_id)).stdout)["history"]
    [event] = [e for e in history if e["event"] == "released"]
    assert event["detail"] == {"by": "alice", "reason": "host lost", "forced": True, "holder": "w-old"}
    assert claimed["lease_token"] not in released.stdout + released.stderr


def test_releasing_what_nobody_holds_is_not_found_and_bad_input_names_the_field(cli: Cli, wq: WorkQueue) -> None:
    item_id = wq.enqueue("jobs", "idle").item.id
    nothing = cli("leases", "release", "--id", str(item_id))
    assert nothing.code == 4 and nothing.stderr.count("\n") == 1 and "no lease is held" in nothing.stderr
    assert cli("leases", "release", "--agent", "nobody").code == 4
    neither = cli("leases", "release")
    assert neither.code == 2 and "id:" in neither.stderr
    assert cli("leases", "--limit", "0").code == 2
    assert wq.get(item_id).status == "pending"


def test_doctor_exits_0_when_healthy_1_on_a_failed_check_and_5_when_the_database_is_down(
    cli: Cli, db_url: str, wq: WorkQueue
) -> None:
    healthy = cli("doctor", "--json")
    assert healthy.code == 0, healthy.stdout
    assert json.loads(healthy.stdout)["status"] == "OK"
    wq.enqueue("q", "same")
    wq.enqueue("q", "same")
    with pytest.raises(psycopg.errors.UniqueViolation):
        _sql(db_url, "CREATE UNIQUE INDEX CONCURRENTLY items_title_idx ON clawnsole.items (title)")
    broken = cli("doctor")
    assert broken.code == 1 and "FAIL  indexes" in broken.stdout and "hint: REINDEX" in broken.stdout
    report = json.loads(cli("doctor", "--json").stdout)
    assert report["status"] == "FAIL" and {c["name"]: c["status"] for c in report["checks"]}["indexes"] == "FAIL"
    down = cli("doctor", CLAWNSOLE_DATABASE_URL="postgresql://nobody:secret@127.0.0.1:1/none")
    assert down.code == 5 and down.stderr.count("\n") == 1 and "secret" not in down.stderr
    assert "Traceback" not in down.stderr


def test_doctor_on_an_unmigrated_database_fails_the_schema_check_with_the_hint(empty_db_url: str) -> None:
    done = Cli(empty_db_url)("doctor")
    assert done.code == 1 and "FAIL  schema" in done.stdout and "clawnsole migrate" in done.stdout


def test_explain_claim_prints_the_analyzed_plan_and_claims_nothing(cli: Cli, wq: WorkQueue) -> None:
    ids = [wq.enqueue("jobs", f"n{n}").item.id for n in range(2)]
    text = cli("explain-claim", "--queue", "jobs", "--limit", "2")
    assert text.code == 0 and "rolled back, nothing claimed" in text.stdout
    assert "items_claimable_idx" in text.stdout and "actual time" in text.stdout
    as_json = json.loads(cli("explain-claim", "--json").stdout)
    assert as_json["rolled_back"] is True and as_json["queues"] == ["jobs"] and as_json["uses_claimable_index"]
    assert [wq.get(i).status for i in ids] == ["pending", "pending"]
    assert all([e.event for e in wq.history(i)] == ["enqueued"] for i in ids)
