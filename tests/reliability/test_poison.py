"""Poison output: NUL bytes, invalid UTF-8 and 10 MiB on an `--exec` child's stdout and stderr and in Python
results. The worker lives, the poisoned items end with a clear outcome, and every other item finishes."""

from __future__ import annotations

import sys
import textwrap
from typing import Any

from clawnsole import WorkQueue
from clawnsole.models import Item
from clawnsole.worker import Context, Worker, WorkerOptions
from clawnsole.worker.eventlog import EventLog
from clawnsole.worker.exec_handler import ExecHandler
from tests.worker.helpers import Events, running, wait_for

TEN_MIB = 10 * 1024 * 1024

CHILD = textwrap.dedent(
    """
    import json, sys
    item = json.load(sys.stdin)
    poison = item["payload"]["poison"]
    out, err = sys.stdout.buffer, sys.stderr.buffer
    if poison == "nul-stdout":
        out.write(b"chatter\\x00more\\n" + json.dumps({"said": "a\\u0000b"}).encode() + b"\\n")
    elif poison == "nul-stderr":
        err.write(b"broken \\x00 pipe\\n"); sys.exit(3)
    elif poison == "bad-utf8-stdout":
        out.write(b"\\xff\\xfe\\xc3(\\n")
    elif poison == "bad-utf8-stderr":
        err.write(b"\\xff\\xfe\\xc3( failed\\n"); sys.exit(3)
    elif poison == "huge-stdout":
        for _ in range(10):
            out.write(b"x" * (1024 * 1024))
        out.write(b"\\n")
    elif poison == "huge-stderr":
        for _ in range(10):
            err.write(b"\\x00" * (1024 * 1024))
        sys.exit(3)
    else:
        print(json.dumps({"ok": item["id"]}))
    """
)


def _worker(db_url: str, handler: Any, events: Events) -> Worker:
    options = WorkerOptions(queues=("poison",), agent="p1", concurrency=4, lease=30.0, poll=30.0)
    return Worker(db_url, handler, options, log=EventLog(events, fmt="json", agent="p1"))


def _drain(db_url: str, wq: WorkQueue, handler: Any, kinds: list[str]) -> dict[str, Item]:
    ids = [wq.enqueue("poison", kind, payload={"poison": kind}, max_attempts=1).item.id for kind in kinds]
    events = Events()
    with running(_worker(db_url, handler, events), events) as worker:
        wait_for(lambda: all(wq.get(i).status in ("done", "failed") for i in ids), 60, "every item to finish")
        assert worker.thread.is_alive(), "the worker lives"
    assert not events.named("side_task_died") and not events.named("not_recorded")
    return {f"{kind}#{n}": wq.get(i) for n, (kind, i) in enumerate(zip(kinds, ids, strict=True))}


def test_poisoned_exec_output_is_stored_clean_and_the_other_items_finish(db_url: str, wq: WorkQueue) -> None:
    poisons = ["nul-stdout", "nul-stderr", "bad-utf8-stdout", "bad-utf8-stderr", "huge-stdout", "huge-stderr"]
    handler = ExecHandler([sys.executable, "-c", CHILD], database_url=db_url, schema="clawnsole")
    items = _drain(db_url, wq, handler, [*poisons, *["plain"] * 10])
    by = {key.split("#")[0]: item for key, item in items.items() if not key.startswith("plain")}
    assert by["nul-stdout"].status == "done" and by["nul-stdout"].result == {"said": "a\ufffdb"}
    for name in ("nul-stderr", "bad-utf8-stderr", "huge-stderr"):
        item = by[name]
        assert item.status == "failed" and item.last_error is not None and "\x00" not in item.last_error, name
        assert len(item.last_error) < 10_000, "an error keeps a bounded tail"
    assert by["bad-utf8-stdout"].status == "done" and "\ufffd" in str(by["bad-utf8-stdout"].result)
    assert by["huge-stdout"].status == "done" and len(str(by["huge-stdout"].result)) < 10_000
    plain = [item for key, item in items.items() if key.startswith("plain")]
    assert all(item.status == "done" and item.result == {"ok": item.id} for item in plain)


def test_poisoned_python_results_fail_or_store_clean_and_the_other_items_finish(db_url: str, wq: WorkQueue) -> None:
    def handler(item: Item, ctx: Context) -> Any:
        poison = item.payload["poison"]
        if poison == "nul":
            return {"text": "a\x00b" * 1000}
        if poison == "surrogates":
            return {"text": b"\xff\xfe".decode("utf-8", "surrogateescape")}
        if poison == "huge":
            return {"blob": "x" * TEN_MIB}
        if poison == "huge-error":
            raise RuntimeError("\x00" * TEN_MIB)
        return {"ok": item.id}

    items = _drain(db_url, wq, handler, ["nul", "surrogates", "huge", "huge-error", *["plain"] * 10])
    by = {key.split("#")[0]: item for key, item in items.items() if not key.startswith("plain")}
    assert by["nul"].result == {"text": "a\ufffdb" * 1000}
    assert by["surrogates"].result == {"text": "\ufffd\ufffd"}
    assert by["huge"].status == "failed" and by["huge"].last_error == "the handler's result is larger than 1 MiB"
    huge_error = by["huge-error"]
    assert huge_error.status == "failed" and huge_error.last_error is not None
    assert huge_error.last_error.startswith("RuntimeError: \ufffd") and len(huge_error.last_error) <= 64 * 1024
    plain = [item for key, item in items.items() if key.startswith("plain")]
    assert all(item.status == "done" and item.result == {"ok": item.id} for item in plain)
