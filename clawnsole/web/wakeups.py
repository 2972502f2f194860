"""One LISTEN connection for the whole server: enqueue notifications (payload: the queue) wake the claims
that wait for an item (`wait`) and the SSE streams. Polling stays the backstop: a waiter also wakes on its
own timeout, so a lost notification costs a delay, never an item."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection

import psycopg
from psycopg import sql

from clawnsole.queue import notify_channel

log = logging.getLogger("clawnsole.web")

_RECONNECT = 1.0


class Wakeups:
    """Broadcasts each notification to the waiters whose queues it names (None: any queue)."""

    def __init__(self, conninfo: str, schema: str) -> None:
        self._conninfo = conninfo
        self._channel = notify_channel(schema)
        self._waiters: set[tuple[frozenset[str] | None, asyncio.Event]] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Listen in a background task (reconnecting while the database is away)."""
        self._task = asyncio.create_task(self._listen(), name="clawnsole-wakeups")

    async def stop(self) -> None:
        """Stop listening; wakes every waiter so none outlives the server."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, event in list(self._waiters):
            event.set()

    @property
    def waiting(self) -> int:
        """How many claims are waiting for an enqueue right now."""
        return len(self._waiters)

    async def wait(self, queues: Collection[str] | None, timeout: float) -> bool:
        """Block up to `timeout` for an enqueue into one of `queues` (None: any); True when one came."""
        event = asyncio.Event()
        entry = (None if queues is None else frozenset(queues), event)
        self._waiters.add(entry)
        try:
            async with asyncio.timeout(max(timeout, 0.0)):
                await event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters.discard(entry)

    def _wake(self, queue: str) -> None:
        for wanted, event in list(self._waiters):
            if wanted is None or queue in wanted:
                event.set()

    async def _listen(self) -> None:
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True, connect_timeout=5)
                async with conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
                    async for note in conn.notifies():
                        self._wake(note.payload)
            except psycopg.Error as error:
                log.debug("wake-up listener lost its connection, reconnecting: %s", type(error).__name__)
            # Whatever was missed while reconnecting: waiters look again now.
            for _, event in list(self._waiters):
                event.set()
            await asyncio.sleep(_RECONNECT)
