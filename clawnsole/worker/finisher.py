"""Writes handler outcomes through the worker's source, in batches: on the database every done item waiting
is recorded by one statement, so a fast handler costs a fraction of a round trip per item (over the HTTP API,
one request per item)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from clawnsole.errors import Conflict, DatabaseError, DatabaseUnavailable, InvalidInput, NotFound
from clawnsole.worker.eventlog import EventLog, Record
from clawnsole.worker.inflight import InFlight, Slot
from clawnsole.worker.session import Stopped, retry_call
from clawnsole.worker.tally import Tally

if TYPE_CHECKING:
    from clawnsole.worker.source import Source


class Outcome:
    """A handler's outcome: done with `result` when `error` is None, else a failed attempt."""

    __slots__ = ("error", "result", "retry", "slot")

    def __init__(self, slot: Slot, *, result: Any = None, error: str | None = None, retry: bool = True) -> None:
        self.slot = slot
        self.result = result
        self.error = error
        self.retry = retry


def _fields(slot: Slot, now: float) -> dict[str, Any]:
    item = slot.item
    return {"id": item.id, "queue": item.queue, "attempt": item.attempts, "duration": now - slot.claimed_at}


def short(error: str, limit: int = 300) -> str:
    """The first line of an error, bounded, for a log line."""
    line = error.strip().split("\n", 1)[0]
    return line if len(line) <= limit else line[:limit] + "…"


class Finisher:
    """A thread that records outcomes; `close()` writes what is queued before returning."""

    def __init__(
        self,
        source: Source,
        *,
        inflight: InFlight,
        log: EventLog,
        tally: Tally,
        on_change: Callable[[], None],
    ) -> None:
        self._source = source
        self._batch = max(1, source.finish_batch)
        self._inflight = inflight
        self._log = log
        self._tally = tally
        self._on_change = on_change
        self._queue: queue.SimpleQueue[Outcome | None] = queue.SimpleQueue()
        # Set when shutdown can wait no longer for the database: outcomes still unwritten are abandoned
        # (their leases expire and the items are retried).
        self.abandon = threading.Event()

    def put(self, outcome: Outcome) -> None:
        self._queue.put(outcome)

    def run(self) -> None:
        """Write outcomes as they come, until `close()`."""
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            closing = False
            while len(batch) < self._batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    closing = True
                    break
                batch.append(more)
            self._write(batch)
            if closing:
                return

    def close(self) -> None:
        """Ask `run()` to return once everything queued so far is written."""
        self._queue.put(None)

    def _retry(self, call: Callable[[], Any], what: str) -> Any:
        # A refused statement is tried twice, then the batch is split (a lost connection: until abandoned).
        return retry_call(call, log=self._log, what=what, stop=self.abandon, refused_tries=2)

    def _write(self, batch: list[Outcome]) -> None:
        # The finisher never dies of one batch: what could not be written is logged and let go (its lease
        # expires and the item runs again), and the thread goes on with the next outcomes.
        try:
            records = self._write_done([o for o in batch if o.error is None])
            records += [self._write_failure(o) for o in batch if o.error is not None]
        except Exception as error:
            now = time.monotonic()
            records = [("not_recorded", _fields(o.slot, now) | {"error": short(str(error))}) for o in batch]
        self._inflight.forget(o.slot for o in batch)
        self._log.emit_many(records)
        self._on_change()

    def _write_done(self, done: list[Outcome]) -> list[Record]:
        """Record done items in one statement; when the server refuses it, each alone, so one item the
        database will not store (a failure with the reason) does not take the rest of the batch with it."""
        if not done:
            return []
        pairs = [(o.slot.item.id, o.slot.token, o.result) for o in done]
        try:
            held: set[tuple[int, str]] = self._retry(lambda: self._source.complete(pairs), "recording results")
        except (Stopped, DatabaseUnavailable):
            return [("not_recorded", _fields(o.slot, time.monotonic())) for o in done]
        except (InvalidInput, DatabaseError) as refused:
            if len(done) > 1:
                return [record for outcome in done for record in self._write_done([outcome])]
            reason = f"the result could not be stored: {short(str(refused))}"
            return [self._write_failure(Outcome(done[0].slot, error=reason))]
        now = time.monotonic()
        records: list[Record] = []
        for outcome in done:
            if outcome.slot.key in held:
                records.append(("done", _fields(outcome.slot, now)))
            else:
                records.append(("lease_lost", _fields(outcome.slot, now) | {"outcome": "done"}))
        self._tally.add(done=len(held), lost=len(done) - len(held))
        return records

    def _write_failure(self, outcome: Outcome) -> Record:
        slot = outcome.slot
        error = outcome.error or "failed"
        try:
            item = self._retry(
                lambda: self._source.fail(slot.item.id, slot.token, error, retry=outcome.retry),
                "recording a failure",
            )
        except (Stopped, DatabaseUnavailable):
            return ("not_recorded", _fields(slot, time.monotonic()))
        except (Conflict, NotFound) as rejected:  # LeaseLost is a Conflict
            self._tally.add(lost=1)
            return ("lease_lost", _fields(slot, time.monotonic()) | {"outcome": "failed", "detail": str(rejected)})
        except (InvalidInput, DatabaseError) as refused:
            # Even the failure could not be stored: say so; the lease expires and the item runs again.
            return ("not_recorded", _fields(slot, time.monotonic()) | {"error": short(str(refused))})
        self._tally.add(failed=1)
        fields = _fields(slot, time.monotonic()) | {"error": short(error)}
        if item.status == "pending":
            fields["retry_at"] = item.run_at.isoformat()
        return ("failed", fields)
