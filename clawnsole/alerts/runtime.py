"""The alert daemon: evaluate the rules every interval (and at once after a failure), deliver notices as soon as
they are written.

`run_alerts` runs two loops, each on connections of its own so neither waits on the other:
- the **evaluator** (the calling thread) runs an evaluation round every `interval` seconds, and promptly when
  an item fails: it LISTENs on the items channel (a retry scheduled wakes it) and asks every few seconds
  whether a failure-like event has been recorded since it last looked (a final failure sends no NOTIFY),
  then evaluates at once — at most once per `_FAILURE_DEBOUNCE`;
- the **sender** (a thread) LISTENs on the alerts channel the evaluation round notifies after writing the
  outbox, and sends due notices at once; otherwise it sleeps until the next notice's retry is due, at most
  `_SENDER_POLL`.

`clawnsole alert run` is this daemon (systemd/clawnsole-alerts.service); `worker-loop --with-alerts` and
`scheduler run --with-alerts` run it as a side task. Any number may run at once: the rounds lock each rule
(engine.py) and the sender claims with SKIP LOCKED (delivery.py). A database outage is waited out with
jittered exponential backoff, one log line per attempt; a missing or old schema is raised.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg import sql
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential, wait_random

from clawnsole.alerts.api import Alerts, alert_channel
from clawnsole.alerts.channels import Channels
from clawnsole.alerts.delivery import Sender, log_event
from clawnsole.alerts.engine import EvaluationReport
from clawnsole.db.connect import connect, unavailable
from clawnsole.errors import ClawnsoleError, DatabaseUnavailable, SchemaMissing
from clawnsole.ops import Op, Step
from clawnsole.queue import WorkQueue, default_agent, notify_channel

T = TypeVar("T")

INTERVAL = 30.0
LOG_FORMATS = ("json", "text")
APPLICATION_NAME = "clawnsole-alerts"
# How often the evaluator asks whether a failure was recorded (final failures send no NOTIFY).
_FAILURE_POLL = 2.0
# The shortest gap between two failure-triggered rounds: a burst of 50 failures is one or two rounds.
_FAILURE_DEBOUNCE = 1.0
# The longest the sender sleeps without looking at the outbox (a lost NOTIFY, a row written by hand).
_SENDER_POLL = 30.0
# After a pass that hit an error the database raised (not an outage), pause this long before the next.
_ERROR_PAUSE = 5.0
_RECONNECT_PAUSE = 0.5


def alerts_agent() -> str:
    """The id the daemon records in delivery attempts: alerts@host:pid."""
    return f"alerts@{default_agent()}"


def _conninfo(conninfo: str) -> str:
    try:
        if "application_name" in psycopg.conninfo.conninfo_to_dict(conninfo):
            return conninfo
        return psycopg.conninfo.make_conninfo(conninfo, application_name=APPLICATION_NAME)
    except psycopg.ProgrammingError:
        return conninfo  # let connect() report the unparsable URL, password redacted


class _Wakeups:
    """One autocommit connection LISTENing on some channels; `wait` says which were notified."""

    def __init__(self, conninfo: str, channels: list[str]) -> None:
        self._conninfo = conninfo
        self._conn = connect(conninfo, autocommit=True)
        try:
            for channel in channels:
                self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except psycopg.Error as error:
            self._conn.close()
            raise unavailable(conninfo, error, lost=True) from None

    def wait(self, timeout: float, stop: threading.Event) -> set[str]:
        """Block up to `timeout` seconds (less once `stop` is set); the channels notified meanwhile."""
        deadline = time.monotonic() + max(timeout, 0.0)
        woken: set[str] = set()
        try:
            while not woken and not stop.is_set() and (remaining := deadline - time.monotonic()) > 0:
                for note in self._conn.notifies(timeout=min(remaining, 0.25), stop_after=1):
                    woken.add(note.channel)
            if woken:
                # A burst is one wake-up: take what is already here without waiting.
                woken.update(note.channel for note in self._conn.notifies(timeout=0))
        except psycopg.OperationalError as error:
            raise unavailable(self._conninfo, error, lost=True) from None
        return woken

    def close(self) -> None:
        self._conn.close()


class _Db:
    """A transaction connection and a WorkQueue over it."""

    def __init__(self, conninfo: str, schema: str, agent: str) -> None:
        self.conn = connect(conninfo)
        try:
            self.queue = WorkQueue(self.conn, schema=schema, agent=agent).open()
        except BaseException:
            self.conn.close()
            raise

    def run(self, op: Op[T]) -> T:
        return self.queue.run(op)

    def close(self) -> None:
        self.conn.close()


def _failures_since(after: datetime | None) -> Op[tuple[datetime | None, datetime]]:
    rows = yield Step("alert_failures_since", {"after": after})
    return rows[0]["last"], rows[0]["now"]


def _evaluate(queue: WorkQueue, interval: float, groups: list[str] | None = None) -> EvaluationReport:
    # Rules evaluated by any evaluator within most of an interval are skipped (engine.py), so several daemons
    # share the work; the slack keeps a daemon's own next round from skipping a rule it did a moment too late.
    return Alerts(queue).evaluate(every=interval * 0.9 if groups is None else 0.0, groups=groups)


def _log_round(reason: str, report: EvaluationReport) -> None:
    changes = [c for r in report.rules for c in r.changes]
    errors = [r for r in report.rules if r.error]
    # A quiet round says nothing (one every 30 s would drown the journal), except the first, which shows the
    # daemon at work.
    if changes or errors or reason != "interval":
        log_event("alert_round", reason=reason, rules=len(report.rules), changes=len(changes), notices=report.notices)
    for rule in errors:
        log_event("alert_rule_error", logging.WARNING, rule=rule.rule, error=rule.error)


def _resilient(role: str, stop: threading.Event, open_session: Callable[[], Any], serve: Callable[[Any], None]) -> None:
    """Open a session and serve it until `stop`; on an outage, back off, reconnect and serve again."""

    def transient(error: BaseException) -> bool:
        return isinstance(error, DatabaseUnavailable) and not isinstance(error, SchemaMissing)

    def warn(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log_event("alerts_db_unavailable", logging.WARNING, role=role, error=str(error), retry_in=round(wait, 1))

    def nap(seconds: float) -> None:
        stop.wait(seconds)

    while not stop.is_set():
        retrying = Retrying(
            retry=retry_if_exception(transient),
            wait=wait_exponential(multiplier=0.5, max=30.0) + wait_random(0, 1),
            stop=lambda _state: stop.is_set(),
            sleep=nap,
            before_sleep=warn,
            reraise=True,
        )
        try:
            session = retrying(open_session)
        except DatabaseUnavailable as error:
            if transient(error) and stop.is_set():
                return
            raise
        try:
            serve(session)
        except DatabaseUnavailable as error:
            if not transient(error):
                raise
            log_event("alerts_db_lost", logging.WARNING, role=role, error=str(error))
            stop.wait(_RECONNECT_PAUSE)
        finally:
            session.close()


class _SenderSession:
    def __init__(self, conninfo: str, schema: str, agent: str, channels: Channels, stop: threading.Event) -> None:
        self.wakeups = _Wakeups(conninfo, [alert_channel(schema)])
        try:
            self.db = _Db(conninfo, schema, agent)
        except BaseException:
            self.wakeups.close()
            raise
        self.sender = Sender(self.db.queue, channels, agent=agent, stop=stop)

    def close(self) -> None:
        self.wakeups.close()
        self.db.close()


def _serve_sender(session: _SenderSession, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            session.sender.deliver_all()
            due = session.sender.seconds_until_due()
        except DatabaseUnavailable:
            raise
        except ClawnsoleError as error:
            # A refused statement (a timeout, a read-only server): say so, and try again shortly.
            log_event("alerts_error", logging.WARNING, role="sender", error=str(error))
            stop.wait(_ERROR_PAUSE)
            continue
        sleep = _SENDER_POLL if due is None else min(max(due, 0.05), _SENDER_POLL)
        session.wakeups.wait(sleep, stop)


class _EvaluatorSession:
    def __init__(self, conninfo: str, schema: str, agent: str) -> None:
        self.wakeups = _Wakeups(conninfo, [notify_channel(schema)])
        try:
            self.db = _Db(conninfo, schema, agent)
        except BaseException:
            self.wakeups.close()
            raise

    def close(self) -> None:
        self.wakeups.close()
        self.db.close()


def _serve_evaluator(session: _EvaluatorSession, stop: threading.Event, interval: float) -> None:
    _last, after = session.db.run(_failures_since(None))
    next_round = time.monotonic()
    reason = "start"
    while not stop.is_set():
        try:
            if time.monotonic() >= next_round:
                next_round = time.monotonic() + interval
                _log_round(reason, _evaluate(session.db.queue, interval))
                reason = "interval"
            else:
                last, _now = session.db.run(_failures_since(after))
                if last is not None:
                    after = last
                    _log_round("failure", _evaluate(session.db.queue, interval, ["jobFailures"]))
        except DatabaseUnavailable:
            raise
        except ClawnsoleError as error:
            log_event("alerts_error", logging.WARNING, role="evaluator", error=str(error))
            next_round = time.monotonic() + min(interval, _ERROR_PAUSE)
        looked = time.monotonic()
        session.wakeups.wait(min(_FAILURE_POLL, max(next_round - looked, 0.0)), stop)
        # However busy the items channel (every enqueue notifies it), look at most once per debounce.
        gap = _FAILURE_DEBOUNCE - (time.monotonic() - looked)
        if gap > 0 and time.monotonic() + gap < next_round:
            stop.wait(gap)


def run_alerts(
    conninfo: str,
    schema: str,
    *,
    interval: float = INTERVAL,
    stop: threading.Event,
    channels: Channels | None = None,
    agent: str | None = None,
) -> None:
    """Evaluate rules and deliver notices until `stop` is set (blocks; returns soon after it is).

    `channels` default to the environment's (see `Channels.from_environment`). An error that is not an
    outage — a missing schema, a bug — stops both loops and is raised, so a supervisor sees a broken daemon
    rather than a silent one.
    """
    who = agent or alerts_agent()
    info = _conninfo(conninfo)
    outs = channels or Channels.from_environment()
    failure: list[BaseException] = []
    halt = threading.Event()  # set when either loop ends: by `stop`, or by an error

    def watch() -> None:
        stop.wait()
        halt.set()

    def sender() -> None:
        try:
            _resilient(
                "sender",
                halt,
                lambda: _SenderSession(info, schema, who, outs, halt),
                lambda s: _serve_sender(s, halt),
            )
        except BaseException as error:
            failure.append(error)
        finally:
            halt.set()

    log_event("alerts_started", agent=who, schema=schema, interval=interval, channels=",".join(outs.configured()))
    threading.Thread(target=watch, name="clawnsole-alerts-stop", daemon=True).start()
    sending = threading.Thread(target=sender, name="clawnsole-alerts-sender", daemon=True)
    sending.start()
    try:
        _resilient(
            "evaluator",
            halt,
            lambda: _EvaluatorSession(info, schema, who),
            lambda s: _serve_evaluator(s, halt, interval),
        )
    except BaseException as error:
        failure.append(error)
    finally:
        halt.set()
        sending.join()
        outs.close()
    log_event("alerts_stopped", agent=who)
    if failure:
        raise failure[0]


class JsonLines(logging.Formatter):
    """Log records as one JSON object a line: ts, level, logger, event and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as JSON (`alert_event`/`alert_fields` from `log_event`, else the message)."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        line: dict[str, Any] = {"ts": stamp, "level": record.levelname.lower(), "logger": record.name}
        event = getattr(record, "alert_event", None)
        if event is not None:
            line["event"] = event
            line.update(getattr(record, "alert_fields", {}))
        else:
            line["message"] = record.getMessage()
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(fmt: str = "json", stream: Any = None) -> None:
    """Send `clawnsole.alerts` (and the scheduler's) log lines to stderr as JSON or text, once per process."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonLines() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    for name in ("clawnsole.alerts",):
        logger = logging.getLogger(name)
        if not [h for h in logger.handlers if not isinstance(h, logging.NullHandler)]:
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False
