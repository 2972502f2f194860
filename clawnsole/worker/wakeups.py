"""The LISTEN side of the worker: the connection that hears of enqueues into its queues. One handler thread
at a time listens on it (the listener's turn, see `runtime.py`); after a drop it reconnects and reports a
wake-up, since notifications may have been missed."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import psycopg

from clawnsole.db.connect import unavailable
from clawnsole.errors import DatabaseUnavailable
from clawnsole.listen import Listener
from clawnsole.worker.eventlog import EventLog
from clawnsole.worker.session import retry_call

# How long one wait on the connection lasts before the listening thread checks whether it should stop.
_SLICE = 0.5


class Wakeups:
    """Owns the listening connection; `open()` once before the first `wait()`, so readiness means listening."""

    def __init__(
        self,
        conninfo: str,
        schema: str,
        queues: Sequence[str],
        *,
        log: EventLog,
        stop: threading.Event,
    ) -> None:
        self._conninfo = conninfo
        self._schema = schema
        self._queues = list(queues)
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

    def wait(self) -> bool:
        """Wait up to a slice for a notification: True when one came, or when the connection was just
        reopened after a drop (some may have been missed). Raises Stopped if the worker stops meanwhile."""
        if self._listener is None:
            self.open()
            self._log.emit("listening", detail="reconnected")
            return True
        try:
            return self._listener.wait(_SLICE)
        except (DatabaseUnavailable, psycopg.Error) as error:
            self._log.emit("db_unavailable", during="listening", error=str(error))
            self._listener.close()
            self._listener = None
            return False

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
