"""`clawnsole handlers run|new` as a user runs them: one job now in the foreground, recorded as an item
(success, failure, Ctrl-C, a run longer than its lease), and a generated handler whose test passes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest

from clawnsole import WorkQueue
from tests.conftest import Cli
from tests.worker.helpers import wait_for

JOBS = '''
import pathlib

from clawnsole.worker import handler


@handler("greet")
def greet(item, ctx):
    """Say hello."""
    ctx.progress(note="greeting", percent=50)
    with ctx.timed("compose"):
        name = item.payload.get("name", "world")
    return {"hello": name}


@handler("broken")
def broken(item, ctx):
    raise RuntimeError("the remote said no")


@handler("slow")
def slow(item, ctx):
    pathlib.Path(item.payload["marker"]).write_text(str(item.id))
    ctx.cancelled.wait(item.payload["seconds"])  # long work; Ctrl-C reaches it as KeyboardInterrupt
    return {"waited": True}
'''


@pytest.fixture
def jobs(tmp_path: Path) -> Path:
    """A directory holding the handler module `h5_jobs`, to run the commands from."""
    (tmp_path / "h5_jobs.py").write_text(textwrap.dedent(JOBS))
    return tmp_path


def _items(db_url: str) -> list[dict[str, object]]:
    with psycopg.connect(db_url) as conn:
        cur = conn.execute("SELECT id, queue, kind, title, status, attempts, result, last_error FROM clawnsole.items")
        names = [c.name for c in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_run_records_one_item_runs_its_handler_and_prints_the_result(
    cli: Cli, jobs: Path, wq: WorkQueue, db_url: str
) -> None:
    result = cli("handlers", "run", "greet", "--handlers", "h5_jobs", "--payload", '{"name": "Ada"}', cwd=jobs)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {"hello": "Ada"}
    assert "progress: 50% greeting" in result.stderr and " done in " in result.stderr
    [item] = _items(db_url)
    assert item | {"id": 0} == {
        "id": 0,
        "queue": "manual",
        "kind": "greet",
        "title": "greet",
        "status": "done",
        "attempts": 1,
        "result": {"hello": "Ada"},
        "last_error": None,
    }
    history = wq.history(int(str(item["id"])))
    assert [e.event for e in history] == ["enqueued", "claimed", "progress", "step", "done"]
    assert history[3].detail is not None and history[3].detail["step"] == "compose"  # ctx.timed works here too
    assert len({e.agent for e in history}) == 1  # one holder from enqueue to done


def test_run_with_a_queue_title_and_json_prints_the_outcome_as_json(cli: Cli, jobs: Path) -> None:
    argv = ("handlers", "run", "greet", "--handlers", "h5_jobs", "--queue", "ops", "--title", "Say hi", "--json")
    result = cli(*argv, cwd=jobs)
    assert result.code == 0, result.stderr
    outcome = json.loads(result.stdout)
    assert {k: outcome[k] for k in ("queue", "kind", "status", "ok", "result", "error", "attempts")} == {
        "queue": "ops",
        "kind": "greet",
        "status": "done",
        "ok": True,
        "result": {"hello": "world"},
        "error": None,
        "attempts": 1,
    }


def test_a_failing_handler_exits_1_and_leaves_a_dead_letter_with_its_error(cli: Cli, jobs: Path, db_url: str) -> None:
    result = cli("handlers", "run", "broken", "--handlers", "h5_jobs", cwd=jobs)
    assert result.code == 1 and result.stdout == ""
    [item] = _items(db_url)
    assert (item["status"], item["last_error"]) == ("failed", "RuntimeError: the remote said no")
    assert result.stderr == f"clawnsole: item {item['id']} (manual) failed: RuntimeError: the remote said no\n"
    listed = json.loads(cli("dlq", "list", "--queue", "manual", "--json", cwd=jobs).stdout)
    assert [i["id"] for i in listed] == [item["id"]]
    as_json = cli("handlers", "run", "broken", "--handlers", "h5_jobs", "--json", cwd=jobs)
    assert as_json.code == 1 and json.loads(as_json.stdout)["error"] == "RuntimeError: the remote said no"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ("nope", "--handlers", "h5_jobs"),
            "kind: h5_jobs has no handler for 'nope' (it handles: broken, greet, slow)",
        ),
        (("greet", "--handlers", "h5_jobs", "--payload", "[1]"), "payload: must be a JSON object"),
        (("greet", "--handlers", "h5_missing"), "handlers: cannot import 'h5_missing'"),
        (("greet", "--handlers", "h5_jobs", "--queue", "bad queue"), "queue: 'bad queue' is not a queue name"),
        (("greet", "--handlers", "h5_jobs", "--lease", "soon"), "lease: 'soon' is not a duration"),
    ],
)
def test_bad_input_is_exit_2_and_records_nothing(
    cli: Cli, jobs: Path, db_url: str, argv: tuple[str, ...], message: str
) -> None:
    result = cli("handlers", "run", *argv, cwd=jobs)
    assert result.code == 2 and result.stderr.startswith(f"clawnsole: error: {message}"), result.stderr
    assert _items(db_url) == []


def test_ctrl_c_releases_the_item_without_charging_the_attempt_and_exits_130(
    cli: Cli, jobs: Path, wq: WorkQueue, db_url: str
) -> None:
    marker = jobs / "started"
    payload = json.dumps({"marker": str(marker), "seconds": 60})
    process = subprocess.Popen(
        [sys.executable, "-m", "clawnsole", "handlers", "run", "slow", "--handlers", "h5_jobs", "--payload", payload],
        cwd=jobs,
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(marker.exists, timeout=30, what="the handler to start")
        process.send_signal(signal.SIGINT)
        assert process.wait(30) == 130
    finally:
        if process.poll() is None:
            process.kill()
    item = wq.get(int(marker.read_text()))
    assert (item.status, item.attempts, item.claimed_by) == ("pending", 0, None)
    released = wq.history(item.id)[-1]
    assert (released.event, released.detail) == ("released", {"reason": "interrupted"})


def test_a_run_longer_than_its_lease_keeps_it_renewed_while_others_claim_from_the_queue(
    cli: Cli, jobs: Path, wq: WorkQueue
) -> None:
    marker = jobs / "started"
    payload = json.dumps({"marker": str(marker), "seconds": 5})
    argv = ["handlers", "run", "slow", "--handlers", "h5_jobs", "--lease", "2", "--payload", payload]
    process = subprocess.Popen(
        [sys.executable, "-m", "clawnsole", *argv], cwd=jobs, env=cli.env(), stdout=subprocess.PIPE, text=True
    )
    try:
        wait_for(marker.exists, timeout=30, what="the handler to start")
        # Claim-next recovers expired leases in its queue: without renewals the item would be taken back
        # (to failed: one attempt) after 2 s; with them it is never expired and never handed out.
        while process.poll() is None:
            assert wq.claim_next("manual", agent="another-worker") == []
            time.sleep(0.1)
        out, _ = process.communicate(30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0 and json.loads(out) == {"waited": True}
    item_id = int(marker.read_text())
    assert wq.get(item_id).status == "done"
    assert "lease_expired" not in [e.event for e in wq.history(item_id)]


def test_new_writes_a_handler_and_a_test_that_passes_and_the_handler_runs_as_a_job(cli: Cli, tmp_path: Path) -> None:
    written = cli("handlers", "new", "daily.questmaster", cwd=tmp_path)
    assert written.code == 0, written.stderr
    assert written.stdout.split() == ["wrote", "daily_questmaster.py", "wrote", "test_daily_questmaster.py"]
    tested = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_daily_questmaster.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=cli.env(),
    )
    assert tested.returncode == 0 and "2 passed" in tested.stdout, tested.stdout + tested.stderr
    listed = cli("handlers", "list", "--handlers", "daily_questmaster", "--json", cwd=tmp_path)
    assert [e["kind"] for e in json.loads(listed.stdout)] == ["daily.questmaster"]
    # The notes' `job daily.questmaster --org default-org`:
    argv = ("handlers", "run", "daily.questmaster", "--handlers", "daily_questmaster")
    ran = cli(*argv, "--payload", '{"org": "default-org"}', cwd=tmp_path)
    assert ran.code == 0 and json.loads(ran.stdout) == {"org": "default-org", "steps": 3}, ran.stderr


def test_new_refuses_to_overwrite_without_force_and_refuses_bad_names(cli: Cli, tmp_path: Path) -> None:
    assert cli("handlers", "new", "sync-github", "--dir", str(tmp_path), cwd=tmp_path).code == 0
    handler = tmp_path / "sync_github.py"
    handler.write_text("# my edits\n")
    again = cli("handlers", "new", "sync-github", "--dir", str(tmp_path), cwd=tmp_path)
    assert again.code == 3 and "pass --force" in again.stderr
    assert handler.read_text() == "# my edits\n"
    forced = cli("handlers", "new", "sync-github", "--dir", str(tmp_path), "--force", "--json", cwd=tmp_path)
    assert forced.code == 0 and json.loads(forced.stdout)["kind"] == "sync-github"
    assert '@handler("sync-github")' in handler.read_text()
    for bad in ("9lives", "class", "bad name", "test_thing", ""):
        refused = cli("handlers", "new", bad, "--dir", str(tmp_path), cwd=tmp_path)
        assert refused.code == 2 and refused.stderr.startswith("clawnsole: error: name: "), (bad, refused.stderr)
    missing = cli("handlers", "new", "fine", "--dir", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert missing.code == 2 and missing.stderr.startswith("clawnsole: error: dir: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sync_github.py", "test_sync_github.py"]
