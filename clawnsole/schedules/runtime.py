"""The scheduler process: fire due schedules, then sleep until the next one is due or a schedule changes.

`run_scheduler` is the daemon (`clawnsole scheduler run`, and the side task of `worker-loop
--with-scheduler`); `tick` is one pass (`clawnsole scheduler tick`, for cron). Both are safe to run many
times over on many machines: each window's item is enqueued exactly once (see `clawnsole.schedules.ops.fire`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import datetime

import psycopg
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential, wait_random

from clawnsole import ops
from clawnsole.db.connect import connect
from clawnsole.errors import ClawnsoleError, DatabaseUnavailable, InvalidInput, LeaseLost, SchemaMissing
from clawnsole.listen import Listener
from clawnsole.models import Item
from clawnsole.queue import WorkQueue, default_agent
from clawnsole.retention.api import Retention
from clawnsole.retention.models import CleanupOptions, CleanupReport
from clawnsole.schedules.api import Schedules, schedule_channel
from clawnsole.schedules.models import SystemRun, TickReport
from clawnsole.schedules.system import CLEANUP_KIND, REPLAY_KIND, SYSTEM_QUEUE, SYSTEMS, replay_payload

log = logging.getLogger("clawnsole.scheduler")

# The longest the daemon sleeps without looking (a backstop should a NOTIFY be lost, e.g. across a
# reconnect, or a schedule be edited with plain SQL).
MAX_SLEEP = 60.0
# How often a sleeping daemon checks its stop event.
_STOP_CHECK = 0.25
# After a pass that left schedules due (held by another scheduler), look again this soon, not at once.
_CONTENDED_PAUSE = 0.2
APPLICATION_NAME = "clawnsole-scheduler"
# After losing the database mid-run, wait this long before the first reconnect attempt.
_RECONNECT_PAUSE = 0.5
# How many system items one pass claims at most (they run one after the other, in this process).
SYSTEM_ITEMS_PER_PASS = 10
# The lease of a system item; the cleanup renews it after every batch.
SYSTEM_LEASE = 300.0


def _conninfo(conninfo: str) -> str:
    """The conninfo with application_name 'clawnsole-scheduler' unless it names one (pg_stat_activity shows it)."""
    try:
        if "application_name" in psycopg.conninfo.conninfo_to_dict(conninfo):
            return conninfo
        return psycopg.conninfo.make_conninfo(conninfo, application_name=APPLICATION_NAME)
    except psycopg.ProgrammingError:
        return conninfo  # let connect() report the unparsable URL, password redacted


def scheduler_agent() -> str:
    """The id a scheduler records in run logs: scheduler@host:pid."""
    return f"scheduler@{default_agent()}"


def tick(conninfo: str, schema: str, *, agent: str | None = None, now: datetime | None = None) -> TickReport:
    """Fire every due schedule once, on a connection of its own, and return what it did."""
    with connect(_conninfo(conninfo)) as conn:
        queue = WorkQueue(conn, schema=schema, agent=agent or scheduler_agent()).open()
        report = Schedules(queue).tick(now=now)
        report = replace(report, system=run_system_items(queue))
    _log_report(report)
    return report


def run_system_items(
    queue: WorkQueue, *, stop: threading.Event | None = None, limit: int = SYSTEM_ITEMS_PER_PASS
) -> list[SystemRun]:
    """Claim the due items of the `clawnsole` queue (system schedules' windows) and run each here, one after
    the other, recording done or failed like a worker would (see `clawnsole.schedules.system`).

    A lost database is raised (the caller reconnects); anything else an item throws is that item's outcome.
    With `stop` set meanwhile, a running cleanup stops after its batch and its item goes back to pending
    without charging the attempt; items not started yet are left alone.
    """
    runs: list[SystemRun] = []
    for item in queue.claim_next(SYSTEM_QUEUE, lease=SYSTEM_LEASE, limit=limit):
        if stop is not None and stop.is_set():
            queue.run_steps(
                ops.release([(item.id, str(item.lease_token))], agent=queue.agent, reason="scheduler stopping")
            )
            runs.append(SystemRun(item.id, item.kind, "released"))
            continue
        runs.append(_run_system_item(queue, item, stop))
    return runs


def _run_system_item(queue: WorkQueue, item: Item, stop: threading.Event | None) -> SystemRun:
    token = str(item.lease_token)
    try:
        if item.kind == REPLAY_KIND:
            return _run_replay(queue, item, token)
        if item.kind != CLEANUP_KIND:
            raise InvalidInput("kind", f"{item.kind!r} is not a system job: the {SYSTEM_QUEUE!r} queue is reserved")
        options = CleanupOptions.from_payload(item.payload)

        def keep_going(report: CleanupReport) -> bool:
            # Renews the lease between batches (no event each time: a cleanup may run thousands of batches).
            queue.run_steps(ops.progress(item.id, agent=queue.agent, lease_token=token, record=False))
            return stop is None or not stop.is_set()

        report = Retention(queue).run(options, keep_going=keep_going)
    except LeaseLost as error:
        return SystemRun(item.id, item.kind, "lease_lost", error=str(error))
    except DatabaseUnavailable:
        raise
    except ClawnsoleError as error:
        # Bad input (a payload a hand-written schedule got wrong) fails for good; a refused statement retries.
        failed = queue.fail(item.id, str(error), lease_token=token, retry=not isinstance(error, InvalidInput))
        return SystemRun(item.id, item.kind, "retry" if failed.status == "pending" else "failed", error=str(error))
    if report.stopped:
        queue.run_steps(ops.release([(item.id, token)], agent=queue.agent, reason="scheduler stopping"))
        return SystemRun(item.id, item.kind, "released", result=report.to_json())
    queue.done(item.id, lease_token=token, result=report.to_json())
    return SystemRun(item.id, item.kind, "done", result=report.to_json())


def _run_replay(queue: WorkQueue, item: Item, token: str) -> SystemRun:
    """A replay schedule's window: `dlq replay` with the payload's filters, the report as the result. The
    items of the reserved queue itself are never replayed (a failed system run waits for a person)."""
    from clawnsole.deadletters.api import DeadLetters

    options = replay_payload(item.payload)
    options["exclude_kinds"] = list(dict.fromkeys([*options.get("exclude_kinds", []), *SYSTEMS.values()]))
    report = DeadLetters(queue).replay(**options)
    queue.done(item.id, lease_token=token, result=report.to_json())
    return SystemRun(item.id, item.kind, "done", result=report.to_json())


def _log_report(report: TickReport) -> None:
    for fired in report.fired:
        for fire_at, item_id in fired.enqueued:
            log.info("schedule %s: enqueued item %d for %s", fired.schedule, item_id, fire_at.isoformat())
        for fire_at in fired.skipped:
            log.info("schedule %s: skipped %s (its previous item is still open)", fired.schedule, fire_at.isoformat())
        if fired.missed_from is not None:
            log.info("schedule %s: missed windows from %s", fired.schedule, fired.missed_from.isoformat())
        if fired.error is not None:
            log.warning("schedule %s: enqueue failed: %s", fired.schedule, fired.error)
    for run in report.system:
        detail = run.error or ", ".join(f"{k} {v}" for k, v in (run.result or {}).items() if k in _LOGGED)
        log.info("system item %d (%s): %s%s", run.item_id, run.kind, run.outcome, f": {detail}" if detail else "")


# The fields of a cleanup's result worth a log line.
_LOGGED = ("items", "events", "batches", "kept_in_cooldown", "matched", "replayed")


class _Session:
    """What a connected scheduler holds: a connection for its transactions and one for LISTEN."""

    def __init__(self, conninfo: str, schema: str, agent: str) -> None:
        conninfo = _conninfo(conninfo)
        self._listener = Listener(conninfo, schedule_channel(schema)).open()
        try:
            self._conn = connect(conninfo)
            self.queue = WorkQueue(self._conn, schema=schema, agent=agent).open()
            self.schedules = Schedules(self.queue)
        except BaseException:
            self.close()
            raise

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        return self._listener.wait(timeout, stop)

    def close(self) -> None:
        self._listener.close()
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()


def _serve(session: _Session, stop: threading.Event, max_sleep: float) -> None:
    """Tick and sleep until stop is set; raises DatabaseUnavailable when the database goes away."""
    while not stop.is_set():
        report = session.schedules.tick()
        report = replace(report, system=run_system_items(session.queue, stop=stop))
        _log_report(report)
        due_in = session.schedules.seconds_until_due()
        if due_in is None:
            sleep = max_sleep
        elif due_in > 0:
            sleep = min(due_in, max_sleep)
        else:
            sleep = _CONTENDED_PAUSE
        session.wait(sleep, stop)


def run_scheduler(
    conninfo: str,
    schema: str,
    stop: threading.Event,
    *,
    agent: str | None = None,
    max_sleep: float = MAX_SLEEP,
) -> None:
    """Fire due schedules until `stop` is set (blocks; returns within a fraction of a second of it).

    Sleeps until the next schedule is due, waking early when a schedule is added or changed (LISTEN).
    When the database is unreachable it reconnects with jittered exponential backoff (0.5 s to 30 s) for
    as long as it takes; a schema that is missing or too old is raised (SchemaMissing) instead, as is
    any other error, so a supervisor sees a broken scheduler rather than a silent one.
    """
    who = agent or scheduler_agent()

    def transient(error: BaseException) -> bool:
        return isinstance(error, DatabaseUnavailable) and not isinstance(error, SchemaMissing)

    def warn(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("scheduler: database unavailable (%s); retrying in %.1fs", error, wait)

    def nap(seconds: float) -> None:
        stop.wait(seconds)

    while not stop.is_set():
        # A fresh Retrying per connection, so the backoff starts small again after a healthy run.
        retrying = Retrying(
            retry=retry_if_exception(transient),
            wait=wait_exponential(multiplier=0.5, max=30.0) + wait_random(0, 1),
            stop=lambda _state: stop.is_set(),
            sleep=nap,
            before_sleep=warn,
            reraise=True,
        )
        try:
            session = retrying(_Session, conninfo, schema, who)
        except DatabaseUnavailable as error:
            if transient(error) and stop.is_set():
                break
            raise
        log.info("scheduler %s started (schema %r)", who, schema)
        try:
            _serve(session, stop, max_sleep)
        except DatabaseUnavailable as error:
            if not transient(error):
                raise
            log.warning("scheduler: lost the database (%s); reconnecting", error)
            nap(_RECONNECT_PAUSE)
        finally:
            session.close()
    log.info("scheduler %s stopped", who)
