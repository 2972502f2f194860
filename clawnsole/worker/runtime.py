"""The worker: one claim loop feeding a fixed pool of handler threads, with monitored side threads.

Threads, not processes: handlers are I/O-bound (an `--exec` child, an agent call), and CPU-heavy work is
isolated in `--exec` children anyway. Items are claimed only as many as there are free handler slots
(`limit` = free slots), on one connection whatever the concurrency, so nothing waits claimed in a local
buffer while its lease runs. Outcomes go to a finisher thread that records every done item waiting in one
statement.

The listener's turn: one idle handler thread at a time listens for enqueue notifications (the pool has one
thread more than the concurrency for it). On a notification, while the claim loop waits idle, that thread
claims itself, passes the turn on to another idle thread, and runs the first item it claimed: the item's
handler starts on the thread the notification woke, with no hand-over between threads before it (an idle
worker's pickup). While the claim loop is busy (claiming, or every slot taken) the listener only wakes it.
Two claims never run at once (`InFlight.claiming`).

Side threads: the heartbeat (renews every lease in flight each lease/3, feeds the systemd watchdog), the
finisher and any extra task (the scheduler). If one dies, the worker stops loudly: it drains, releases, and
exits 1.

The queue is reached through a `Source` (`source.py`): PostgreSQL itself, or the HTTP API of `clawnsole
serve` (`api_source.py`), where an idle claim waits on the server for an item instead of on a listener here.

Stopping is two-stage: stop claiming and let in-flight items finish within the grace; then stop the rest
(children get SIGTERM, then SIGKILL), and only then release their leases without charging the attempt.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from clawnsole import validate
from clawnsole.errors import DatabaseError, InvalidInput, LeaseLost
from clawnsole.models import Item
from clawnsole.worker import storable
from clawnsole.worker.context import Cancelled, Context, StepRecorder
from clawnsole.worker.eventlog import EventLog, Record
from clawnsole.worker.finisher import Finisher, Outcome, short
from clawnsole.worker.handlers import Handler, HandlerFailed
from clawnsole.worker.heartbeat import Heartbeat, stop_lost
from clawnsole.worker.inflight import LISTEN, InFlight, Jobs, Slot
from clawnsole.worker.sdnotify import Notifier
from clawnsole.worker.session import Stopped, retry_call
from clawnsole.worker.source import DatabaseSource, Source
from clawnsole.worker.tally import Tally

# A busy worker also recovers expired leases in its queues at most this often (an idle one on every
# timed wake-up), so items of a crashed worker come back without a second statement per claim.
RECOVER_EVERY = 1.0
# After handing items to handler threads, how long the claim loop waits (for a wake-up hint) before it asks
# the database when to look next.
HANDOFF_PAUSE = 0.005
# Shortest idle wait when something is due but could not be claimed (locked by a concurrent claim).
MIN_IDLE_WAIT = 0.25
# How long the claim loop may go without looking around (max runtime, watchdog liveness).
LOOP_TICK = 1.0
# At shutdown: how long to keep trying to write outcomes and releases while the database is away.
SHUTDOWN_WRITE_TIMEOUT = 10.0
# At shutdown: how long to wait for each side thread (they check their stop event at least this often).
THREAD_JOIN_TIMEOUT = 5.0
# Extra time given to handler threads to return after their children were killed.
RETURN_MARGIN = 2.0
STATUS_EVERY = 1.0
# Default concurrency. A Python handler slot is an idle thread, and claims are batched by free slots, so a
# wide default costs nothing and lets fast handlers run thousands of items a second; an `--exec` slot is a
# child process, so there the default follows the machine.
PYTHON_CONCURRENCY = 32


def default_concurrency(*, processes: bool) -> int:
    """Items run at once when not configured: 32 Python handler threads, or one child process per CPU."""
    return max(2, os.cpu_count() or 2) if processes else PYTHON_CONCURRENCY


# The claim loop looks around at least every LOOP_TICK; this long without, it counts as stuck (watchdog).
LOOP_STALL = 10.0


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker claims and runs items."""

    queues: tuple[str, ...]
    agent: str
    concurrency: int = PYTHON_CONCURRENCY
    lease: float = 300.0
    poll: float = 30.0
    grace: float = 30.0
    # SIGTERM to SIGKILL, for children being stopped (timeout, lost lease, shutdown).
    kill_grace: float = 5.0
    max_items: int | None = None
    max_runtime: float | None = None
    # worker-pass: no LISTEN; stop claiming as soon as the queues have nothing due.
    once: bool = False

    def __post_init__(self) -> None:
        for name in self.queues:
            validate.queue_name(name)
        if not self.queues:
            raise InvalidInput("queue", "name at least one queue")
        validate.agent(self.agent)
        validate.positive_int(self.concurrency, "concurrency", maximum=1000)
        validate.duration(self.lease, "lease")
        validate.duration(self.poll, "poll")
        validate.duration(self.grace, "grace", allow_zero=True)
        validate.duration(self.kill_grace, "kill_grace", allow_zero=True)
        if self.max_items is not None:
            validate.positive_int(self.max_items, "max_items", maximum=10**9)
        if self.max_runtime is not None:
            validate.duration(self.max_runtime, "max_runtime")


@dataclass(frozen=True)
class SideTask:
    """A function run in its own thread for the worker's lifetime; it must return once `stop` is set."""

    name: str
    target: Callable[[threading.Event], None]


class Worker:
    """Claims items from its queues and runs `handler` on each; `run()` blocks until stopped.

    `source` is where the items come from: a PostgreSQL conninfo (the database itself, in `schema`), or a
    `Source` such as `ApiSource` (the HTTP API)."""

    def __init__(
        self,
        source: str | Source,
        handler: Handler,
        options: WorkerOptions,
        *,
        schema: str = "clawnsole",
        log: EventLog | None = None,
        notifier: Notifier | None = None,
        side_tasks: Sequence[SideTask] = (),
    ) -> None:
        self.options = options
        self._handler = handler
        self._log = log or EventLog(agent=options.agent)
        self._notifier = notifier or Notifier(None)
        self._side_tasks = list(side_tasks)
        self.tally = Tally()
        self._inflight = InFlight(options.concurrency)
        self._jobs = Jobs()
        # Guarded by the in-flight condition: `_stopping` ends claiming; the drain then waits until
        # `_drain_deadline` (None: until every handler returns, after a budget) unless `_immediate`.
        self._stopping = False
        self._immediate = False
        self._stop_reason = ""
        self._drain_deadline: float | None = None
        self._closing = False  # past the drain: side threads returning now is expected
        self._exit_code = 0
        self._stop_event = threading.Event()  # set with _stopping, for waits outside the condition
        self._threads_stop = threading.Event()  # side threads stop after the leases are settled
        self._loop_tick = time.monotonic()
        self._last_status = 0.0
        watchdog = self._notifier.watchdog_interval
        self._heartbeat_interval = options.lease / 3 if watchdog is None else min(options.lease / 3, watchdog / 3)
        self._tick = LOOP_TICK if watchdog is None else min(LOOP_TICK, watchdog / 3)
        self._source: Source = (
            DatabaseSource(
                source,
                schema,
                agent=options.agent,
                queues=options.queues,
                lease=options.lease,
                concurrency=options.concurrency,
                heartbeat_seconds=self._heartbeat_interval,
                log=self._log,
            )
            if isinstance(source, str)
            else source
        )
        # Handlers' `ctx.timed` steps are recorded through the source, like progress.
        self._record_step = StepRecorder(self._source, self._log)
        self._finisher = Finisher(
            self._source,
            inflight=self._inflight,
            log=self._log,
            tally=self.tally,
            on_change=self._status_changed,
        )
        self._heartbeat = Heartbeat(
            self._source,
            interval=self._heartbeat_interval,
            lease=options.lease,
            inflight=self._inflight,
            log=self._log,
            tally=self.tally,
            stop=self._threads_stop,
            on_beat=self._on_beat,
        )
        # worker-pass claims until nothing is due and needs no wake-ups.
        self._wakeups = None if options.once else self._source.wakeups(log=self._log, stop=self._threads_stop)
        self._turn_over = threading.Event()  # the listener's turn has ended and its connection is closed
        self._threads: list[threading.Thread] = []
        self._finisher_thread = threading.Thread()
        self._handler_threads: list[threading.Thread] = []

    # Control ------------------------------------------------------------------------------------------

    def stop(self, immediate: bool = False, reason: str = "signal") -> None:
        """Stop claiming and drain within the grace; `immediate` releases what is still running at once."""
        deadline = time.monotonic() + self.options.grace
        with self._inflight.cond:
            if not self._stopping:
                self._stop_reason = reason
            self._stopping = True
            # A signal during an unbounded drain (after a budget) bounds it by the grace from now.
            self._drain_deadline = deadline if self._drain_deadline is None else min(deadline, self._drain_deadline)
            self._immediate = self._immediate or immediate
            self._inflight.cond.notify_all()
        self._stop_event.set()
        if immediate:
            for slot in self._inflight.releasing():
                slot.ctx.cancel("worker shutting down", kill_now=True)

    def _fatal(self, name: str, error: BaseException | None) -> None:
        detail = "returned" if error is None else f"{type(error).__name__}: {error}"
        self._log.emit("side_task_died", task=name, error=detail)
        self._exit_code = 1
        self.stop(reason=f"{name} stopped unexpectedly")

    # Main loop ----------------------------------------------------------------------------------------

    def run(self) -> int:
        """Connect, claim and run items until stopped or out of budget; returns the exit code (0, or 1
        when a side task died)."""
        options = self.options
        started = time.monotonic()
        self._log.emit(
            "starting",
            agent=options.agent,
            queues=",".join(options.queues),
            concurrency=options.concurrency,
            lease=options.lease,
            mode="pass" if options.once else "loop",
        )
        try:
            # A missing schema at start is a configuration error (run migrate), not an outage to wait out.
            retry_call(
                self._source.ping,
                log=self._log,
                what="connecting",
                stop=self._stop_event,
                schema_missing_is_fatal=True,
            )
            if self._wakeups is not None:
                self._wakeups.open()
            self._source.register()
        except Stopped:
            self._close_sessions()
            self._log.emit("stopped", reason=self._stop_reason, **self.tally.as_dict())
            return self._exit_code
        except BaseException:
            self._close_sessions()
            raise
        self._start_threads()
        self._notifier.ready(self.tally.summary(0))
        self._log.emit("ready")
        try:
            self._claim_loop(started)
        finally:
            self._shutdown()
        return self._exit_code

    def _claim_loop(self, started: float) -> None:
        options = self.options
        cond = self._inflight.cond
        recover_at = 0.0
        notified = False  # the last idle wait ended on a wake-up hint
        waiting = False  # the next claim waits on the source's side for an item (over the HTTP API)
        while True:
            with cond:
                now = self._loop_tick = time.monotonic()
                if self._stopping or self._out_of_time(started, now):
                    return
                budget = self._budget()
                if budget == 0:
                    self._stopping, self._stop_reason = True, "max items"
                    self._stop_event.set()
                    return
                free = self._inflight.free()
                if free <= 0 or self._inflight.claiming:
                    cond.wait(self._tick)  # a handler returning, or the listener's claim ending, notifies
                    continue
                self._inflight.hinted = False
                self._inflight.claiming = True
            limit = free if budget is None else min(free, budget)
            # Woken by a notification, claim at once: the recovery statement, when due, comes after.
            recover = now >= recover_at and not notified
            items: list[Item] = []
            try:
                items = self._claim_waiting(limit, started) if waiting else self._claim(limit, recover)
            except Stopped:
                return
            finally:
                if items:
                    self._dispatch(items)
                self._claimed()
            if recover and not waiting:
                recover_at = now + RECOVER_EVERY
            owed, notified = notified and now >= recover_at, False
            if len(items) == limit or owed:
                waiting = False
                continue
            if options.once:
                with cond:
                    if not self._stopping:
                        self._stopping, self._stop_reason = True, "queue empty"
                        self._stop_event.set()
                return
            if self._source.claim_wait > 0:
                # Idle over the HTTP API: the next claim waits on the server, which its LISTEN wakes, rather
                # than here for a listener of our own.
                waiting = True
                continue
            # Items were just handed to handler threads: wait a moment before preparing the next statement, so
            # they take the interpreter at once instead of after it (an idle pickup's handler starts sooner).
            if items and self._idle_wait(HANDOFF_PAUSE, started):
                notified = True
                continue
            notified = self._idle_wait(self._idle_timeout(), started)
            if not notified:
                recover_at = 0.0  # a timed wake-up may be a lease running out: recover first

    def _out_of_time(self, started: float, now: float) -> bool:
        """Begin stopping when --max-runtime has passed (call with the condition held)."""
        if self.options.max_runtime is None or now - started < self.options.max_runtime:
            return False
        self._stopping, self._stop_reason = True, "max runtime"
        self._drain_deadline = now + self.options.grace
        self._stop_event.set()
        return True

    def _budget(self) -> int | None:
        """Items left to claim under --max-items (None: no limit)."""
        return None if self.options.max_items is None else self.options.max_items - self.tally.claimed

    def _claimed(self, *, hint: bool = False) -> None:
        """A claim is over and its items are held: another may start (`hint`: the claim loop looks again)."""
        with self._inflight.cond:
            self._inflight.claiming = False
            self._inflight.hinted = self._inflight.hinted or hint
            self._inflight.cond.notify_all()

    def _idle_wait(self, timeout: float, started: float) -> bool:
        """Wait for a wake-up hint (True), a stop, or the timeout, looking around every tick meanwhile."""
        cond = self._inflight.cond
        deadline = time.monotonic() + timeout
        with cond:
            while not (self._inflight.hinted or self._stopping):
                now = self._loop_tick = time.monotonic()
                if now >= deadline or self._out_of_time(started, now):
                    break
                cond.wait(min(deadline - now, self._tick))
            return self._inflight.hinted

    def _claim(self, limit: int, recover: bool) -> list[Item]:
        return retry_call(
            lambda: self._source.claim(limit, recover=recover),
            log=self._log,
            what="claiming",
            stop=self._stop_event,
        )

    def _claim_waiting(self, limit: int, started: float) -> list[Item]:
        """Claim, waiting up to the source's `claim_wait` for an item to come due (never past --max-runtime).
        The wait is short (seconds), so a stop is noticed soon after it is asked for."""
        wait = self._source.claim_wait
        if self.options.max_runtime is not None:
            wait = min(wait, max(0.0, self.options.max_runtime - (time.monotonic() - started)))
        return retry_call(
            lambda: self._source.claim(limit, recover=True, wait=wait),
            log=self._log,
            what="claiming",
            stop=self._stop_event,
        )

    def _idle_timeout(self) -> float:
        """Until the next due item or expiring lease, capped by the poll interval (jittered by 10%)."""
        poll = self.options.poll * random.uniform(0.9, 1.1)
        try:
            due = self._source.next_wakeup()
        except DatabaseError:
            due = None  # the next claim retries (and logs); meanwhile just wait
        return poll if due is None else min(poll, max(due + 0.02, MIN_IDLE_WAIT))

    def _dispatch(self, items: list[Item], *, run_first: bool = False) -> Slot | None:
        """Hold the claimed items and hand them to the handler threads; with `run_first`, all but the first,
        which is returned to be run by the calling thread (the listener's), after the listener's turn."""
        now = time.monotonic()
        agent = self.options.agent
        slots = []
        for item in items:
            token = str(item.lease_token)
            ctx = Context(item, token, agent, self._progress, record_step=self._record_step)
            slots.append(Slot(item, token, ctx, now))
        # Our own earlier claims of items whose lease ran out and which we have just claimed again: stop those
        # handlers (their outcomes would be rejected anyway) so an item does not run twice here.
        superseded = self._inflight.add(slots)
        stop_lost(
            superseded, log=self._log, tally=self.tally, detail="the lease ran out and the item was claimed again"
        )
        self.tally.add(claimed=len(slots))
        records = (
            ("claimed", {"id": s.item.id, "queue": s.item.queue, "attempt": s.item.attempts, "kind": s.item.kind})
            for s in slots
        )
        if run_first:
            # The log is written before another thread is woken (for the rest and the listener's turn): the
            # write lets go of the interpreter, and nothing may take it up before the first item's handler.
            self._log.emit_many(records)
            self._jobs.put([*slots[1:], LISTEN])
        else:
            # Handed to the handler threads before the log line is written: a thread starts on an item as soon
            # as this one lets go of the interpreter (at the log's write), not after it prepares its next claim.
            self._jobs.put(slots)
            self._log.emit_many(records)
        return slots[0] if run_first else None

    # Handler threads ----------------------------------------------------------------------------------

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            slot = job if isinstance(job, Slot) else self._listen()
            if slot is None:
                continue
            # A slot released at shutdown before any thread took it up is not started at all.
            outcome = None if slot.ctx.is_cancelled() else self._execute(slot)
            if self._inflight.handler_returned(slot) and outcome is not None:
                self._finisher.put(outcome)

    def _listen(self) -> Slot | None:
        """The listener's turn: listen until a notification lets this thread claim, then return the first
        item claimed, to run here (the turn has passed on); None once the worker stops."""
        assert self._wakeups is not None
        try:
            while not self._threads_stop.is_set():
                if self._wakeups.wait() and (slot := self._claim_notified()) is not None:
                    return slot
        except Stopped:
            pass
        self._wakeups.close()
        self._turn_over.set()
        return None

    def _claim_notified(self) -> Slot | None:
        """On a notification: claim here when the claim loop waits idle, else wake it. Returns the first item
        claimed (the others are handed to the handler threads, the listener's turn to an idle one)."""
        cond = self._inflight.cond
        with cond:
            budget, free = self._budget(), self._inflight.free()
            limit = free if budget is None else min(free, budget)
            if self._stopping or self._inflight.claiming or limit <= 0:
                self._inflight.hinted = True
                cond.notify_all()
                return None
            self._inflight.claiming = True
        items: list[Item] = []
        first = None
        try:
            # No retries here: on an error the claim loop, woken below, claims again with its backoff and log.
            items = self._source.claim(limit, recover=False)
        except DatabaseError:
            pass
        finally:
            if items:
                first = self._dispatch(items, run_first=True)
            # Nothing claimed (an error, a delayed item, another worker was first) or a full batch: the claim
            # loop looks again, and when to wake next.
            self._claimed(hint=len(items) in (0, limit))
        return first

    def _execute(self, slot: Slot) -> Outcome | None:
        ctx = slot.ctx
        try:
            result = self._handler(slot.item, ctx)
        except HandlerFailed as failure:
            return Outcome(slot, error=storable.error(failure.message), retry=failure.retry)
        except (Cancelled, LeaseLost) as error:
            if ctx.is_cancelled():
                return None  # the worker stopped it: no outcome is written
            return Outcome(slot, error=storable.error(f"{type(error).__name__}: {error}"))
        except (Exception, SystemExit) as error:
            name = type(error).__name__
            return Outcome(slot, error=storable.error(f"{name}: {error}" if str(error) else name))
        if ctx.is_cancelled():
            return None
        if result is not None:
            try:
                dumped = json.dumps(result)
            except (TypeError, ValueError, RecursionError) as error:
                return Outcome(slot, error=storable.error(f"the handler's result is not JSON-serialisable: {error}"))
            if storable.needs_cleaning(dumped):
                result = storable.json_value(result)
            if len(dumped) > validate.MAX_PAYLOAD_BYTES:
                return Outcome(slot, error="the handler's result is larger than 1 MiB")
        return Outcome(slot, result=result)

    def _progress(self, ctx: Context, note: str | None, percent: int | None) -> bool:
        item = ctx.item
        try:
            self._source.progress(
                item.id, ctx.lease_token, note=None if note is None else storable.text(note), percent=percent
            )
        except LeaseLost:
            lost = self._inflight.lose([(item.id, ctx.lease_token)])
            stop_lost(lost, log=self._log, tally=self.tally, detail="a progress report found the lease held elsewhere")
            raise
        except DatabaseError as error:
            self._log.emit("progress_not_recorded", id=item.id, queue=item.queue, error=str(error))
            return False
        return True

    # Side threads -------------------------------------------------------------------------------------

    def _monitored(self, name: str, target: Callable[[], None]) -> threading.Thread:
        def body() -> None:
            try:
                target()
            except BaseException as error:
                self._fatal(name, error)
            else:
                if not self._closing:
                    self._fatal(name, None)

        return threading.Thread(target=body, name=f"clawnsole-{name}", daemon=True)

    def _start_threads(self) -> None:
        # One thread more than the concurrency when listening: the listener's turn never waits for a slot.
        count = self.options.concurrency + (self._wakeups is not None)
        self._handler_threads = [self._monitored(f"handler-{n}", self._serve) for n in range(count)]
        self._finisher_thread = self._monitored("finisher", self._finisher.run)
        self._threads = [self._finisher_thread, self._monitored("heartbeat", self._heartbeat.run)]
        if self._wakeups is not None:
            self._jobs.put([LISTEN])
        for task in self._side_tasks:
            self._threads.append(self._monitored(task.name, self._bind(task)))
        for thread in [*self._handler_threads, *self._threads]:
            thread.start()

    def _bind(self, task: SideTask) -> Callable[[], None]:
        return lambda: task.target(self._threads_stop)

    def _on_beat(self) -> None:
        # Feed the watchdog only while both the database and the claim loop are alive, so systemd restarts
        # a worker wedged on a dead connection or a stuck loop.
        if time.monotonic() - self._loop_tick < LOOP_STALL:
            self._notifier.watchdog()

    def _status_changed(self) -> None:
        now = time.monotonic()
        if self._notifier.enabled and now - self._last_status >= STATUS_EVERY:
            self._last_status = now
            self._notifier.status(self.tally.summary(self._inflight.count()))

    # Shutdown -----------------------------------------------------------------------------------------

    def _shutdown(self) -> None:
        cond = self._inflight.cond
        with cond:
            # A claim the listener began before the stop is held before anything is counted or released.
            while self._inflight.claiming:
                self._loop_tick = time.monotonic()
                cond.wait(self._tick)
            reason = self._stop_reason
            in_flight = self._inflight.busy
        self._notifier.stopping(f"stopping ({reason}): {self.tally.summary(in_flight)}")
        self._log.emit("stopping", reason=reason, in_flight=in_flight)
        self._drain()
        leftovers = self._inflight.take_for_release()
        if leftovers:
            self._stop_handlers(leftovers)
        self._closing = True
        self._jobs.put([None] * len(self._handler_threads))
        self._finisher.close()
        self._finisher_thread.join(SHUTDOWN_WRITE_TIMEOUT)
        if self._finisher_thread.is_alive():
            self._finisher.abandon.set()
            self._finisher_thread.join(THREAD_JOIN_TIMEOUT)
        self._threads_stop.set()
        for thread in self._threads:
            thread.join(THREAD_JOIN_TIMEOUT)
        # The listener's turn ends within a slice of the stop; if no thread was free to take it up, no one
        # is listening and the connection is closed here.
        if self._wakeups is not None and not self._turn_over.wait(THREAD_JOIN_TIMEOUT):
            self._wakeups.close()
        # The leases go back last, when nothing is left to wait for but returning: a Python handler that
        # ignored its cancellation cannot be killed, and must not run on for long beside the worker that
        # claims its item next (the CLI exits as soon as `run()` returns; the handler thread dies with it).
        if leftovers:
            self._release(leftovers)
        self._source.stopped(done=self.tally.done, failed=self.tally.failed)
        self._close_sessions()
        summary = self.tally.summary(self._inflight.count())
        self._notifier.status(f"stopped ({reason}): {summary}")
        self._notifier.close()
        self._log.emit(
            "stopped", reason=reason, worst_renewal_gap=round(self._heartbeat.worst_gap, 3), **self.tally.as_dict()
        )

    def _drain(self) -> None:
        """Wait for handlers to finish: all of them after a budget, else within the grace."""
        cond = self._inflight.cond
        with cond:
            while self._inflight.busy > 0 and not self._immediate:
                now = self._loop_tick = time.monotonic()
                remaining = self._tick if self._drain_deadline is None else self._drain_deadline - now
                if remaining <= 0:
                    return
                cond.wait(min(remaining, self._tick))

    def _stop_handlers(self, slots: list[Slot]) -> None:
        """Stop the handlers still running (children first); the heartbeat keeps their leases meanwhile."""
        kill_now = self._immediate
        for slot in slots:
            slot.ctx.cancel("worker shutting down", kill_now=kill_now)
        # Children are killed before the leases go back, so no orphan finishes an item another worker
        # has meanwhile claimed. Python handlers cannot be killed: they die with the process, just after.
        deadline = time.monotonic() + (0.0 if kill_now else self.options.kill_grace) + RETURN_MARGIN
        cond = self._inflight.cond
        with cond:
            while not all(s.returned for s in slots) and (remaining := deadline - time.monotonic()) > 0:
                self._loop_tick = time.monotonic()
                cond.wait(min(remaining, self._tick))
            stuck = [s.item.id for s in slots if not s.returned]
        if stuck:
            self._log.emit("handler_still_running", ids=",".join(map(str, stuck)), detail="released anyway")

    def _release(self, slots: list[Slot]) -> None:
        """Give the leases of stopped handlers back without charging the attempt."""
        pairs = [s.key for s in slots]
        try:
            released: set[tuple[int, str]] = retry_call(
                lambda: self._source.release(pairs, reason="shutdown"),
                log=self._log,
                what="releasing leases",
                give_up_after=SHUTDOWN_WRITE_TIMEOUT,
            )
        except DatabaseError:
            released = set()
        now = time.monotonic()
        records: list[Record] = []
        for slot in slots:
            fields: dict[str, Any] = {
                "id": slot.item.id,
                "queue": slot.item.queue,
                "attempt": slot.item.attempts,
                "duration": now - slot.claimed_at,
            }
            if slot.key in released:
                records.append(("released", fields))
            else:
                records.append(
                    ("not_released", fields | {"detail": short("lease lost or database away; it will expire")})
                )
        self.tally.add(released=len(released))
        self._inflight.forget(slots)
        self._log.emit_many(records)

    def _close_sessions(self) -> None:
        self._source.close()
