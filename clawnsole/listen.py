"""LISTEN/NOTIFY wake-ups: enqueues announce their queue; idle claimers block until one of theirs is named."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from clawnsole import ops
from clawnsole.db.connect import connect, unavailable
from clawnsole.models import Item
from clawnsole.queue import WorkQueue, notify_channel


class Listener:
    """A dedicated autocommit connection listening for enqueues into some queues."""

    def __init__(self, conninfo: str, schema: str, queues: Sequence[str]) -> None:
        self._conninfo = conninfo
        self._channel = notify_channel(schema)
        self._queues = set(queues)
        self._conn: psycopg.Connection[Any] | None = None

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

    def wait(self, timeout: float) -> bool:
        """Block up to `timeout` seconds; True when one of our queues was announced."""
        if self._conn is None:
            raise RuntimeError("listener is not open")
        deadline = time.monotonic() + max(timeout, 0.0)
        try:
            while (remaining := deadline - time.monotonic()) > 0:
                for note in self._conn.notifies(timeout=remaining, stop_after=1):
                    if note.payload in self._queues:
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
    while True:
        items = queue.claim_next(queues, lease=lease, limit=limit)
        remaining = deadline - time.monotonic()
        if items or remaining <= 0:
            return items
        due = queue.run(ops.next_due(queues))
        listener.wait(remaining if due is None or due <= 0 else min(remaining, due))
