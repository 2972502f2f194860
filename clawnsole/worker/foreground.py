"""One job run now, in the foreground, recorded as an item like any other (`clawnsole handlers run`).

The item is enqueued and claimed by id in one transaction, so no worker listening on its queue can take it
first; the handler runs in the calling thread (Ctrl-C reaches it as KeyboardInterrupt), a heartbeat thread
renews the lease every third of it, and the outcome is written through the same fenced operations a worker
uses: `done` with the result, or `fail` for good (no retry: the person who ran it sees the error now, and
`clawnsole dlq replay --ids …` runs it again). Interrupted, the lease is released without charging the
attempt, and KeyboardInterrupt goes on up.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clawnsole import ops, validate
from clawnsole.errors import Conflict, DatabaseError, LeaseLost, NotFound
from clawnsole.models import Item
from clawnsole.ops import Op, Step
from clawnsole.queue import WorkQueue
from clawnsole.worker import storable
from clawnsole.worker.context import Cancelled, Context
from clawnsole.worker.handlers import Handler, HandlerFailed

DEFAULT_QUEUE = "manual"

# Called with (note, percent) after each progress report the handler makes.
ProgressHook = Callable[[str | None, int | None], None]


@dataclass(frozen=True)
class ForegroundRun:
    """The outcome of a foreground run: the item as recorded, and the handler's result or error."""

    item: Item
    ok: bool
    result: Any
    error: str | None
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: the item's id, queue, kind and status, with the result or the error."""
        return {
            "id": self.item.id,
            "queue": self.item.queue,
            "kind": self.item.kind,
            "status": self.item.status,
            "ok": self.ok,
            "result": self.result,
            "error": self.error,
            "attempts": self.item.attempts,
            "seconds": round(self.seconds, 3),
        }


def claim_by_id(item_id: int, *, agent: str, lease: float | str | None = None) -> Op[Item]:
    """Claim one pending item by id (due or not); Conflict when it is not pending."""
    rows = yield Step(
        "item_claim_by_id",
        {
            "id": validate.item_id(item_id),
            "agent": validate.agent(agent),
            "lease": None if lease is None else validate.duration(lease, "lease"),
        },
    )
    if rows:
        return Item.from_row(rows[0])
    current = yield Step("item_get", {"id": item_id})
    if not current:
        raise NotFound(f"no item with id {item_id}")
    raise Conflict(f"item {item_id} is {current[0]['status']}; only a pending item can be claimed by id")


def enqueue_and_claim(queue: str, title: str, *, kind: str, payload: Any, agent: str, lease: float | str) -> Op[Item]:
    """Add one item and claim it at once (run in one transaction: no one else sees it pending)."""
    enqueued = yield from ops.enqueue(
        queue, title, agent=agent, kind=kind, payload=payload, max_attempts=1, lease=lease
    )
    return (yield from claim_by_id(enqueued.item.id, agent=agent, lease=lease))


def run_now(
    wq: WorkQueue,
    handler: Handler,
    *,
    kind: str,
    payload: Any = None,
    queue: str = DEFAULT_QUEUE,
    title: str | None = None,
    lease: float | str = 300.0,
    on_progress: ProgressHook | None = None,
) -> ForegroundRun:
    """Enqueue an item of `kind`, claim it, run `handler` on it here and record the outcome.

    `wq` should be over a pool (a URL): the heartbeat renews the lease from a thread of its own. Raises
    LeaseLost when the lease was lost while the handler ran (nothing is recorded then), and re-raises
    KeyboardInterrupt after releasing the lease without charging the attempt.
    """
    seconds = validate.duration(lease, "lease")
    item = wq.run(enqueue_and_claim(queue, title or kind, kind=kind, payload=payload, agent=wq.agent, lease=seconds))
    token = str(item.lease_token)

    def progress(ctx: Context, note: str | None, percent: int | None) -> bool:
        try:
            wq.progress(
                item.id,
                agent=wq.agent,
                lease_token=token,
                note=None if note is None else storable.text(note),
                percent=percent,
            )
        except LeaseLost:
            ctx.cancel("lease lost")
            raise
        except DatabaseError:
            return False
        if on_progress is not None:
            on_progress(note, percent)
        return True

    def record_step(ctx: Context, step: str, seconds: float, error: str | None) -> bool:
        # `ctx.timed` never raises: a step that could not be recorded is only not recorded.
        from clawnsole.errors import ClawnsoleError
        from clawnsole.stats.ops import record_step as step_op

        try:
            return wq.run_steps(step_op(item.id, lease_token=token, step=step, seconds=seconds, error=error))
        except ClawnsoleError:
            return False

    ctx = Context(item, token, wq.agent, progress, record_step=record_step)
    beat = _Heartbeat(wq, item.id, token, interval=seconds / 3, ctx=ctx)
    started = time.monotonic()
    beat.start()
    try:
        try:
            result, error = _call(handler, item, ctx), None
        except _Failed as failed:
            result, error = None, failed.message
        finally:
            beat.stop()
        if ctx.cancelled.is_set():
            raise LeaseLost(f"lease lost: item {item.id} was taken back while its handler ran; nothing recorded")
        if error is None:
            final = wq.done(item.id, agent=wq.agent, lease_token=token, result=result)
        else:
            final = wq.fail(item.id, error, agent=wq.agent, lease_token=token, retry=False)
    except KeyboardInterrupt:
        ctx.cancel("interrupted")
        beat.stop()
        # The attempt is not charged; a write that raced the interrupt and committed makes this a no-op.
        wq.run_steps(ops.release([(item.id, token)], agent=wq.agent, reason="interrupted"))
        raise
    return ForegroundRun(final, error is None, result, error, time.monotonic() - started)


class _Failed(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _call(handler: Handler, item: Item, ctx: Context) -> Any:
    """The handler's result, made storable; _Failed with the message the item is failed with."""
    try:
        result = handler(item, ctx)
    except HandlerFailed as failure:
        raise _Failed(storable.error(failure.message)) from None
    except (Cancelled, LeaseLost) as error:
        if ctx.cancelled.is_set():
            return None  # the lease was lost: the caller says so and records nothing
        raise _Failed(storable.error(f"{type(error).__name__}: {error}")) from None
    except Exception as error:
        name = type(error).__name__
        raise _Failed(storable.error(f"{name}: {error}" if str(error) else name)) from None
    if result is None:
        return None
    try:
        dumped = json.dumps(result)
    except (TypeError, ValueError, RecursionError) as error:
        raise _Failed(f"the handler's result is not JSON-serialisable: {error}") from None
    if len(dumped) > validate.MAX_PAYLOAD_BYTES:
        raise _Failed("the handler's result is larger than 1 MiB")
    return storable.json_value(result) if storable.needs_cleaning(dumped) else result


class _Heartbeat:
    """Renews one lease every `interval` seconds from a thread; a lease found gone cancels the handler."""

    def __init__(self, wq: WorkQueue, item_id: int, token: str, *, interval: float, ctx: Context) -> None:
        self._wq = wq
        self._lease = (item_id, token)
        self._interval = interval
        self._ctx = ctx
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="clawnsole-foreground-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                held = self._wq.run_steps(ops.heartbeat([self._lease], agent=self._wq.agent))
            except DatabaseError:
                continue  # the next beat tries again; the lease lasts three of them
            if self._lease not in held:
                self._ctx.cancel("lease lost")
                return
