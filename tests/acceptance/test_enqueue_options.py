"""`workqueue enqueue` options as a user types them: --after (dependency chains, with the worker app's smoke
test "dependency chain → jobs run in order"), draining queues, and the file-based task queue's --metadata,
--key and --retries; bad input is exit 2 with nothing written."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import psycopg

from clawnsole import WorkQueue
from tests.conftest import Cli
from tests.worker.helpers import wait_for

# A handler that records the order it ran items in (one line per item id) and takes a moment, so an item
# that started before its prerequisite finished would show in the times.
RECORDER = """
import json, pathlib, sys, time
item = json.load(sys.stdin)
time.sleep(0.2)
with open(pathlib.Path(sys.argv[1]), "a") as out:
    out.write(f"{item['title']}\\n")
"""


def _enqueue(cli: Cli, *args: str) -> dict[str, object]:
    result = cli("workqueue", "enqueue", *args)
    assert result.code == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def _rows(db_url: str) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM clawnsole.items), (SELECT count(*) FROM clawnsole.item_dependencies)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_smoke_a_dependency_chain_runs_its_jobs_in_order(cli: Cli, wq: WorkQueue, tmp_path: Path) -> None:
    # The worker app's release gate: "Dependency chain → jobs run in order". The later jobs outrank the
    # first, so only the chain keeps them back; the worker runs four at once, so only the chain orders them.
    first = _enqueue(cli, "--queue", "jobs", "--title", "extract", "--priority", "low")
    second = _enqueue(
        cli, "--queue", "jobs", "--title", "transform", "--priority", "critical", "--after", str(first["id"])
    )
    third = _enqueue(cli, "--queue", "jobs", "--title", "load", "--priority", "critical", "--after", str(second["id"]))
    assert [first["status"], second["status"], third["status"]] == ["pending", "waiting", "waiting"]
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    ran = tmp_path / "ran.txt"
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "clawnsole",
            "workqueue",
            "worker-loop",
            "--queue",
            "jobs",
            "--concurrency",
            "4",
            "--poll",
            "30",
            "--exec",
            f"{sys.executable} {script} {ran}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=cli.env(),
    )
    try:
        # --poll 30: each release reaches the idle worker by its NOTIFY, not by a poll.
        wait_for(lambda: wq.get(int(str(third["id"]))).status == "done", 20, "the chain to finish")
    finally:
        worker.terminate()
        worker.wait(30)
    assert ran.read_text().splitlines() == ["extract", "transform", "load"]
    events = {int(str(i["id"])): {e.event: e.at for e in wq.history(int(str(i["id"])))} for i in (first, second, third)}
    ids = [int(str(i["id"])) for i in (first, second, third)]
    for before, after in itertools.pairwise(ids):
        assert events[after]["claimed"] >= events[before]["done"], "a job started before its prerequisite was done"
    shown = json.loads(cli("workqueue", "show", str(second["id"])).stdout)
    assert shown["prerequisites"] == [{"id": ids[0], "status": "done", "queue": "jobs", "title": "extract"}]
    assert shown["dependents"] == [{"id": ids[2], "status": "done", "queue": "jobs", "title": "load"}]


def test_an_unknown_prerequisite_is_exit_4_and_writes_nothing(cli: Cli, db_url: str) -> None:
    known = _enqueue(cli, "--queue", "jobs", "--title", "known")
    before = _rows(db_url)
    result = cli(
        "workqueue", "enqueue", "--queue", "jobs", "--title", "orphan", "--after", str(known["id"]), "--after", "424242"
    )
    assert result.code == 4
    assert result.stderr.strip() == "clawnsole: error: no item with id 424242 (a prerequisite given in after)"
    assert _rows(db_url) == before


def test_an_item_after_a_failed_one_is_cancelled_at_once_and_says_so(cli: Cli, wq: WorkQueue) -> None:
    failed = wq.enqueue("jobs", "breaks", max_attempts=1).item
    [claimed] = wq.claim_next("jobs", agent="w")
    wq.fail(claimed.id, "broken", lease_token=str(claimed.lease_token))
    result = cli("workqueue", "enqueue", "--queue", "jobs", "--title", "after it", "--after", str(failed.id))
    assert result.code == 0
    assert json.loads(result.stdout)["status"] == "cancelled"
    assert f"cancelled at once: prerequisite {failed.id} failed" in result.stderr


def test_cancel_accepts_a_waiting_item(cli: Cli) -> None:
    first = _enqueue(cli, "--queue", "jobs", "--title", "first")
    second = _enqueue(cli, "--queue", "jobs", "--title", "second", "--after", str(first["id"]))
    result = cli("workqueue", "cancel", str(second["id"]))
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "cancelled"


def test_an_enqueue_into_a_draining_queue_is_exit_3_and_a_paused_one_accepts(cli: Cli, db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO clawnsole.queues (name, state) VALUES ('shut', 'draining'), ('held', 'paused')")
    before = _rows(db_url)
    result = cli("workqueue", "enqueue", "--queue", "shut", "--title", "refused")
    assert result.code == 3
    assert result.stderr.strip() == (
        "clawnsole: error: queue shut is draining: enqueues are refused until `clawnsole queue resume shut`"
    )
    assert _rows(db_url) == before
    assert cli("workqueue", "enqueue", "--queue", "held", "--title", "accepted").code == 0


def test_metadata_is_stored_shown_and_filtered_by_containment(cli: Cli) -> None:
    tagged = _enqueue(
        cli,
        "--queue",
        "jobs",
        "--title",
        "tagged",
        "--metadata",
        '{"createdBy": "workflow", "runId": "12345", "attempt": 2}',
    )
    _enqueue(cli, "--queue", "jobs", "--title", "other", "--metadata", '{"createdBy": "cron"}')
    _enqueue(cli, "--queue", "jobs", "--title", "untagged")
    assert tagged["metadata"] == {"createdBy": "workflow", "runId": "12345", "attempt": 2}
    shown = json.loads(cli("workqueue", "show", str(tagged["id"])).stdout)
    assert shown["metadata"]["runId"] == "12345"
    found = cli(
        "workqueue",
        "list",
        "--metadata",
        "createdBy=workflow",
        "--metadata",
        "runId=12345",
        "--metadata",
        "attempt:=2",
        "--json",
    )
    assert [i["title"] for i in json.loads(found.stdout)] == ["tagged"]
    assert json.loads(cli("workqueue", "list", "--metadata", "runId:=12345", "--json").stdout) == []
    table = cli("workqueue", "list", "--metadata", "createdBy=cron")
    assert "other" in table.stdout and "tagged" not in table.stdout


def test_key_fields_give_one_item_whatever_their_order(cli: Cli) -> None:
    first = _enqueue(cli, "--queue", "jobs", "--title", "deploy", "--key", '{"env": "production", "service": "api"}')
    again = _enqueue(cli, "--queue", "jobs", "--title", "deploy", "--key", '{"service":"api","env":"production"}')
    other = _enqueue(cli, "--queue", "jobs", "--title", "deploy", "--key", '{"env": "staging", "service": "api"}')
    assert (first["created"], again["created"], other["created"]) == (True, False, True)
    assert again["id"] == first["id"] and other["id"] != first["id"]
    assert str(first["dedupe_key"]).startswith("key:")


def test_retries_mean_one_more_attempt_and_the_cooldown_takes_a_duration(cli: Cli) -> None:
    item = _enqueue(
        cli,
        "--queue",
        "jobs",
        "--title",
        "heal",
        "--retries",
        "5",
        "--key",
        '{"type": "scheduled"}',
        "--cooldown",
        "6h",
    )
    assert item["max_attempts"] == 6


def test_bad_enqueue_options_are_exit_2_naming_the_field_and_write_nothing(cli: Cli, db_url: str) -> None:
    before = _rows(db_url)
    cases = {
        ("--metadata", "[1, 2]"): "metadata",
        ("--metadata", "{not json"): "metadata",
        ("--metadata", json.dumps({"blob": "x" * 70_000})): "metadata",
        ("--key", '"just text"'): "key",
        ("--key", "{}"): "key",
        ("--key", '{"a": 1}', "--dedupe-key", "k"): "key",
        ("--retries", "2", "--max-attempts", "3"): "retries",
        ("--retries", "-1"): "retries",
        ("--after", "0"): "after",
    }
    for args, field in cases.items():
        result = cli("workqueue", "enqueue", "--queue", "jobs", "--title", "bad", *args)
        assert result.code == 2, (args, result.stderr)
        assert result.stderr.startswith(f"clawnsole: error: {field}"), (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1
    bad_filter = cli("workqueue", "list", "--metadata", "novalue")
    assert bad_filter.code == 2 and bad_filter.stderr.startswith("clawnsole: error: metadata")
    assert _rows(db_url) == before
