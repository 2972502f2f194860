"""Handlers timing their steps: `ctx.timed` in Python handlers and `clawnsole:step` lines from `--exec` children
land in the item's history as `step` events, fenced by the lease, and never fail the handler."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from clawnsole import WorkQueue
from clawnsole.errors import InvalidInput
from clawnsole.models import Item
from clawnsole.worker import Context, Handler, Worker, WorkerOptions
from clawnsole.worker.context import StepRecorder
from clawnsole.worker.eventlog import EventLog
from clawnsole.worker.exec_handler import ExecHandler
from clawnsole.worker.session import Session

from .helpers import Events, running, wait_for


def _run_one(db_url: str, wq: WorkQueue, handler: Handler, events: Events, **enqueue: Any) -> Item:
    """Enqueue one item, run it through a real worker until it is finished, and return it."""
    item_id = wq.enqueue("jobs", "timed", **enqueue).item.id
    options = WorkerOptions(queues=("jobs",), agent="w1", lease=30.0, grace=5.0, kill_grace=1.0)
    worker = Worker(db_url, handler, options, log=EventLog(events, fmt="json", agent="w1"))
    with running(worker, events):
        wait_for(lambda: wq.get(item_id).status in ("done", "failed"), what="the item to finish")
    return wq.get(item_id)


def _steps(wq: WorkQueue, item_id: int) -> list[dict[str, Any]]:
    return [e.detail or {} for e in wq.history(item_id) if e.event == "step"]


def test_a_python_handler_times_its_steps_into_the_history_even_a_step_that_raised(db_url: str, wq: WorkQueue) -> None:
    def handler(item: Item, ctx: Context) -> dict[str, Any]:
        with ctx.timed("fetch") as fetch:
            ctx.cancelled.wait(0.05)  # the step's work: 50 ms
        with ctx.timed("parse"):
            pass
        try:
            with ctx.timed("enrich"):
                raise ValueError("no such record")
        except ValueError:
            pass
        return {"fetch_seconds": fetch.seconds}

    item = _run_one(db_url, wq, handler, Events())
    assert item.status == "done"
    fetch, parse, enrich = _steps(wq, item.id)
    assert (fetch["step"], fetch["attempt"], parse["step"], enrich["step"]) == ("fetch", 1, "parse", "enrich")
    assert fetch["seconds"] >= 0.05 and fetch["seconds"] == pytest.approx(item.result["fetch_seconds"], abs=1e-5)
    assert enrich["error"] == "ValueError" and "error" not in fetch
    # The steps come between the claim and the outcome, in the order they ended.
    assert [e.event for e in wq.history(item.id)] == ["enqueued", "claimed", "step", "step", "step", "done"]


def _child(tmp_path: Path, body: str) -> list[str]:
    path = tmp_path / "child.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def test_an_exec_child_times_its_steps_with_stderr_lines_kept_out_of_its_error(
    db_url: str, wq: WorkQueue, tmp_path: Path
) -> None:
    argv = _child(
        tmp_path,
        """
        import sys
        sys.stderr.write("clawnsole:step fetch 0.25\\nwarming up\\n")
        sys.stderr.flush()
        sys.stderr.write("clawnsole:step parse 1.5\\n" + "x" * 600 + " clawnsole:step fake 9\\n")
        sys.stderr.write("the upstream said no\\n")
        sys.exit(3)
        """,
    )
    handler = ExecHandler(argv, database_url=db_url, schema="clawnsole", timeout=30)
    item = _run_one(db_url, wq, handler, Events(), max_attempts=1)
    assert item.status == "failed"
    assert [(s["step"], s["seconds"], s["attempt"]) for s in _steps(wq, item.id)] == [
        ("fetch", 0.25, 1),
        ("parse", 1.5, 1),
    ]
    assert item.last_error is not None
    assert "the upstream said no" in item.last_error and "warming up" in item.last_error
    assert "clawnsole:step fetch" not in item.last_error and "clawnsole:step fake 9" in item.last_error


def test_a_step_that_cannot_be_recorded_is_logged_and_the_handler_goes_on(wq: WorkQueue) -> None:
    wq.enqueue("jobs", "t")
    [item] = wq.claim_next("jobs", agent="w1")
    events = Events()
    unreachable = Session("postgresql://clawnsole@127.0.0.1:1/nowhere?connect_timeout=2", "clawnsole", "w1")
    ctx = Context(item, str(item.lease_token), "w1", lambda *_: True,
                  record_step=StepRecorder(unreachable, EventLog(events, fmt="json", agent="w1")))  # fmt: skip
    with ctx.timed("fetch") as timer:
        finished_block = True
    assert finished_block and timer.seconds is not None
    [logged] = events.named("step_not_recorded", id=item.id, step="fetch")
    assert "cannot connect" in logged["error"]
    assert [e.event for e in wq.history(item.id)] == ["enqueued", "claimed"]


def test_a_step_after_the_lease_is_gone_is_not_recorded(db_url: str, wq: WorkQueue) -> None:
    wq.enqueue("jobs", "t")
    [item] = wq.claim_next("jobs", agent="w1")
    events = Events()
    session = Session(db_url, "clawnsole", "w1")
    try:
        ctx = Context(item, str(item.lease_token), "w1", lambda *_: True,
                      record_step=StepRecorder(session, EventLog(events, fmt="json", agent="w1")))  # fmt: skip
        wq.done(item.id, lease_token=str(item.lease_token))
        assert not ctx.record_step("late", 0.5)
    finally:
        session.close()
    assert events.named("step_not_recorded", step="late")[0]["error"] == "the lease is gone"
    assert "step" not in [e.event for e in wq.history(item.id)]


def test_a_bad_step_name_is_the_handlers_bug_and_raises_at_once(wq: WorkQueue) -> None:
    wq.enqueue("jobs", "t")
    [item] = wq.claim_next("jobs", agent="w1")
    ctx = Context(item, str(item.lease_token), "w1", lambda *_: True)
    with pytest.raises(InvalidInput) as raised, ctx.timed("two words"):
        pass
    assert raised.value.field == "step"
