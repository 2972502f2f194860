"""Lease renewal for every item in flight, in one statement per beat; a lease found gone stops its handler.
Each successful beat also proves the database answers, which is what the systemd watchdog is fed on.

On the database the heartbeat has a connection of its own (handlers' progress calls and shutdown releases
use another), so nothing queues in front of a beat; over the HTTP API each beat renews every lease with a
progress report that extends it. Beats keep a fixed rate: the next one is due `interval` after the last
one was due, not after it ended, so a slow beat does not push every later one back; a beat that comes due
while one is still running runs as soon as that one ends. A gap between two renewals longer than half the
lease is logged (`heartbeat_late`), and the longest gap is reported when the worker stops.

After each successful beat, the source refreshes the worker's row in the workers registry (last seen, in
flight, done and failed counts; on the database only); a failure of that is logged, never fatal."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from clawnsole.errors import DatabaseError
from clawnsole.worker.eventlog import EventLog
from clawnsole.worker.inflight import InFlight, Slot
from clawnsole.worker.session import Stopped, retry_call
from clawnsole.worker.tally import Tally

if TYPE_CHECKING:
    from clawnsole.worker.source import Source


class Heartbeat:
    """Renews leases every `interval` seconds until `stop` is set."""

    def __init__(
        self,
        source: Source,
        *,
        interval: float,
        lease: float,
        inflight: InFlight,
        log: EventLog,
        tally: Tally,
        stop: threading.Event,
        on_beat: Callable[[], None],
    ) -> None:
        self._source = source
        self.interval = interval
        self._lease = lease
        self._inflight = inflight
        self._log = log
        self._tally = tally
        self._stop = stop
        self._on_beat = on_beat
        # Seconds between the two furthest-apart successful renewals so far (reported at stop).
        self.worst_gap = 0.0
        self._last_renewal: float | None = None

    def run(self) -> None:
        self._last_renewal = due = time.monotonic()
        while True:
            due += self.interval
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            self.beat()
            # Behind by more than a beat (a slow beat, an outage): start the rate again from now rather
            # than firing a burst of beats to catch up.
            due = max(due, time.monotonic() - self.interval)

    def beat(self) -> bool:
        """Renew every held lease once; False when the database could not be reached within the interval."""
        leases = self._inflight.held()
        try:
            # Within one interval, keep trying (with backoff): the next beat is the next chance anyway.
            # With nothing held, one round trip still proves the queue answers (the watchdog is fed on it).
            renewed = retry_call(
                lambda: self._source.renew(leases),
                log=self._log,
                what="renewing leases" if leases else "heartbeat",
                stop=self._stop,
                give_up_after=self.interval,
            )
        except (DatabaseError, Stopped):
            return False
        self._renewed()
        # A lease not renewed is lost only if its handler is still running: an outcome written meanwhile
        # also ends the lease, and is fenced by its own statement.
        lost = self._inflight.lose(key for key in leases if key not in renewed)
        stop_lost(lost, log=self._log, tally=self._tally, detail="renewal found the lease held elsewhere")
        self._on_beat()
        # After the watchdog is fed: the registry is for people, the renewal above is what keeps the leases.
        self._source.refresh(in_flight=self._inflight.count(), done=self._tally.done, failed=self._tally.failed)
        return True

    def _renewed(self) -> None:
        now = time.monotonic()
        if self._last_renewal is not None:
            gap = now - self._last_renewal
            self.worst_gap = max(self.worst_gap, gap)
            if gap > self._lease / 2:
                self._log.emit("heartbeat_late", gap=round(gap, 3), lease=self._lease, interval=self.interval)
        self._last_renewal = now


def stop_lost(slots: list[Slot], *, log: EventLog, tally: Tally, detail: str) -> None:
    """Tell the handlers of claims found lost to stop (their outcomes will not be written), and say so."""
    now = time.monotonic()
    for slot in slots:
        slot.ctx.cancel("lease lost")
        log.emit(
            "lease_lost",
            id=slot.item.id,
            queue=slot.item.queue,
            attempt=slot.item.attempts,
            duration=now - slot.claimed_at,
            detail=f"{detail}; stopping the handler",
        )
    if slots:
        tally.add(lost=len(slots))
