"""Connections that survive outages: one autocommit connection per role, reopened on demand, and retries
with exponential backoff and jitter (tenacity) that log every attempt and never give up on their own."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_before_delay, stop_never
from tenacity.wait import wait_random_exponential

from clawnsole import ops
from clawnsole.db.connect import connect, redact
from clawnsole.errors import DatabaseError, DatabaseUnavailable, InvalidInput, SchemaMissing
from clawnsole.queue import WorkQueue
from clawnsole.worker.eventlog import EventLog

T = TypeVar("T")

# Backoff between attempts: uniform in [0, min(MAX, FIRST * 2**n)] ("full jitter"), so a fleet of workers
# does not reconnect in lockstep after a database restart. The cap bounds how long a worker may sleep on
# after the server is back (each role of a worker backs off on its own).
BACKOFF_FIRST = 0.25
BACKOFF_MAX = 5.0


class Stopped(Exception):
    """The worker began stopping while waiting to retry."""


def worker_conninfo(conninfo: str, agent: str) -> str:
    """The conninfo with an application name naming the worker (pg_stat_activity) and TCP keepalives, so a
    connection to a vanished server fails within a minute instead of hanging forever."""
    try:
        given = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError as error:
        raise InvalidInput("database-url", redact(str(error))) from None
    extra = {
        "application_name": f"clawnsole-worker:{agent}"[:63],
        "keepalives": "1",
        "keepalives_idle": "30",
        "keepalives_interval": "10",
        "keepalives_count": "3",
    }
    return psycopg.conninfo.make_conninfo(conninfo, **{k: v for k, v in extra.items() if k not in given})


class Session:
    """One autocommit connection used by one role of the worker (claiming, finishing, heartbeats).

    Every statement commits on its own (the worker's operations need no multi-statement atomicity), which
    saves the BEGIN/COMMIT round trips on the hot path. A failed connection is dropped; the next call
    opens a new one, so retrying a call is all it takes to reconnect.
    """

    def __init__(self, conninfo: str, schema: str, agent: str) -> None:
        self._conninfo = conninfo
        self._schema = schema
        self._agent = agent
        self._conn: psycopg.Connection[Any] | None = None
        self._queue: WorkQueue | None = None
        self._lock = threading.Lock()

    def run(self, op: ops.Op[T]) -> T:
        """Run one operation, connecting first when needed. A lost connection (DatabaseUnavailable) is
        dropped, to be reopened by the next call; a statement the server refused (DatabaseError) leaves the
        connection as it is, and a lost deadlock was already run again on it."""
        with self._lock:
            try:
                if self._queue is None or self._conn is None or self._conn.closed:
                    self._open()
                assert self._queue is not None
                return self._queue.run_steps(op, conn=self._conn)
            except DatabaseUnavailable:
                self._drop()
                raise

    def _open(self) -> None:
        self._drop()
        self._conn = connect(self._conninfo, autocommit=True)
        self._queue = WorkQueue(self._conn, schema=self._schema, agent=self._agent).open()

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._queue = None

    def close(self) -> None:
        with self._lock:
            self._drop()


def retry_call(
    call: Callable[[], T],
    *,
    log: EventLog,
    what: str,
    stop: threading.Event | None = None,
    give_up_after: float | None = None,
    schema_missing_is_fatal: bool = False,
    refused_tries: int | None = None,
) -> T:
    """`call()`, retried while the database is unavailable or refuses the statement.

    Sleeps between attempts wait on `stop`, and raise Stopped as soon as it is set. With `give_up_after`,
    the last error is raised once that many seconds have passed. A lost connection is retried for as long
    as that allows; a refused statement (DatabaseError: a statement timeout, a read-only server during a
    failover) also, or only `refused_tries` times when given (the caller has a way around it). Each retry
    is logged as `db_unavailable` or `db_error`, saying which it was.
    """
    refused = 0

    def transient(error: BaseException) -> bool:
        nonlocal refused
        if schema_missing_is_fatal and isinstance(error, SchemaMissing):
            return False
        if isinstance(error, DatabaseUnavailable):
            return True
        if isinstance(error, DatabaseError):
            refused += 1
            return refused_tries is None or refused < refused_tries
        return False

    def sleep(seconds: float) -> None:
        if stop is None:
            threading.Event().wait(seconds)
        elif stop.wait(seconds):
            raise Stopped(what)

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome is not None else None
        log.emit(
            "db_unavailable" if isinstance(error, DatabaseUnavailable) else "db_error",
            during=what,
            attempt=state.attempt_number,
            retry_in=state.next_action.sleep if state.next_action is not None else None,
            error=str(error),
        )

    retrying = Retrying(
        retry=retry_if_exception(transient),
        wait=wait_random_exponential(multiplier=BACKOFF_FIRST, max=BACKOFF_MAX),
        stop=stop_never if give_up_after is None else stop_before_delay(give_up_after),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    if stop is not None and stop.is_set():
        raise Stopped(what)
    # The common case is a plain call: tenacity's machinery is only set up once an attempt has failed
    # (this runs once per claim and per batch of outcomes).
    try:
        return call()
    except DatabaseError as error:
        if not transient(error):
            raise
        refused = 0  # counted again when tenacity replays it below
        failed: list[BaseException] = [error]

    def attempt() -> T:
        if failed:  # replay the failure above as tenacity's first attempt, so it is logged and backed off
            raise failed.pop()
        return call()

    return retrying(attempt)
