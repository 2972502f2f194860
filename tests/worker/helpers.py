"""Shared by the worker tests: waiting on conditions with deadlines, a worker's event log as records, and a
worker process's."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from clawnsole.worker import Worker

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 15.0, what: str = "condition") -> T:
    """Poll `condition` until it returns something truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Events(io.TextIOBase):
    """A stream for EventLog(fmt="json") that keeps every record for assertions."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._text = ""

    def write(self, text: str) -> int:
        with self._lock:
            self._text += text
        return len(text)

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(line) for line in self._text.splitlines() if line.strip()]

    def named(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [r for r in self.records() if r["event"] == event and all(r.get(k) == v for k, v in fields.items())]

    def wait(self, event: str, timeout: float = 15.0, **fields: Any) -> dict[str, Any]:
        """The first record of `event` with these fields, waiting for it to be written."""
        return wait_for(lambda: self.named(event, **fields), timeout, f"a {event!r} event {fields}")[0]

    def text(self) -> str:
        with self._lock:
            return self._text


@dataclass
class Running:
    """A worker running in a thread of the test process."""

    worker: Worker
    events: Events
    thread: threading.Thread
    result: dict[str, Any] = field(default_factory=dict)

    def stop(self, immediate: bool = False, timeout: float = 30.0) -> int:
        self.worker.stop(immediate)
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not stop"
        if "error" in self.result:
            raise self.result["error"]
        return int(self.result["code"])

    def join(self, timeout: float = 30.0) -> int:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not finish"
        if "error" in self.result:
            raise self.result["error"]
        return int(self.result["code"])


@contextmanager
def running(worker: Worker, events: Events, *, wait_ready: bool = True) -> Iterator[Running]:
    """Run `worker` in a thread (stopped at the end); by default, return once it is ready."""
    result: dict[str, Any] = {}

    def body() -> None:
        try:
            result["code"] = worker.run()
        except BaseException as error:  # surfaced by stop()/join()
            result["error"] = error

    thread = threading.Thread(target=body, name="test-worker", daemon=True)
    handle = Running(worker, events, thread, result)
    thread.start()
    try:
        if wait_ready:
            wait_for(lambda: events.named("ready") or not thread.is_alive(), what="the worker to be ready")
            if not thread.is_alive():
                handle.join()
        yield handle
    finally:
        if thread.is_alive():
            worker.stop(True)
            thread.join(30)


@dataclass
class WorkerProcess:
    """A `clawnsole workqueue worker-*` process with `--log-format json`: its event log (stderr) in `log`, its
    stdout in `stdout` when kept."""

    process: subprocess.Popen[bytes]
    log: Path
    stdout: Path | None = None

    def records(self) -> list[dict[str, Any]]:
        lines = self.log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def named(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        """The records of `event` whose fields have these values."""
        return [r for r in self.records() if r["event"] == event and all(r.get(k) == v for k, v in fields.items())]

    def wait_event(self, event: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        """The first such record, waited for; fails at once when the worker exited without writing it."""

        def found() -> list[dict[str, Any]]:
            if self.process.poll() is not None and not self.named(event, **fields):
                raise AssertionError(f"worker exited ({self.process.returncode}): {self.output()[-3000:]}")
            return self.named(event, **fields)

        return wait_for(found, timeout, f"a {event!r} event {fields or ''}")[0]

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout)

    def output(self) -> str:
        """What the worker printed: its stdout (when kept), then its log."""
        out = self.stdout.read_text(errors="replace") if self.stdout is not None else ""
        return out + self.log.read_text(errors="replace")
