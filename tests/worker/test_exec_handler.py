"""The `--exec` contract with real child processes: stdin JSON, environment, result capture, failure,
timeout and termination — and instructions never in the child's argv or environment."""

from __future__ import annotations

import json
import os
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from clawnsole import WorkQueue
from clawnsole.models import Item
from clawnsole.worker import Cancelled, Context, HandlerFailed
from clawnsole.worker.exec_handler import ExecHandler, command_argv, parse_result

from .helpers import wait_for

SECRET = "do-not-leak-7f3a9c"


def _claimed(wq: WorkQueue, **options: Any) -> Item:
    wq.enqueue("jobs", "a job", instructions=f"use the token {SECRET}", payload={"n": 1}, **options)
    [item] = wq.claim_next("jobs", agent="w1")
    return item


def _ctx(item: Item) -> Context:
    return Context(item, str(item.lease_token), "w1", lambda ctx, note, percent: True)


def _script(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "child.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def _handler(argv: list[str], **options: Any) -> ExecHandler:
    env = dict(os.environ) | {"NOTIFY_SOCKET": "@systemd-only", "WATCHDOG_USEC": "1000000"}
    return ExecHandler(argv, database_url="postgresql://db.example/q", schema="clawnsole", environ=env, **options)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_child_gets_item_json_on_stdin_and_identity_in_env_but_never_instructions(
    wq: WorkQueue, tmp_path: Path
) -> None:
    argv = _script(
        tmp_path,
        f"""
        import json, os, sys, time
        item = json.load(sys.stdin)
        out = {str(tmp_path)!r}
        json.dump({{"item": item, "env": dict(os.environ)}}, open(out + "/seen.json", "w"))
        open(out + "/pid", "w").write(str(os.getpid()))
        deadline = time.monotonic() + 30
        while not os.path.exists(out + "/go") and time.monotonic() < deadline:
            time.sleep(0.01)
        print("working...")
        print(json.dumps({{"ok": True, "id": item["id"]}}))
        """,
    )
    item = _claimed(wq)
    outcome: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: outcome.setdefault("result", _handler(argv)(item, _ctx(item))))
    thread.start()
    pid = int(wait_for(lambda: (tmp_path / "pid").exists() and (tmp_path / "pid").read_text(), what="the child"))
    # Read the live child's argv and environment the way another user of the host could.
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    (tmp_path / "go").touch()
    thread.join(30)
    assert SECRET.encode() not in cmdline and SECRET.encode() not in environ
    env = dict(entry.split(b"=", 1) for entry in environ.split(b"\0") if b"=" in entry)
    assert env[b"CLAWNSOLE_ITEM_ID"] == str(item.id).encode()
    assert env[b"CLAWNSOLE_QUEUE"] == b"jobs" and env[b"CLAWNSOLE_AGENT"] == b"w1"
    assert env[b"CLAWNSOLE_LEASE"] == str(item.lease_token).encode()
    assert env[b"CLAWNSOLE_DATABASE_URL"] == b"postgresql://db.example/q"
    assert b"NOTIFY_SOCKET" not in env and b"WATCHDOG_USEC" not in env
    seen = json.loads((tmp_path / "seen.json").read_text())
    assert seen["item"]["instructions"] == f"use the token {SECRET}"
    assert seen["item"]["id"] == item.id and seen["item"]["payload"] == {"n": 1}
    assert seen["item"]["lease_token"] == str(item.lease_token)
    assert outcome["result"] == {"ok": True, "id": item.id}


def test_a_large_item_reaches_a_child_that_reads_it_late_or_not_at_all(wq: WorkQueue, tmp_path: Path) -> None:
    wq.enqueue("jobs", "big", instructions="x" * (1024 * 1024 - 10))
    [item] = wq.claim_next("jobs", agent="w1")
    reader = _script(tmp_path, "import sys, time\ntime.sleep(0.2)\nprint(len(sys.stdin.read()) > 1000000)\n")
    assert _handler(reader)(item, _ctx(item)) == {"stdout": "True"}
    ignorer = [sys.executable, "-c", 'print(\'{"ignored": "stdin"}\')']
    assert _handler(ignorer)(item, _ctx(item)) == {"ignored": "stdin"}


@pytest.mark.parametrize(
    ("stdout", "result"),
    [
        ('log line\n{"a": 1}\n', {"a": 1}),
        ('{"a": 1}\nlast words\n', {"stdout": '{"a": 1}\nlast words'}),
        ("[1, 2]\n", {"stdout": "[1, 2]"}),
        ("", None),
        ("\n\n", None),
        ("x" * 5000, {"stdout": "x" * 2000}),
    ],
)
def test_result_is_the_last_stdout_line_when_a_json_object_else_a_bounded_tail(stdout: str, result: Any) -> None:
    assert parse_result(stdout) == result


def test_non_zero_exit_fails_with_a_bounded_stderr_tail(wq: WorkQueue, tmp_path: Path) -> None:
    argv = _script(
        tmp_path,
        "import sys\nsys.stderr.write('noise\\n' * 2000 + 'the disk is full\\n')\nsys.exit(3)\n",
    )
    item = _claimed(wq)
    with pytest.raises(HandlerFailed) as failure:
        _handler(argv)(item, _ctx(item))
    assert failure.value.message.startswith("exit status 3: …")
    assert failure.value.message.endswith("the disk is full") and len(failure.value.message) < 2100


def test_timeout_terminates_the_child_then_kills_it_after_the_grace(wq: WorkQueue, tmp_path: Path) -> None:
    argv = _script(
        tmp_path,
        f"""
        import os, signal, time
        signal.signal(signal.SIGTERM, lambda *a: open({str(tmp_path)!r} + "/term", "w").close())
        open({str(tmp_path)!r} + "/pid", "w").write(str(os.getpid()))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            time.sleep(0.01)
        """,
    )
    item = _claimed(wq)
    started = time.monotonic()
    with pytest.raises(HandlerFailed, match=r"^timeout: still running after 0.5s, terminated \(killed by SIGKILL\)"):
        _handler(argv, timeout=0.5, kill_grace=0.5)(item, _ctx(item))
    assert 0.9 < time.monotonic() - started < 10
    assert (tmp_path / "term").exists(), "the child got SIGTERM first"
    assert not _alive(int((tmp_path / "pid").read_text()))


def test_cancelling_stops_the_child_and_everything_it_started(wq: WorkQueue, tmp_path: Path) -> None:
    # A shell that starts a background grandchild: both are in the child's process group.
    argv = command_argv(f"sleep 60 & echo $! > {tmp_path}/grandchild; echo $$ > {tmp_path}/pid; wait", shell=True)
    item = _claimed(wq)
    ctx = _ctx(item)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            _handler(argv, kill_grace=5)(item, ctx)
        except Cancelled as stopped:
            outcome["cancelled"] = str(stopped)

    thread = threading.Thread(target=run)
    thread.start()
    wait_for(lambda: (tmp_path / "grandchild").exists() and (tmp_path / "grandchild").read_text().strip())
    grandchild = int((tmp_path / "grandchild").read_text())
    ctx.cancel("lease lost")
    thread.join(10)
    assert outcome == {"cancelled": "lease lost"}
    wait_for(lambda: not _alive(grandchild), what="the grandchild to be killed")


def test_command_argv_splits_without_a_shell_and_checks_the_executable() -> None:
    assert command_argv("echo 'two words' three") == ["echo", "two words", "three"]
    assert command_argv("echo $HOME | tr a b", shell=True) == ["/bin/sh", "-c", "echo $HOME | tr a b"]
    from clawnsole.errors import InvalidInput

    for bad in ("", "   ", "'unbalanced", "no-such-program-xyz --flag"):
        with pytest.raises(InvalidInput):
            command_argv(bad)


def _grandchild_command(tmp_path: Path, *, exit_code: int, ignore_term: bool = False) -> list[str]:
    """A shell that starts a background grandchild holding none of its pipes, records its pid, then exits."""
    trap = "trap '' TERM; " if ignore_term else ""
    background = f"({trap}exec sleep 300) </dev/null >/dev/null 2>&1 &"
    return command_argv(f'{background} echo $! > {tmp_path}/grandchild; echo "{{}}"; exit {exit_code}', shell=True)


def _kill_leftover(pid_file: Path) -> None:
    # Only a test that already failed leaves one: do not let it outlive the test run.
    if pid_file.exists() and _alive(pid := int(pid_file.read_text())):
        os.kill(pid, 9)


@pytest.mark.parametrize("exit_code", [0, 4])
def test_a_grandchild_left_running_by_a_child_that_exits_is_stopped_when_the_item_finishes(
    wq: WorkQueue, tmp_path: Path, exit_code: int
) -> None:
    item = _claimed(wq)
    started = time.monotonic()
    try:
        if exit_code == 0:
            assert _handler(_grandchild_command(tmp_path, exit_code=0), kill_grace=30)(item, _ctx(item)) == {}
        else:
            with pytest.raises(HandlerFailed, match=r"^exit status 4"):
                _handler(_grandchild_command(tmp_path, exit_code=4), kill_grace=30)(item, _ctx(item))
        grandchild = int((tmp_path / "grandchild").read_text())
        wait_for(lambda: not _alive(grandchild), timeout=10, what="the grandchild to be stopped")
        # It died of the SIGTERM, long before the 30 s grace would have turned it into a SIGKILL.
        assert time.monotonic() - started < 20
    finally:
        _kill_leftover(tmp_path / "grandchild")


def test_a_grandchild_that_ignores_sigterm_is_killed_after_the_grace(wq: WorkQueue, tmp_path: Path) -> None:
    item = _claimed(wq)
    try:
        _handler(_grandchild_command(tmp_path, exit_code=0, ignore_term=True), kill_grace=0.5)(item, _ctx(item))
        grandchild = int((tmp_path / "grandchild").read_text())
        wait_for(lambda: not _alive(grandchild), timeout=10, what="the grandchild to be killed")
    finally:
        _kill_leftover(tmp_path / "grandchild")


def test_a_child_that_leaves_nothing_behind_is_not_held_up_by_the_grace(wq: WorkQueue) -> None:
    item = _claimed(wq)
    started = time.monotonic()
    assert _handler([sys.executable, "-c", "print('{\"quick\": 1}')"], kill_grace=60)(item, _ctx(item)) == {"quick": 1}
    # Far below the 60 s grace: an empty process group is not waited on at all.
    assert time.monotonic() - started < 20


def test_a_timeout_kills_a_grandchild_that_ignores_sigterm_even_after_the_child_died(
    wq: WorkQueue, tmp_path: Path
) -> None:
    background = "(trap '' TERM; exec sleep 300) </dev/null >/dev/null 2>&1 &"
    argv = command_argv(f"{background} echo $! > {tmp_path}/grandchild; sleep 60", shell=True)
    item = _claimed(wq)
    try:
        with pytest.raises(HandlerFailed, match=r"^timeout: still running after 0\.3s"):
            _handler(argv, timeout=0.3, kill_grace=0.5)(item, _ctx(item))
        grandchild = int((tmp_path / "grandchild").read_text())
        wait_for(lambda: not _alive(grandchild), timeout=10, what="the grandchild to be killed")
    finally:
        _kill_leftover(tmp_path / "grandchild")
