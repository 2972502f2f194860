"""`worker-loop` and `worker-pass` as real processes: LISTEN wake-ups, SIGTERM/SIGINT drains, kill -9
recovered by another worker exactly once, the `--exec` contract, systemd notifications, and exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clawnsole import WorkQueue
from tests.conftest import Cli
from tests.worker.helpers import WorkerProcess, wait_for

SECRET = "instructions-secret-5d1e"

CHILD = """
import json, os, pathlib, subprocess, sys, time
item = json.load(sys.stdin)
out = pathlib.Path(sys.argv[1])
agent = os.environ["CLAWNSOLE_AGENT"]
(out / f"pid-{item['id']}-{agent}").write_text(str(os.getpid()))
if agent in item["payload"].get("block_for", []):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # stands for long work; only a signal ends it
        time.sleep(0.05)
    sys.exit(9)
if item["payload"].get("progress"):  # the item's identity and lease come from the environment
    subprocess.run([sys.executable, "-m", "clawnsole", "workqueue", "progress", "--note", "from the child",
                    "--percent", "60"], check=True, stdout=subprocess.DEVNULL)
if item["payload"].get("fail"):
    sys.stderr.write("the remote said no\\n")
    sys.exit(4)
print("some progress chatter")
print(json.dumps({"by": agent, "queue": os.environ["CLAWNSOLE_QUEUE"]}))
"""


@pytest.fixture
def child(tmp_path: Path) -> str:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return f"{sys.executable} {script} {tmp_path}"


@pytest.fixture
def start(cli: Cli, tmp_path: Path) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def run(command: str, *args: str, agent: str = "A", env: dict[str, str] | None = None) -> WorkerProcess:
        log = tmp_path / f"{agent}-{len(started)}.log"
        with open(log, "wb") as stderr:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "clawnsole",
                    "workqueue",
                    command,
                    "--agent",
                    agent,
                    "--log-format",
                    "json",
                    *args,
                ],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=cli.env(**(env or {})),
            )
        started.append(WorkerProcess(process, log))
        return started[-1]

    yield run
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(10)
        if worker.process.stdout:
            worker.process.stdout.close()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _pid(tmp_path: Path, item_id: int, agent: str) -> int:
    path = tmp_path / f"pid-{item_id}-{agent}"
    return int(wait_for(lambda: path.exists() and path.read_text(), what=f"the child of {agent}"))


def test_an_idle_worker_loop_picks_up_a_new_item_without_waiting_for_the_poll(
    start: Any, child: str, wq: WorkQueue
) -> None:
    worker = start("worker-loop", "--queue", "jobs", "--poll", "30", "--exec", child)
    worker.wait_event("ready")
    item_id = wq.enqueue("jobs", "now please").item.id
    enqueued = time.monotonic()
    worker.wait_event("done", id=item_id, timeout=10)
    assert time.monotonic() - enqueued < 3.0
    assert wq.get(item_id).result == {"by": "A", "queue": "jobs"}
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait() == 0
    assert worker.process.stdout and worker.process.stdout.read() == b""


def test_sigterm_mid_item_releases_it_and_a_second_worker_completes_it(
    start: Any, child: str, wq: WorkQueue, tmp_path: Path
) -> None:
    item_id = wq.enqueue("jobs", "long job", instructions=SECRET, payload={"block_for": ["A"]}).item.id
    first = start("worker-loop", "--queue", "jobs", "--exec", child, "--grace", "0.5", "--kill-grace", "1")
    first.wait_event("claimed", id=item_id)
    pid = _pid(tmp_path, item_id, "A")
    assert SECRET.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert SECRET.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    first.process.send_signal(signal.SIGTERM)
    assert first.wait() == 0
    assert not _alive(pid), "the child was terminated before the lease went back"
    first.wait_event("released", id=item_id)
    item = wq.get(item_id)
    assert (item.status, item.attempts) == ("pending", 0)
    assert wq.history(item_id)[-1].event == "released"

    second = start("worker-pass", "--queue", "jobs", "--exec", child, agent="B")
    assert second.wait() == 0
    done = wq.get(item_id)
    assert (done.status, done.claimed_by, done.attempts, done.result) == ("done", "B", 1, {"by": "B", "queue": "jobs"})
    assert [e.event for e in wq.history(item_id)].count("done") == 1


def test_a_second_sigint_releases_at_once(start: Any, child: str, wq: WorkQueue, tmp_path: Path) -> None:
    item_id = wq.enqueue("jobs", "long job", payload={"block_for": ["A"]}).item.id
    worker = start("worker-loop", "--queue", "jobs", "--exec", child, "--grace", "60", "--kill-grace", "30")
    worker.wait_event("claimed", id=item_id)
    pid = _pid(tmp_path, item_id, "A")
    worker.process.send_signal(signal.SIGINT)
    worker.wait_event("stopping")
    assert worker.process.poll() is None, "the first SIGINT drains within the grace"
    asked = time.monotonic()
    worker.process.send_signal(signal.SIGINT)
    assert worker.wait() == 0
    assert time.monotonic() - asked < 5
    assert not _alive(pid)
    assert (wq.get(item_id).status, wq.get(item_id).attempts) == ("pending", 0)


def test_kill_9_mid_item_is_completed_by_another_worker_exactly_once_after_the_lease(
    start: Any, child: str, wq: WorkQueue, tmp_path: Path
) -> None:
    item_id = wq.enqueue("jobs", "fragile", payload={"block_for": ["A"]}).item.id
    doomed = start("worker-loop", "--queue", "jobs", "--exec", child, "--lease", "2")
    doomed.wait_event("claimed", id=item_id)
    orphan = _pid(tmp_path, item_id, "A")
    doomed.process.kill()
    doomed.wait()
    # The child dies with its worker, so it cannot finish the work a second time behind the next worker.
    wait_for(lambda: not _alive(orphan), what="the orphaned child to die")
    rescuer = start("worker-loop", "--queue", "jobs", "--exec", child, "--lease", "2", agent="B")
    rescuer.wait_event("done", id=item_id, timeout=15)
    rescuer.process.send_signal(signal.SIGTERM)
    assert rescuer.wait() == 0
    item = wq.get(item_id)
    assert (item.status, item.claimed_by, item.attempts, item.result) == ("done", "B", 2, {"by": "B", "queue": "jobs"})
    events = [e.event for e in wq.history(item_id)]
    assert events == ["enqueued", "claimed", "lease_expired", "claimed", "done"]


def test_a_pass_runs_the_exec_contract_and_prints_nothing_on_stdout(start: Any, child: str, wq: WorkQueue) -> None:
    ok = wq.enqueue("jobs", "fine", instructions=SECRET, payload={"progress": True}).item.id
    bad = wq.enqueue("jobs", "refused", payload={"fail": True}, max_attempts=1).item.id
    worker = start("worker-pass", "--queue", "jobs", "--exec", child, "--max-items", "5")
    assert worker.wait() == 0
    assert worker.process.stdout and worker.process.stdout.read() == b""
    assert wq.get(ok).result == {"by": "A", "queue": "jobs"}
    [progress] = [e for e in wq.history(ok) if e.event == "progress"]
    assert (progress.agent, progress.detail) == ("A", {"note": "from the child", "percent": 60})
    failed = wq.get(bad)
    assert (failed.status, failed.last_error) == ("failed", "exit status 4: the remote said no")
    log = worker.log.read_text()
    assert SECRET not in log
    events = [r["event"] for r in worker.records()]
    assert events[:2] == ["starting", "ready"] and events[-1] == "stopped"
    assert sorted(events[2:-1]) == ["claimed", "claimed", "done", "failed", "stopping"]


def test_a_pass_times_out_a_hung_child(start: Any, wq: WorkQueue, tmp_path: Path) -> None:
    item_id = wq.enqueue("jobs", "hangs", max_attempts=1).item.id
    worker = start("worker-pass", "--queue", "jobs", "--exec", "sleep 30", "--timeout", "0.5", "--kill-grace", "1")
    assert worker.wait() == 0
    item = wq.get(item_id)
    assert item.status == "failed" and (item.last_error or "").startswith("timeout: still running after 0.5s")


def test_worker_pass_on_an_empty_queue_exits_0_and_prints_nothing(cli: Cli) -> None:
    result = cli("workqueue", "worker-pass", "--queue", "nothing-here", "--exec", "true")
    assert (result.code, result.stdout) == (0, "")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs to run as root")
def test_running_as_root_warns_once_and_refuse_root_refuses(cli: Cli) -> None:
    warned = cli("workqueue", "worker-pass", "--queue", "q", "--exec", "true")
    assert warned.code == 0 and warned.stderr.count("running as root") == 1
    assert "dedicated" in warned.stderr
    refused = cli("workqueue", "worker-pass", "--queue", "q", "--exec", "true", "--refuse-root")
    assert refused.code == 2 and "refusing to run as root" in refused.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give exactly one of --exec, --handler or --handlers"),
        (("--exec", "true", "--handler", "x:y"), "got --exec and --handler"),
        (("--handler", "no_such_module_here:run"), "cannot import 'no_such_module_here'"),
        (("--exec", "no-such-program-xyz"), "is not an executable"),
        (("--handler", "json:dumps", "--timeout", "5"), "applies to --exec"),
    ],
)
def test_bad_configuration_exits_2_before_connecting(cli: Cli, args: tuple[str, ...], message: str) -> None:
    result = cli(
        "workqueue", "worker-loop", "--queue", "q", *args, CLAWNSOLE_DATABASE_URL="postgresql://nobody@127.0.0.1:1/x"
    )
    assert result.code == 2, result.stderr
    assert message in result.stderr


def test_handlers_list_shows_the_registry(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "ops_jobs.py").write_text(
        textwrap.dedent(
            '''
            from clawnsole.worker import handler

            @handler("health-check")
            def check(item, ctx):
                """Ping every service and report."""
            '''
        )
    )
    listed = cli("handlers", "list", "--handlers", "ops_jobs", "--json", PYTHONPATH=str(tmp_path))
    assert listed.code == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {"kind": "health-check", "handler": "ops_jobs:check", "description": "Ping every service and report."}
    ]


def test_handlers_route_items_by_kind_in_a_worker(start: Any, wq: WorkQueue, tmp_path: Path) -> None:
    (tmp_path / "kinds.py").write_text(
        "from clawnsole.worker import handler\n"
        "@handler('echo')\n"
        "def echo(item, ctx):\n"
        "    ctx.progress(note='echoing', percent=50)\n"
        "    return {'echo': item.payload}\n"
    )
    echo = wq.enqueue("jobs", "echo", kind="echo", payload={"x": 1}).item.id
    other = wq.enqueue("jobs", "other", kind="mystery").item.id
    worker = start(
        "worker-pass", "--queue", "jobs", "--handlers", "kinds", "--max-items", "2", env={"PYTHONPATH": str(tmp_path)}
    )
    assert worker.wait() == 0, worker.log.read_text()
    assert wq.get(echo).result == {"echo": {"x": 1}}
    assert (wq.get(other).status, wq.get(other).attempts) == ("failed", 1)


def test_under_systemd_it_notifies_ready_status_watchdog_and_stopping(start: Any, wq: WorkQueue) -> None:
    name = f"clawnsole-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    seen: list[str] = []

    def drain() -> list[str]:
        while True:
            try:
                seen.extend(sock.recv(4096).decode().split("\n"))
            except BlockingIOError:
                return seen

    try:
        worker = start(
            "worker-loop",
            "--queue",
            "jobs",
            "--exec",
            "true",
            env={"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1500000"},
        )
        wait_for(lambda: "READY=1" in drain() and "WATCHDOG=1" in drain(), what="READY=1 and WATCHDOG=1")
        assert any(line.startswith("STATUS=0 in flight") for line in seen)
        worker.process.send_signal(signal.SIGTERM)
        assert worker.wait() == 0
        wait_for(lambda: "STOPPING=1" in drain(), what="STOPPING=1")
        assert any(line.startswith("STATUS=stopped (signal)") for line in drain())
    finally:
        sock.close()


def test_with_scheduler_runs_the_scheduler_beside_the_loop(start: Any) -> None:
    worker = start("worker-loop", "--queue", "jobs", "--exec", "true", "--with-scheduler")
    worker.wait_event("ready")
    worker.process.send_signal(signal.SIGTERM)
    assert worker.wait() == 0, worker.log.read_text()
    assert not [r for r in worker.records() if r["event"] == "side_task_died"]


STUCK_HANDLER = """
import time


def run(item, ctx):
    while True:  # ignores ctx.cancelled: a Python thread cannot be killed
        time.sleep(0.05)
"""


def test_a_stuck_python_handler_does_not_outlive_the_release_of_its_lease(
    start: Any, wq: WorkQueue, tmp_path: Path
) -> None:
    (tmp_path / "stuck_jobs.py").write_text(STUCK_HANDLER)
    worker = start(
        "worker-loop",
        "--queue", "jobs", "--handler", "stuck_jobs:run", "--grace", "0.2", "--kill-grace", "0.2",
        env={"PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    item_id = wq.enqueue("jobs", "never returns").item.id
    worker.wait_event("claimed", id=item_id)
    worker.process.send_signal(signal.SIGTERM)
    wait_for(lambda: "released" in [e.event for e in wq.history(item_id)], 30, "the lease to be released")
    # The release is the worker's last act: once it is visible, the process (and the thread) is gone at once.
    assert worker.wait(5) == 0
    records = [r["event"] for r in worker.records()]
    assert records.index("handler_still_running") < records.index("released") < records.index("stopped")
    assert wq.get(item_id).status == "pending"
