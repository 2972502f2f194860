"""The LISTEN side of the worker: a thread that turns enqueue notifications for its queues into wake-ups of
the claim loop, and reconnects (waking the loop, since notifications may have been missed) after a drop."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import psycopg

from clawnsole.db.connect import unavailable
from clawnsole.errors import DatabaseUnavailable
from clawnsole.listen import Listener
from clawnsole.worker.eventlog import EventLog
from clawnsole.worker.inflight import InFlight
from clawnsole.worker.session import Stopped, retry_call

# How long one wait on the connection lasts before the thread checks whether it should stop.
_SLICE = 0.5


class Wakeups:
    """Owns the listening connection; `open()` once before `run()` so readiness means listening."""

    def __init__(
        self,
        conninfo: str,
        schema: str,
        queues: Sequence[str],
        *,
        inflight: InFlight,
        log: EventLog,
        stop: threading.Event,
    ) -> None:
        self._conninfo = conninfo
        self._schema = schema
        self._queues = list(queues)
        self._inflight = inflight
        self._log = log
        self._stop = stop
        self._listener: Listener | None = None

    def open(self) -> None:
        """LISTEN, retrying while the database is unavailable (raises Stopped if the worker stops)."""
        self._listener = retry_call(self._listen, log=self._log, what="listening", stop=self._stop)

    def _listen(self) -> Listener:
        listener = Listener.for_queues(self._conninfo, self._schema, self._queues)
        try:
            return listener.open()
        except psycopg.Error as error:
            listener.close()
            raise unavailable(self._conninfo, error) from None

    def run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._listener is None:
                    self.open()
                    self._log.emit("listening", detail="reconnected")
                    self._inflight.hint()
                assert self._listener is not None
                try:
                    if self._listener.wait(_SLICE):
                        self._inflight.hint()
                except (DatabaseUnavailable, psycopg.Error) as error:
                    self._log.emit("db_unavailable", during="listening", error=str(error))
                    self._listener.close()
                    self._listener = None
        except Stopped:
            pass
        finally:
            self.close()

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
