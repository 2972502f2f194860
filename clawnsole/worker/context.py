"""What a handler receives besides its item: progress reporting, step timing and the signal to stop."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from clawnsole.models import Item

if TYPE_CHECKING:
    from clawnsole.worker.eventlog import EventLog
    from clawnsole.worker.session import Session

ProgressFn = Callable[["Context", "str | None", "int | None"], bool]
# (ctx, step name, seconds, the error type when the step raised) -> whether the step was recorded.
StepFn = Callable[["Context", str, float, "str | None"], bool]


class Cancelled(Exception):
    """The handler was told to stop (lease lost, timeout or shutdown); its outcome is not recorded."""


@dataclass
class StepTimer:
    """What `ctx.timed` yields: the step's name, and its duration in seconds once the block has ended."""

    step: str
    seconds: float | None = None


# Makes a context's `cancelled` event on first use: the handler and the worker may ask at the same time.
_MAKING = threading.Lock()


class Context:
    """Per-item handle given to a handler as its second argument.

    `cancelled` is set when the worker no longer wants the outcome: the lease was lost or the worker is
    shutting down. Python threads cannot be killed, so long handlers should check it (or wait on it instead
    of sleeping); `--exec` children are terminated for them.
    """

    __slots__ = (
        "_cancelled",
        "_progress",
        "_record_step",
        "agent",
        "cancel_reason",
        "item",
        "kill_now",
        "lease_token",
    )

    def __init__(
        self, item: Item, lease_token: str, agent: str, progress: ProgressFn, *, record_step: StepFn | None = None
    ) -> None:
        self.item = item
        self.lease_token = lease_token
        self.agent = agent
        # Made on first use: most handlers never look, and an Event (a Condition and its lock) is a tenth of
        # the worker's own cost per item.
        self._cancelled: threading.Event | None = None
        self.cancel_reason: str | None = None
        # True when the worker cannot wait for a polite SIGTERM (a second Ctrl-C): children get SIGKILL.
        self.kill_now = False
        self._progress = progress
        self._record_step = record_step

    @property
    def cancelled(self) -> threading.Event:
        """Set when the worker no longer wants the outcome (wait on it instead of sleeping)."""
        event = self._cancelled
        if event is None:
            with _MAKING:
                if self._cancelled is None:
                    self._cancelled = threading.Event()
                event = self._cancelled
        return event

    def is_cancelled(self) -> bool:
        """Whether `cancelled` is set (without making the event)."""
        event = self._cancelled
        return event is not None and event.is_set()

    def progress(self, note: str | None = None, percent: int | None = None) -> bool:
        """Record a progress note/percent and renew the lease; False when the database is unreachable.

        Raises LeaseLost when the item is no longer ours (then stop: the outcome will not be recorded).
        """
        return self._progress(self, note, percent)

    @contextmanager
    def timed(self, step: str) -> Iterator[StepTimer]:
        """Time the block as the handler step `step`: a `step` event {"step", "seconds", "attempt"} lands in
        the item's history (`workqueue stats --breakdown` sums them). Recorded when the block raises too (with
        "error": the exception's type), and never raises itself: a step that could not be recorded is logged.

            with ctx.timed("fetch"):
                pages = fetch_all()
        """
        from clawnsole.stats.ops import step_name

        timer = StepTimer(step_name(step))  # a bad name is the handler's bug: say so at once
        error: str | None = None
        started = time.perf_counter()
        try:
            yield timer
        except BaseException as failure:
            error = type(failure).__name__
            raise
        finally:
            timer.seconds = time.perf_counter() - started
            self.record_step(step, timer.seconds, error)

    def record_step(self, step: str, seconds: float, error: str | None = None) -> bool:
        """Record that the handler spent `seconds` in `step` (what `timed` does for a block); False when it
        was not recorded (no database, the lease gone, a bad name). Never raises."""
        if self._record_step is None:
            return False
        return self._record_step(self, step, seconds, error)

    def raise_if_cancelled(self) -> None:
        """Raise Cancelled when the worker has asked this handler to stop."""
        if self.is_cancelled():
            raise Cancelled(self.cancel_reason or "cancelled")

    def cancel(self, reason: str, *, kill_now: bool = False) -> None:
        """Ask the handler to stop (the first reason given wins)."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.kill_now = self.kill_now or kill_now
        self.cancelled.set()


class StepWriter(Protocol):
    """Where steps are written: a worker's source (`clawnsole.worker.source`)."""

    def record_step(
        self, item_id: int, *, lease_token: str, step: str, seconds: float, error: str | None = None
    ) -> bool: ...


class StepRecorder:
    """Records handlers' steps through a worker session (the side session progress uses) or the worker's
    source, fenced by the lease token; an outage, a bad name or a lost lease is logged (`step_not_recorded`),
    never raised."""

    def __init__(self, target: Session | StepWriter, log: EventLog) -> None:
        self._target = target
        self._log = log

    def _write(self, item_id: int, lease_token: str, step: str, seconds: float, error: str | None) -> bool:
        from clawnsole.worker.session import Session

        if isinstance(self._target, Session):
            from clawnsole.stats.ops import record_step

            op = record_step(item_id, lease_token=lease_token, step=step, seconds=seconds, error=error)
            return self._target.run(op)
        return self._target.record_step(item_id, lease_token=lease_token, step=step, seconds=seconds, error=error)

    def __call__(self, ctx: Context, step: str, seconds: float, error: str | None) -> bool:
        from clawnsole.errors import ClawnsoleError

        item = ctx.item
        try:
            recorded = self._write(item.id, ctx.lease_token, step, seconds, error)
        except ClawnsoleError as failure:
            self._log.emit("step_not_recorded", id=item.id, queue=item.queue, step=step, error=str(failure))
            return False
        if not recorded:
            self._log.emit("step_not_recorded", id=item.id, queue=item.queue, step=step, error="the lease is gone")
        return recorded
