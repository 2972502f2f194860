"""Lease renewal for every item in flight, in one statement per beat; a lease found gone stops its handler.
Each successful beat also proves the database answers, which is what the systemd watchdog is fed on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from clawnsole import ops
from clawnsole.errors import DatabaseUnavailable
from clawnsole.worker import steps
from clawnsole.worker.eventlog import EventLog
from clawnsole.worker.inflight import InFlight
from clawnsole.worker.session import Session, Stopped, retry_call
from clawnsole.worker.tally import Tally


class Heartbeat:
    """Renews leases every `interval` seconds until `stop` is set."""

    def __init__(
        self,
        session: Session,
        *,
        agent: str,
        interval: float,
        inflight: InFlight,
        log: EventLog,
        tally: Tally,
        stop: threading.Event,
        on_beat: Callable[[], None],
    ) -> None:
        self._session = session
        self._agent = agent
        self.interval = interval
        self._inflight = inflight
        self._log = log
        self._tally = tally
        self._stop = stop
        self._on_beat = on_beat

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> bool:
        """Renew every held lease once; False when the database could not be reached within the interval."""
        leases = self._inflight.held()
        try:
            # Within one interval, keep trying (with backoff): the next beat is the next chance anyway.
            if leases:
                renewed = retry_call(
                    lambda: self._session.run(ops.heartbeat(leases, agent=self._agent)),
                    log=self._log,
                    what="renewing leases",
                    stop=self._stop,
                    give_up_after=self.interval,
                )
            else:
                retry_call(
                    lambda: self._session.run(steps.ping()),
                    log=self._log,
                    what="heartbeat",
                    stop=self._stop,
                    give_up_after=self.interval,
                )
                renewed = set()
        except (DatabaseUnavailable, Stopped):
            return False
        # A lease not renewed is lost only if its handler is still running: an outcome written meanwhile
        # also ends the lease, and is fenced by its own statement.
        lost = self._inflight.lose(item_id for item_id, _ in leases if item_id not in renewed)
        now = time.monotonic()
        for slot in lost:
            slot.ctx.cancel("lease lost")
            self._log.emit(
                "lease_lost",
                id=slot.item.id,
                queue=slot.item.queue,
                attempt=slot.item.attempts,
                duration=now - slot.claimed_at,
                detail="renewal found the lease held elsewhere; stopping the handler",
            )
        if lost:
            self._tally.add(lost=len(lost))
        self._on_beat()
        return True
