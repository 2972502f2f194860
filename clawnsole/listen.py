"""LISTEN/NOTIFY wake-ups: enqueues announce their queue; idle claimers block until one of theirs is named."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection, Sequence
from typing import Any

import psycopg
from psycopg import sql

from clawnsole import ops
from clawnsole.db.connect import connect, unavailable
from clawnsole.models import Item
from clawnsole.queue import WorkQueue, notify_channel

_STOP_CHECK = 0.25
# When an item is due but was not claimable (its row locked by another transaction), look again after this
# long, doubling up to _RETRY_MAX while it stays so: never sleep the whole wait on it.
_RETRY_FIRST = 0.25
_RETRY_MAX = 1.0


class Listener:
    """A dedicated autocommit connection listening on one channel (optionally for some payloads only)."""

    def __init__(self, conninfo: str, channel: str, payloads: Collection[str] | None = None) -> None:
        self._conninfo = conninfo
        self._channel = channel
        self._payloads = None if payloads is None else set(payloads)
        self._conn: psycopg.Connection[Any] | None = None

    @classmethod
    def for_queues(cls, conninfo: str, schema: str, queues: Collection[str]) -> Listener:
        """A listener woken by enqueues into these queues."""
        return cls(conninfo, notify_channel(schema), queues)

    def open(self) -> Listener:
        self._conn = connect(self._conninfo, autocommit=True)
        self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        return self

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Listener:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait(self, timeout: float, stop: threading.Event | None = None) -> bool:
        """Block up to `timeout` seconds; True when a matching notification arrived. A set `stop` ends the
        wait early (checked every quarter second); a burst of notifications is one wake-up."""
        if self._conn is None:
            raise RuntimeError("listener is not open")
        deadline = time.monotonic() + max(timeout, 0.0)
        slice_ = _STOP_CHECK if stop is not None else None
        try:
            while (stop is None or not stop.is_set()) and (remaining := deadline - time.monotonic()) > 0:
                woken = False
                for note in self._conn.notifies(timeout=min(remaining, slice_ or remaining), stop_after=1):
                    woken = self._payloads is None or note.payload in self._payloads
                if woken:
                    # Drain what is already here (not inside the loop above: notifies() holds the lock),
                    # without waiting: the next wait takes whatever comes later.
                    for _ in self._conn.notifies(timeout=0):
                        pass
                    return True
            return False
        except psycopg.OperationalError as error:
            raise unavailable(self._conninfo, error) from None


def claim_waiting(
    queue: WorkQueue,
    listener: Listener,
    queues: Sequence[str],
    *,
    timeout: float,
    lease: float | str | None = None,
    limit: int = 1,
) -> list[Item]:
    """Claim, or block on the listener (and on the next delayed item coming due) until `timeout` passes."""
    deadline = time.monotonic() + timeout
    retry = _RETRY_FIRST
    while True:
        items = queue.claim_next(queues, lease=lease, limit=limit)
        remaining = deadline - time.monotonic()
        if items or remaining <= 0:
            return items
        due = queue.run(ops.next_due(queues))
        if due is not None and due <= 0:
            # Due, yet the claim skipped it: another transaction holds its row (a claimer that will roll
            # back, an admin's SELECT … FOR UPDATE). Its release sends no NOTIFY, so look again soon.
            listener.wait(min(remaining, retry))
            retry = min(retry * 2, _RETRY_MAX)
            continue
        retry = _RETRY_FIRST
        listener.wait(remaining if due is None else min(remaining, due))
