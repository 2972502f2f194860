"""The outbox sender: claim due notices, send each through its channel, record every attempt.

The evaluation round writes `alert_outbox` rows in the transaction that fires or resolves an alert; this
module gets them out. Its operations are sans-I/O generators of named statements (like `clawnsole.ops`), and
`Sender` drives them on a `WorkQueue`:

1. `claim` (one short transaction): due rows in id order, `FOR UPDATE SKIP LOCKED`, a bounded batch, each
   marked in flight by pushing `next_attempt_at` out by `IN_FLIGHT` seconds — a lease: a sender that dies
   mid-send leaves the row to be taken again once that passes.
2. send, with no transaction open and no row locked: each channel's notices in their own thread, in id order,
   a few quick retries within the call (tenacity: jittered exponential, honouring a short Retry-After).
3. `record` (one statement): the attempt goes to `alert_deliveries`; the row is sent, or due again after an
   exponential backoff with jitter, or given up after `MAX_ATTEMPTS` or `GIVE_UP_AFTER` (recorded, never
   silently dropped). A channel that failed stops for the rest of its batch (those rows are handed back
   untried), so a channel that is down costs one call per pass and never holds up the other channels or
   the queue. A channel not configured here is recorded as failed at once, with the variable to set.

Delivery is at least once: a sender killed between a channel's acceptance and `record` sends that notice again
after `IN_FLIGHT`; the webhook body's `delivery_id` lets receivers drop the duplicate.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from psycopg.types.json import Jsonb
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from clawnsole.alerts.channels import CHANNELS, ChannelError, Channels, NotConfigured, Sent, SlackIdentity
from clawnsole.alerts.messages import SEVERITIES, AlertMessage
from clawnsole.errors import InvalidInput, NotFound
from clawnsole.ops import Op, Step

if TYPE_CHECKING:
    from clawnsole.queue import WorkQueue

T = TypeVar("T")
log = logging.getLogger("clawnsole.alerts")
# A library's logger says nothing until the application configures logging (the daemon does: runtime.py).
log.addHandler(logging.NullHandler())

# Notices claimed per pass (across channels); a pass with a full batch is followed by another at once.
BATCH = 50
# Tries of one notice within one call, and the cap on the wait between them (seconds).
TRIES = 3
_TRY_WAIT_MAX = 4.0
# Seconds a claimed notice is held in flight: TRIES sends at the channels' 15 s timeout plus the waits, and a
# margin. Past it, another sender may take the notice.
IN_FLIGHT = 90.0
# Later attempts: FIRST * 2^(attempt-1) seconds, capped at MAX, ±20 % jitter (a channel down for a minute is
# tried again within about two; one down for hours, every quarter of an hour).
BACKOFF_FIRST = 15.0
BACKOFF_MAX = 900.0
# A notice is given up (and the reason recorded) after this many attempts or this long after it was written.
MAX_ATTEMPTS = 100
GIVE_UP_AFTER = 24 * 3600.0
# A notice for a channel this process cannot send through waits this long for a process that can.
UNCONFIGURED_GRACE = 300.0


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured log line (`clawnsole.alerts`); the daemon renders it as JSON (see runtime.JsonLines).
    Fields are names, ids and redacted errors — never a message body or a secret."""
    values = {k: v for k, v in fields.items() if v is not None}
    text = " ".join([event, *(f"{k}={v}" for k, v in values.items())])
    log.log(level, text, extra={"alert_event": event, "alert_fields": values})


def backoff(attempt: int) -> float:
    """Seconds before the next attempt after `attempt` failed ones: exponential, capped, jittered."""
    base: float = min(BACKOFF_FIRST * 2.0 ** max(attempt - 1, 0), BACKOFF_MAX)
    return base * random.uniform(0.8, 1.2)


# --- the notices --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """A claimed outbox row: what to send, where, and the attempt it is (the fence for recording it)."""

    id: int
    alert_id: int | None
    channel: str
    kind: str
    message: AlertMessage
    created_at: datetime
    attempt: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Notice:
        """A notice from an `alert_outbox_claim` row."""
        raw = row["message"] if isinstance(row["message"], Mapping) else {}
        return cls(
            id=int(row["id"]),
            alert_id=row["alert_id"],
            channel=str(row["channel"]),
            kind=str(row["kind"]),
            message=AlertMessage.from_json(raw, row["created_at"]),
            created_at=row["created_at"],
            attempt=int(row["attempts"]),
        )


@dataclass(frozen=True)
class Outcome:
    """What became of one notice in a pass: sent, retrying (due again at `next_attempt_at`), failed (given up),
    deferred (handed back untried: its channel failed on an earlier notice), or lost (another sender took it)."""

    id: int
    channel: str
    status: str
    attempt: int
    error: str | None = None
    status_code: int | None = None
    next_attempt_at: datetime | None = None

    @property
    def ok(self) -> bool:
        """Whether the channel accepted the notice."""
        return self.status == "sent"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "id": self.id,
            "channel": self.channel,
            "status": self.status,
            "attempt": self.attempt,
            "status_code": self.status_code,
            "error": self.error,
            "next_attempt_at": None if self.next_attempt_at is None else self.next_attempt_at.isoformat(),
        }


@dataclass(frozen=True)
class HistoryEntry:
    """One notice as `alert history` lists it."""

    id: int
    alert_id: int | None
    created_at: datetime
    channel: str
    kind: str
    rule: str
    severity: str
    subject: str
    summary: str
    status: str
    attempts: int
    sent_at: datetime | None
    last_error: str | None
    message: Mapping[str, Any]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> HistoryEntry:
        """An entry from an `alert_outbox_history` or `alert_outbox_get` row."""
        message = AlertMessage.from_json(
            row["message"] if isinstance(row["message"], Mapping) else {}, row["created_at"]
        )
        return cls(
            id=int(row["id"]),
            alert_id=row["alert_id"],
            created_at=row["created_at"],
            channel=str(row["channel"]),
            kind=str(row["kind"]),
            rule=message.rule,
            severity=message.severity,
            subject=message.where,
            summary=message.summary,
            status=_status(row),
            attempts=int(row["attempts"]),
            sent_at=row["sent_at"],
            last_error=row["last_error"],
            message=message.raw,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the stored message included)."""
        return {
            "id": self.id,
            "alert_id": self.alert_id,
            "created_at": self.created_at.isoformat(),
            "channel": self.channel,
            "kind": self.kind,
            "rule": self.rule,
            "severity": self.severity,
            "subject": self.subject,
            "summary": self.summary,
            "status": self.status,
            "attempts": self.attempts,
            "sent_at": None if self.sent_at is None else self.sent_at.isoformat(),
            "last_error": self.last_error,
            "message": dict(self.message),
        }


def _status(row: Mapping[str, Any]) -> str:
    if row["sent_at"] is not None:
        return "sent"
    if row["given_up_at"] is not None:
        return "failed"
    return "retrying" if row["attempts"] else "pending"


# --- operations (sans-I/O) ----------------------------------------------------------------------------------


def claim(
    channels: Sequence[str], *, limit: int = BATCH, lease: float = IN_FLIGHT, grace: float = UNCONFIGURED_GRACE
) -> Op[list[Notice]]:
    """Claim due notices (for `channels`, or any channel once `grace` has passed), marking them in flight."""
    rows = yield Step(
        "alert_outbox_claim", {"channels": list(channels), "limit": limit, "lease": lease, "grace": grace}
    )
    return [Notice.from_row(r) for r in rows]


def claim_one(outbox_id: int, *, lease: float = IN_FLIGHT) -> Op[list[Notice]]:
    """Claim one notice by id whether or not it is due (empty: sent, given up, or held by another sender)."""
    rows = yield Step("alert_outbox_claim_one", {"id": outbox_id, "lease": lease})
    return [Notice.from_row(r) for r in rows]


def record(
    notice: Notice,
    *,
    agent: str,
    sent: Sent | None = None,
    failure: ChannelError | None = None,
    final: bool = False,
    delay: float | None = None,
) -> Op[Outcome]:
    """Record one attempt: sent (`sent`), or failed (`failure`), due again after `delay` unless `final` or
    the attempts or the day are used up. Outcome `lost` when another sender took the notice over meanwhile."""
    ok = sent is not None
    rows = yield Step(
        "alert_outbox_record",
        {
            "id": notice.id,
            "attempt": notice.attempt,
            "channel": notice.channel,
            "ok": ok,
            "status_code": sent.status if sent is not None else (failure.status if failure else None),
            "error": None if failure is None else failure.message,
            "final": final,
            "delay": backoff(notice.attempt) if delay is None else delay,
            "max_attempts": MAX_ATTEMPTS,
            "give_up_after": GIVE_UP_AFTER,
            "agent": agent,
        },
    )
    error = None if failure is None else failure.message
    code = sent.status if sent is not None else (failure.status if failure else None)
    if not rows:
        return Outcome(notice.id, notice.channel, "lost", notice.attempt, error, code)
    row = rows[0]
    if row["sent_at"] is not None:
        return Outcome(notice.id, notice.channel, "sent", notice.attempt, None, code)
    if row["given_up_at"] is not None:
        return Outcome(notice.id, notice.channel, "failed", notice.attempt, error, code)
    return Outcome(notice.id, notice.channel, "retrying", notice.attempt, error, code, row["next_attempt_at"])


def release(notice: Notice, *, delay: float) -> Op[bool]:
    """Hand a claimed notice back untried (the attempt not counted), due again after `delay` seconds."""
    rows = yield Step("alert_outbox_release", {"id": notice.id, "attempt": notice.attempt, "delay": delay})
    return bool(rows)


def test_message(channel: str, severity: str, agent: str) -> dict[str, Any]:
    """The message of a test notice (`clawnsole alert test`)."""
    return {
        "rule": "alert-test",
        "description": "A test notice sent by `clawnsole alert test`.",
        "severity": severity,
        "state": "test",
        "subject": {"type": "queue", "name": "(test)"},
        "summary": f"If you can read this, Clawnsole's {channel} channel works (sent by {agent}).",
        "details": {},
        "since": None,
        "item_ids": [],
        "command": "clawnsole alert history --limit 5",
        "suppressed": 0,
    }


def insert_test(channel: str, severity: str, *, agent: str) -> Op[int]:
    """Write a test notice for one channel; returns its outbox id."""
    if channel not in CHANNELS:
        raise InvalidInput("channel", f"must be one of {', '.join(CHANNELS)}")
    if severity not in SEVERITIES:
        raise InvalidInput("severity", f"must be one of {', '.join(SEVERITIES)}")
    message = Jsonb(test_message(channel, severity, agent))
    rows = yield Step("alert_outbox_insert_test", {"channel": channel, "message": message, "lease": IN_FLIGHT})
    return int(rows[0]["id"])


def next_due(channels: Sequence[str], *, grace: float = UNCONFIGURED_GRACE) -> Op[float | None]:
    """Seconds until the earliest notice this sender would take is due (≤ 0: now; None: none waiting)."""
    rows = yield Step("alert_outbox_next_due", {"channels": list(channels), "grace": grace})
    seconds = rows[0]["seconds"] if rows else None
    return None if seconds is None else float(seconds)


def get(outbox_id: int) -> Op[tuple[HistoryEntry, list[dict[str, Any]]]]:
    """One notice and its attempts (oldest first)."""
    rows = yield Step("alert_outbox_get", {"id": outbox_id})
    if not rows:
        raise NotFound(f"no alert notice with id {outbox_id}")
    return HistoryEntry.from_row(rows[0]), list(rows[0]["deliveries"])


def history(
    *, limit: int = 50, severity: str | None = None, rule: str | None = None, subject: str | None = None
) -> Op[list[HistoryEntry]]:
    """The newest notices first, optionally of one severity, rule or job (queue, schedule) name."""
    if not 1 <= limit <= 10000:
        raise InvalidInput("limit", "must be between 1 and 10000")
    if severity is not None and severity not in SEVERITIES:
        raise InvalidInput("severity", f"must be one of {', '.join(SEVERITIES)}")
    rows = yield Step("alert_outbox_history", {"limit": limit, "severity": severity, "rule": rule, "subject": subject})
    return [HistoryEntry.from_row(r) for r in rows]


# --- the sender ---------------------------------------------------------------------------------------------


class _Stopping(Exception):
    """The sender was asked to stop while waiting to retry a notice."""


@dataclass(frozen=True)
class Report:
    """What one pass did, notice by notice (claim order)."""

    outcomes: list[Outcome]

    @property
    def sent(self) -> list[Outcome]:
        """The notices delivered."""
        return [o for o in self.outcomes if o.ok]

    @property
    def failed(self) -> list[Outcome]:
        """The notices attempted without success (retrying or given up)."""
        return [o for o in self.outcomes if o.status in ("retrying", "failed")]


class Sender:
    """Delivers due outbox notices through `channels`, recording each attempt (see the module docstring).

    Safe to run in any number of processes at once. Statements go through `queue` one at a time (a lock), so
    a `WorkQueue` over a single connection serves the per-channel threads.
    """

    def __init__(
        self,
        queue: WorkQueue,
        channels: Channels,
        *,
        agent: str | None = None,
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self._queue = queue
        self.channels = channels
        self.agent = agent or queue.agent
        self._stop = stop
        self._sleep = sleep
        self._db = threading.Lock()

    def _run(self, op: Op[T]) -> T:
        with self._db:
            return self._queue.run(op)

    def deliver_due(self, *, outbox_id: int | None = None, limit: int = BATCH) -> Report:
        """One pass: claim up to `limit` due notices (or just `outbox_id`, due or not) and send them."""
        self.channels.use_identity(self._identity())
        notices = self._run(
            claim(self.channels.configured(), limit=limit) if outbox_id is None else claim_one(outbox_id)
        )
        if not notices:
            return Report([])
        by_channel: dict[str, list[Notice]] = {}
        for notice in notices:
            by_channel.setdefault(notice.channel, []).append(notice)
        if len(by_channel) == 1:
            results = [self._send_channel(next(iter(by_channel.values())))]
        else:
            # One thread per channel: a slow or dead channel delays only its own notices.
            with ThreadPoolExecutor(max_workers=len(by_channel), thread_name_prefix="clawnsole-alerts") as pool:
                results = list(pool.map(self._send_channel, by_channel.values()))
        done = {o.id: o for outcomes in results for o in outcomes}
        return Report([done[n.id] for n in notices])

    def _identity(self) -> SlackIdentity:
        # The stored settings' `slack:` block (rules.py owns the settings), read per pass: an edit applies at once.
        from clawnsole.alerts.ops import get_settings

        settings = self._run(get_settings())
        return SlackIdentity(settings.slack_channel, settings.slack_username, settings.slack_icon_emoji)

    def deliver_all(self, *, limit: int = BATCH) -> Report:
        """Passes until no due notice is left (each pass's failures wait for their backoff)."""
        outcomes: list[Outcome] = []
        while True:
            report = self.deliver_due(limit=limit)
            outcomes += report.outcomes
            if len(report.outcomes) < limit or (self._stop is not None and self._stop.is_set()):
                return Report(outcomes)

    def seconds_until_due(self) -> float | None:
        """Seconds until the next notice this sender would take is due (None: none waiting)."""
        return self._run(next_due(self.channels.configured()))

    def test(self, channel: str, severity: str = "low") -> tuple[Outcome, HistoryEntry]:
        """Write a test notice for `channel` and send it now, through the same path as every notice."""
        outbox_id = self._run(insert_test(channel, severity, agent=self.agent))
        report = self.deliver_due(outbox_id=outbox_id)
        entry, _attempts = self._run(get(outbox_id))
        if report.outcomes:
            return report.outcomes[0], entry
        # Held by another transaction (it is not due for another sender until IN_FLIGHT): say where it is.
        return Outcome(outbox_id, channel, entry.status, entry.attempts, entry.last_error), entry

    def _send_channel(self, notices: list[Notice]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        failed: Outcome | None = None
        for notice in notices:
            if failed is not None or (self._stop is not None and self._stop.is_set()):
                # Untried: the channel just failed (or we are stopping). Back in the queue, attempt uncounted.
                delay = backoff(failed.attempt) if failed is not None else 0.0
                self._run(release(notice, delay=delay))
                outcomes.append(Outcome(notice.id, notice.channel, "deferred", notice.attempt - 1))
                continue
            outcome = self._send_one(notice)
            outcomes.append(outcome)
            if outcome.status in ("retrying", "failed"):
                failed = outcome
        return outcomes

    def _send_one(self, notice: Notice) -> Outcome:
        fields: dict[str, Any] = {
            "outbox_id": notice.id,
            "channel": notice.channel,
            "rule": notice.message.rule,
            "severity": notice.message.severity,
            "state": notice.message.state,
            "subject": notice.message.where,
            "attempt": notice.attempt,
        }
        try:
            channel = self.channels.get(notice.channel)
            sent = self._with_retries(lambda: channel.send(notice.message, delivery_id=notice.id))
        except _Stopping:
            self._run(release(notice, delay=0.0))
            return Outcome(notice.id, notice.channel, "deferred", notice.attempt - 1)
        except NotConfigured as error:
            outcome = self._run(record(notice, agent=self.agent, failure=error, final=True))
            log_event("alert_not_sent", logging.WARNING, **fields, error=error.message, outcome=outcome.status)
            return outcome
        except ChannelError as error:
            delay = backoff(notice.attempt)
            if error.retry_after is not None:
                delay = max(delay, min(error.retry_after, BACKOFF_MAX))
            outcome = self._run(record(notice, agent=self.agent, failure=error, delay=delay))
            retry_in = None if outcome.status != "retrying" else round(delay, 1)
            log_event(
                "alert_send_failed",
                logging.WARNING,
                **fields,
                error=error.message,
                outcome=outcome.status,
                retry_in=retry_in,
            )
            return outcome
        outcome = self._run(record(notice, agent=self.agent, sent=sent))
        log_event("alert_sent", **fields, status_code=sent.status, outcome=outcome.status)
        return outcome

    def _with_retries(self, send: Callable[[], Sent]) -> Sent:
        def retryable(error: BaseException) -> bool:
            # A channel asking for a longer pause than a quick retry allows gets it from the outbox's schedule.
            return (
                isinstance(error, ChannelError)
                and error.retry
                and (error.retry_after is None or error.retry_after <= _TRY_WAIT_MAX)
            )

        exponential = wait_random_exponential(multiplier=0.5, max=_TRY_WAIT_MAX)

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            if isinstance(error, ChannelError) and error.retry_after is not None and error.retry_after <= _TRY_WAIT_MAX:
                return error.retry_after
            return float(exponential(state))

        def nap(seconds: float) -> None:
            if self._sleep is not None:
                self._sleep(seconds)
            elif self._stop is None:
                threading.Event().wait(seconds)
            elif self._stop.wait(seconds):
                raise _Stopping

        retrying = Retrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(TRIES),
            wait=wait,
            sleep=nap,
            reraise=True,
        )
        return retrying(send)
