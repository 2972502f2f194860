"""`clawnsole queue …` as real processes: pause, resume and drain across two `worker-loop` processes, the
concurrency limit held by four workers of eight slots each (checked from the event history), `queue list`
as JSON and as a table, and bad input or a missing database refused with one line and nothing written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from clawnsole import NewItem, WorkQueue
from tests.conftest import Cli
from tests.db.queue_history import held_at_once
from tests.worker.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]
HANDLER = "tests.reliability.handlers:run"


@pytest.fixture
def start(cli: Cli, tmp_path: Path) -> Iterator[Any]:
    """Starts `clawnsole workqueue worker-loop` processes; each is stopped (SIGTERM, then SIGKILL) at the end."""
    started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def run(agent: str, *args: str) -> subprocess.Popen[bytes]:
        log = tmp_path / f"{agent}.log"
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        with open(log, "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "clawnsole", "workqueue", "worker-loop", "--agent", agent,
                 "--handler", HANDLER, "--log-format", "json", *args],
                stdout=subprocess.DEVNULL, stderr=stderr, env=cli.env(PYTHONPATH=path), cwd=ROOT,
            )  # fmt: skip
        started.append((process, log))
        wait_for(lambda: _ready(process, log), 30, f"worker {agent} to be ready")
        return process

    yield run
    for process, _ in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process, _ in started:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _ready(process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"worker exited ({process.returncode}): {log.read_text()[-2000:]}")
    return any(line.startswith("{") and json.loads(line)["event"] == "ready" for line in log.read_text().splitlines())


def _statuses(db_url: str, queue: str) -> dict[str, int]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute("SELECT status, count(*) FROM clawnsole.items WHERE queue = %s GROUP BY status", [queue])
        return {str(status): int(n) for status, n in rows.fetchall()}


def _fill(db_url: str, queue: str, count: int, **payload: Any) -> None:
    with WorkQueue(db_url, agent="producer") as wq:
        wq.enqueue_many([NewItem(queue, f"{queue}-{n}", payload=payload) for n in range(count)])


def _queues_rows(db_url: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM clawnsole.queues").fetchone()
    assert row is not None
    return int(row[0])


def test_a_paused_queue_stays_pending_while_two_workers_run_and_resume_hands_it_to_them_at_once(
    cli: Cli, db_url: str, start: Any
) -> None:
    assert cli("queue", "pause", "held", "--by", "ops-alice").code == 0
    _fill(db_url, "held", 6)
    for agent in ("w1", "w2"):
        start(agent, "--queue", "held", "--queue", "busy", "--concurrency", "4", "--poll", "30")
    # The workers are claiming: what is enqueued into the other queue after the held items gets done, by
    # the same claims (both queues in each) that pass the held ones over.
    _fill(db_url, "busy", 8, sleep_ms=20)
    wait_for(lambda: _statuses(db_url, "busy") == {"done": 8}, 30, "the busy queue's items to be done")
    assert _statuses(db_url, "held") == {"pending": 6}

    resumed = cli("queue", "resume", "held", "--by", "ops-bob", "--json")
    assert resumed.code == 0, resumed.stderr
    control = json.loads(resumed.stdout)
    assert (control["state"], control["state_by"]) == ("active", "ops-bob")
    asked = time.monotonic()
    wait_for(lambda: _statuses(db_url, "held") == {"done": 6}, 10, "the resumed queue's items to be done")
    assert time.monotonic() - asked < 10
    with psycopg.connect(db_url, autocommit=True) as conn:
        claimers = conn.execute(
            "SELECT min(e.at) >= (SELECT state_since FROM clawnsole.queues WHERE name = 'held'),"
            "       count(DISTINCT e.agent)"
            "  FROM clawnsole.item_events e JOIN clawnsole.items i ON i.id = e.item_id"
            " WHERE i.queue = 'held' AND e.event = 'claimed'"
        ).fetchone()
    assert claimers is not None and claimers[0] is True  # nothing of the held queue was claimed before resume


def test_a_draining_queue_is_still_worked_off_by_two_workers(cli: Cli, db_url: str, start: Any) -> None:
    _fill(db_url, "jobs", 10, sleep_ms=20)
    drained = cli("queue", "drain", "jobs", "--json")
    assert drained.code == 0 and json.loads(drained.stdout)["state"] == "draining"
    for agent in ("w1", "w2"):
        start(agent, "--queue", "jobs", "--concurrency", "2")
    wait_for(lambda: _statuses(db_url, "jobs") == {"done": 10}, 30, "the draining queue to be empty")
    listed = json.loads(cli("queue", "list", "--queue", "jobs", "--json").stdout)
    assert [(q["state"], q["pending"], q["claimed"], q["done_last_5m"]) for q in listed] == [("draining", 0, 0, 10)]


def test_four_workers_of_eight_slots_never_hold_more_than_the_concurrency_limit(
    cli: Cli, db_url: str, start: Any
) -> None:
    limited = cli("queue", "limit", "jobs", "--concurrency", "3", "--json")
    assert limited.code == 0 and json.loads(limited.stdout)["concurrency_limit"] == 3
    _fill(db_url, "jobs", 48, sleep_ms=100)
    for agent in ("w1", "w2", "w3", "w4"):
        start(agent, "--queue", "jobs", "--concurrency", "8", "--poll", "5")
    wait_for(lambda: _statuses(db_url, "jobs") == {"done": 48}, 90, "every item to be done")
    peak, claims = held_at_once(db_url, "jobs")
    assert (claims, peak) == (48, 3)  # reached the limit, never passed it
    with psycopg.connect(db_url, autocommit=True) as conn:
        agents = conn.execute(
            "SELECT count(DISTINCT agent) FROM clawnsole.item_events WHERE event = 'claimed'"
        ).fetchone()
    assert agents is not None and agents[0] >= 2  # the limit held across processes, not within one


def test_queue_list_shows_every_queue_with_its_controls_and_counts_as_json_and_as_a_table(
    cli: Cli, db_url: str
) -> None:
    _fill(db_url, "mail", 4)
    with WorkQueue(db_url, agent="w") as wq:
        first, second, _ = wq.claim_next("mail", limit=3)
        wq.done(first.id, lease_token=str(first.lease_token))
        wq.fail(second.id, "smtp said no", lease_token=str(second.lease_token), retry=False)
    assert cli("queue", "limit", "mail", "--concurrency", "5", "--rate", "600/m").code == 0
    assert cli("queue", "pause", "reports", "--by", "ops").code == 0  # a row and no items

    listed = cli("queue", "list", "--json")
    assert listed.code == 0, listed.stderr
    by_name = {q["name"]: q for q in json.loads(listed.stdout)}
    assert list(by_name) == ["mail", "reports"]
    mail = by_name["mail"]
    limits = [mail[k] for k in ("state", "concurrency_limit", "rate", "rate_limit", "rate_window_seconds")]
    assert limits == ["active", 5, "600/m", 600, 60]
    assert (mail["pending"], mail["claimed"], mail["failed"], mail["done_last_5m"]) == (1, 1, 1, 1)
    assert mail["oldest_pending_seconds"] >= 0 and mail["rate_used"] == 0
    reports = by_name["reports"]
    assert (reports["state"], reports["state_by"], reports["pending"], reports["oldest_pending_seconds"]) == (
        "paused", "ops", 0, None,
    )  # fmt: skip

    table = cli("queue", "list")
    assert table.code == 0
    header, *lines = table.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "STATE", "CONCURRENCY_LIMIT", "RATE"]
    assert lines[0].split()[:6] == ["mail", "active", "5", "600/m", "0", "1"]
    assert lines[1].split()[:2] == ["reports", "paused"]


def test_a_control_change_prints_the_queue_as_a_table_by_default(cli: Cli) -> None:
    paused = cli("queue", "pause", "jobs", "--by", "ops-alice")
    assert paused.code == 0
    header, row = paused.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "STATE", "STATE_SINCE", "STATE_BY"]
    assert row.split()[:2] == ["jobs", "paused"] and row.split()[3] == "ops-alice"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["limit", "jobs", "--rate", "10/fortnight"], "rate"),
        (["limit", "jobs", "--rate", "ten/s"], "rate"),
        (["limit", "jobs", "--concurrency", "-1"], "concurrency"),
        (["limit", "jobs"], "limits"),
        (["limit", "bad name", "--concurrency", "2"], "queue"),
        (["pause", "bad name"], "queue"),
        (["drain", ""], "queue"),
        (["resume", "x" * 200], "queue"),
        (["list", "--queue", "bad name"], "queue"),
    ],
)
def test_bad_input_is_one_line_naming_the_field_and_writes_nothing(
    cli: Cli, db_url: str, args: list[str], field: str
) -> None:
    result = cli("queue", *args)
    assert result.code == 2, result
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"clawnsole: error: {field}: "), result.stderr
    assert _queues_rows(db_url) == 0


def test_an_unreachable_database_is_exit_5_with_one_line(cli: Cli) -> None:
    result = cli("queue", "list", "--database-url", "postgresql://nobody:secret@127.0.0.1:1/none", timeout=60)
    assert result.code == 5
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr and "secret" not in result.stderr
