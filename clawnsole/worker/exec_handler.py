"""`--exec`: run a command per item. The item's JSON (instructions included) goes to the child's stdin and
nowhere else; its identity and lease go in the environment so the child can report progress itself (through
the database the worker works on; a worker over the HTTP API hands its child no database and no token).

Exit 0 is done (the last stdout line is the result when it is a JSON object, else a bounded stdout tail);
any other exit fails the attempt with a bounded stderr tail. A timeout, a lost lease or a shutdown stops the
child with SIGTERM, then SIGKILL after a grace, and always the whole process group it may have started. The
group is stopped the same way on every way out, a normal exit included: nothing the child left running in the
background outlives the item (an empty group costs one kill(2) call, no wait).

A child times its own steps with a line `clawnsole:step NAME SECONDS` on stderr (e.g. `clawnsole:step fetch
0.123`): each is recorded in the item's history as a `step` event while it runs, like `ctx.timed` in Python,
and left out of the stderr tail.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from clawnsole.errors import InvalidInput
from clawnsole.models import Item
from clawnsole.worker.context import Cancelled, Context
from clawnsole.worker.handlers import HandlerFailed
from clawnsole.worker.sdnotify import SYSTEMD_VARIABLES

# A result may be up to 1 MiB of JSON, so keep that much stdout; stderr only feeds an error message.
_STDOUT_KEEP = 1024 * 1024 + 1
_STDERR_KEEP = 64 * 1024
_TAIL_CHARS = 2000
# How often the wait re-checks the timeout and cancellation while the child is quiet.
_TICK = 0.05
# After the child exits, how long processes it left behind may hold its pipes before they are killed.
_PIPE_LINGER = 1.0


class _Tail:
    """The last `keep` bytes written to it."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._data = bytearray()

    def add(self, chunk: bytes) -> None:
        self._data += chunk
        if len(self._data) > self._keep:
            del self._data[: len(self._data) - self._keep]

    def text(self) -> str:
        return self._data.decode("utf-8", "replace")


# A child times its steps with lines like `clawnsole:step fetch 0.123` (a step name, seconds) on stderr.
STEP_LINE = re.compile(rb"clawnsole:step[ \t]+(\S+)[ \t]+([0-9]+(?:\.[0-9]+)?)[ \t]*\r?\n")
# No step line is longer; a longer line is passed on to the tail as it comes, never matched.
_STEP_LINE_MAX = 512


class _StderrTail(_Tail):
    """The stderr tail, less the step lines, which are recorded (`ctx.record_step`) as they arrive."""

    def __init__(self, keep: int, ctx: Context) -> None:
        super().__init__(keep)
        self._ctx = ctx
        self._line = bytearray()
        self._long = False  # inside a line too long to be a step line

    def add(self, chunk: bytes) -> None:
        self._line += chunk
        while (end := self._line.find(b"\n")) >= 0:
            line = bytes(self._line[: end + 1])
            del self._line[: end + 1]
            step = None if self._long else STEP_LINE.fullmatch(line)
            self._long = False
            if step is None:
                super().add(line)
            else:
                self._ctx.record_step(step[1].decode("utf-8", "replace"), float(step[2]))
        if len(self._line) > _STEP_LINE_MAX:
            super().add(bytes(self._line))
            self._line.clear()
            self._long = True

    def text(self) -> str:
        if self._line:  # a last line without a newline
            super().add(bytes(self._line))
            self._line.clear()
        return super().text()


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a pre-exec hook that makes the child get SIGKILL if the worker itself is killed (-9).

    Without it an orphaned child could finish an item that another worker has meanwhile recovered. The
    hook only calls prctl(2) through an already-loaded function: nothing that could need a lock another
    thread held at fork time.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    set_parent_death_signal = 1  # PR_SET_PDEATHSIG
    kill = int(signal.SIGKILL)

    def hook() -> None:
        prctl(set_parent_death_signal, kill, 0, 0, 0)

    return hook


def _signal_group(process: subprocess.Popen[bytes], signum: signal.Signals) -> None:
    # start_new_session made the child a process-group leader: signal everything it started, too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _group_running(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not sys.platform.startswith("linux"):
        return True
    # kill(2) also reaches zombies: a grandchild killed after its parent exited waits for init to reap it,
    # and some container inits never do. Only members that can still run matter here.
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


def describe_exit(returncode: int) -> str:
    """ "exit status N" or "killed by SIGNAME"."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


def parse_result(stdout: str) -> Any:
    """The item's result from a child's stdout: its last line if a JSON object, else the stdout tail."""
    text = stdout.rstrip()
    if not text:
        return None
    last = text.rsplit("\n", 1)[-1].strip()
    if last.startswith("{"):
        try:
            value = json.loads(last)
        except ValueError:
            value = None
        if isinstance(value, dict):
            return value
    return {"stdout": text[-_TAIL_CHARS:]}


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _TAIL_CHARS else "…" + text[-_TAIL_CHARS:]


def command_argv(command: str, *, shell: bool = False) -> list[str]:
    """The argv of an `--exec` command: shlex-split (no shell), or `/bin/sh -c command` with `shell`."""
    if not command.strip():
        raise InvalidInput("exec", "the command is empty")
    if shell:
        return ["/bin/sh", "-c", command]
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise InvalidInput("exec", f"cannot split {command!r}: {error}") from None
    if shutil.which(argv[0]) is None:
        raise InvalidInput("exec", f"{argv[0]!r} is not an executable file (nor found on PATH)")
    return argv


class ExecHandler:
    """A handler that runs `argv` (see `command_argv`) per item."""

    def __init__(
        self,
        argv: list[str],
        *,
        database_url: str | None,
        schema: str | None,
        timeout: float | None = None,
        kill_grace: float = 5.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.argv = argv
        self.timeout = timeout
        self.kill_grace = kill_grace
        source = os.environ if environ is None else environ
        # Nor the HTTP API's token (and URL): the child reports on its item through the database it is given,
        # and a secret of the worker's operator is not handed to the commands it runs. A worker over the API
        # (no `database_url`) gives its child no database either: it reports by its exit, stdout and stderr.
        withheld = (*SYSTEMD_VARIABLES, "CLAWNSOLE_TOKEN", "CLAWNSOLE_API_URL")
        self._environ = {k: v for k, v in source.items() if k not in withheld}
        if database_url is not None:
            self._environ["CLAWNSOLE_DATABASE_URL"] = database_url
        if schema is not None:
            self._environ["CLAWNSOLE_SCHEMA"] = schema
        self._preexec = _die_with_parent()

    def __call__(self, item: Item, ctx: Context) -> Any:
        env = self._environ | {
            "CLAWNSOLE_ITEM_ID": str(item.id),
            "CLAWNSOLE_QUEUE": item.queue,
            "CLAWNSOLE_AGENT": ctx.agent,
            "CLAWNSOLE_LEASE": ctx.lease_token,
        }
        stdin = json.dumps(item.to_json(), ensure_ascii=False).encode() + b"\n"
        try:
            process = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                # Its own session: a Ctrl-C on the worker's terminal reaches the worker only, which then
                # decides (grace, release) what happens to the child; and the child's group can be killed.
                start_new_session=True,
                preexec_fn=self._preexec,  # see _die_with_parent
            )
        except OSError as error:
            raise HandlerFailed(f"cannot start {self.argv[0]}: {error.strerror or error}") from None
        returncode, stdout, stderr, stopped = self._communicate(process, stdin, ctx)
        if stopped == "cancelled":
            raise Cancelled(ctx.cancel_reason or "cancelled")
        if stopped == "timeout":
            detail = _tail(stderr)
            message = f"timeout: still running after {self.timeout:g}s, terminated ({describe_exit(returncode)})"
            raise HandlerFailed(message + (f": {detail}" if detail else ""))
        if returncode != 0:
            detail = _tail(stderr)
            raise HandlerFailed(describe_exit(returncode) + (f": {detail}" if detail else ""))
        return parse_result(stdout)

    def _communicate(
        self, process: subprocess.Popen[bytes], data: bytes, ctx: Context
    ) -> tuple[int, str, str, str | None]:
        """Feed stdin, collect bounded output, enforce the timeout and cancellation; reap the child."""
        assert process.stdin and process.stdout and process.stderr
        stdout, stderr = _Tail(_STDOUT_KEEP), _StderrTail(_STDERR_KEEP, ctx)
        stdin_fd = process.stdin.fileno()
        os.set_blocking(stdin_fd, False)
        selector = selectors.DefaultSelector()
        selector.register(stdin_fd, selectors.EVENT_WRITE, None)
        selector.register(process.stdout.fileno(), selectors.EVENT_READ, stdout)
        selector.register(process.stderr.fileno(), selectors.EVENT_READ, stderr)
        view = memoryview(data)
        written = 0
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        stopped: str | None = None
        kill_at: float | None = None  # when a stop's SIGTERM turns into SIGKILL
        killed = False
        exited_at: float | None = None
        try:
            while True:
                now = time.monotonic()
                if process.poll() is not None:
                    if not selector.get_map():
                        break
                    exited_at = exited_at or now
                    if now - exited_at >= _PIPE_LINGER:
                        break  # what holds the pipes is stopped with the rest of the group below
                elif stopped is None and (ctx.cancelled.is_set() or (deadline is not None and now >= deadline)):
                    stopped = "cancelled" if ctx.cancelled.is_set() else "timeout"
                    _signal_group(process, signal.SIGKILL if ctx.kill_now else signal.SIGTERM)
                    kill_at = now + self.kill_grace
                elif kill_at is not None and not killed and (now >= kill_at or ctx.kill_now):
                    _signal_group(process, signal.SIGKILL)
                    killed = True
                if not selector.get_map():
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(_TICK)
                    continue
                for key, _ in selector.select(_TICK):
                    if key.data is not None:
                        chunk = os.read(key.fd, 65536)
                        if chunk:
                            key.data.add(chunk)
                        else:
                            selector.unregister(key.fd)
                        continue
                    try:
                        written += os.write(stdin_fd, view[written : written + 65536])
                    except BlockingIOError:
                        continue
                    except OSError:  # the child closed its stdin early: it did not want the rest
                        written = len(data)
                    if written >= len(data):
                        selector.unregister(stdin_fd)
                        process.stdin.close()
        finally:
            selector.close()
            for stream in (process.stdin, process.stdout, process.stderr):
                with contextlib.suppress(OSError):
                    stream.close()
            # Every way out: a normal exit, a failure, a timeout, a cancel, an unexpected error.
            self._stop_group(process, ctx, kill_at)
        return process.returncode, stdout.text(), stderr.text(), stopped

    def _stop_group(self, process: subprocess.Popen[bytes], ctx: Context, kill_at: float | None) -> None:
        """Leave nothing of the child's process group running, and reap the child.

        SIGTERM first (unless a stop already sent it: then its SIGKILL time, `kill_at`, stands), SIGKILL once
        the grace is over. Returns at once when the group is already empty, the common case.
        """
        process.poll()  # reap an exited child first: its zombie would count as a member of the group
        if _group_running(process.pid):
            if kill_at is None:
                _signal_group(process, signal.SIGKILL if ctx.kill_now else signal.SIGTERM)
                kill_at = time.monotonic() + self.kill_grace
            while time.monotonic() < kill_at and not ctx.kill_now:
                if process.poll() is None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(_TICK)
                elif _group_running(process.pid):
                    time.sleep(_TICK)
                else:
                    break
            # The leader's pid stays the group's id while any member is left, so this reaches no stranger.
            if _group_running(process.pid):
                _signal_group(process, signal.SIGKILL)
        process.wait()
