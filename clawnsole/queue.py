"""`WorkQueue` (sync) and `AsyncWorkQueue` (asyncio): thin drivers of the operations in `ops`."""

from __future__ import annotations

import builtins
import os
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import errors as pgerrors
from psycopg.pq import ExecStatus
from psycopg.rows import dict_row

from clawnsole import ops
from clawnsole.db.connect import unavailable
from clawnsole.db.migrate import latest_version
from clawnsole.db.sql import statements
from clawnsole.errors import ClawnsoleError, InvalidInput, SchemaMissing
from clawnsole.models import Enqueued, Event, Item, NewItem, QueueCount

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

T = TypeVar("T")
Row = dict[str, Any]

# The connections of a pool the queue opens itself are in autocommit mode: each statement commits on its
# own, in one round trip instead of three (BEGIN, statement, COMMIT). No operation needs its statements in
# one transaction: its one write is a single statement; any other step is housekeeping that stands on its
# own (recovering expired leases, releasing an expired dedupe key) or a read. A caller's `conn=` and a
# caller's own connection or pool keep their transactions as before.
_OWN_POOL_CONNECTIONS: dict[str, Any] = {"connect_timeout": 10, "autocommit": True}


def default_agent() -> str:
    """The agent id used when none is given: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def notify_channel(schema: str) -> str:
    """The LISTEN/NOTIFY channel on which enqueues announce their queue."""
    return f"clawnsole:{schema}"


def _has_rows(cur: psycopg.Cursor[Any] | psycopg.AsyncCursor[Any]) -> bool:
    """Whether the last statement returned a result set. Asked of the result's status rather than of
    `cursor.description`, which builds a Column object per column on every call (a claim returns ~30)."""
    result = cur.pgresult
    return result is not None and result.status == ExecStatus.TUPLES_OK


class _Core:
    """What both drivers share: statement lookup, error translation, the schema check."""

    agent: str

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.channel = notify_channel(schema)
        self._sql = statements(schema)
        self._describe = "the database"

    def _holder(self, agent: str | None, lease_token: str | None) -> str | None:
        """Who a fenced write names: the given agent; else none when the lease token alone fences it."""
        if agent is not None:
            return agent
        return None if lease_token is not None else self.agent

    def _params(self, step: ops.Step) -> dict[str, Any]:
        return {"channel": self.channel, **step.params}

    def _translate(self, error: psycopg.Error) -> ClawnsoleError:
        if isinstance(error, pgerrors.UndefinedTable | pgerrors.InvalidSchemaName | pgerrors.UndefinedFunction):
            return self._schema_missing(None)
        if isinstance(error, pgerrors.DataError | pgerrors.IntegrityError):
            return InvalidInput("input", str(error).splitlines()[0])
        return unavailable(self._describe, error)

    def _schema_missing(self, version: str | None) -> SchemaMissing:
        if version is None:
            return SchemaMissing(f"the {self.schema!r} schema is not set up in this database: run `clawnsole migrate`")
        return SchemaMissing(
            f"the {self.schema!r} schema is at migration {version}, this Clawnsole needs {latest_version()}: "
            "run `clawnsole migrate`"
        )

    def _check_version(self, rows: list[Row]) -> None:
        version = rows[0]["version"] if rows else None
        if version is None or version < latest_version():
            raise self._schema_missing(version)

    def _version_params(self) -> dict[str, Any]:
        return {"ledger": f"{psycopg.sql.Identifier(self.schema).as_string(None)}.schema_migrations"}


class WorkQueue(_Core):
    """A work queue over a PostgreSQL URL, a psycopg pool or one connection.

    Use as a context manager (or call `open()`/`close()`). Every method takes `conn=` to run inside the
    caller's transaction, so an application's own writes and the queue change commit together.
    """

    def __init__(
        self,
        source: str | ConnectionPool | psycopg.Connection[Any],
        *,
        schema: str = "clawnsole",
        agent: str | None = None,
        max_connections: int = 10,
    ) -> None:
        super().__init__(schema)
        self.agent = agent or default_agent()
        self._source = source
        self._max = max_connections
        self._pool: ConnectionPool | None = None
        self._owns_pool = False
        if isinstance(source, psycopg.Connection):
            self._describe = source.info.dsn

    def open(self) -> WorkQueue:
        """Connect (when given a URL) and check the schema is migrated."""
        if isinstance(self._source, str):
            from psycopg_pool import ConnectionPool

            self._describe = self._source
            self._pool = ConnectionPool(
                self._source, min_size=1, max_size=self._max, open=False, kwargs=_OWN_POOL_CONNECTIONS
            )
            try:
                self._pool.open(wait=True, timeout=15)
            except Exception as error:
                self._pool.close()
                raise unavailable(self._source, error) from None
            self._owns_pool = True
        elif not isinstance(self._source, psycopg.Connection):
            self._pool = self._source
        with self._connection(None) as conn:
            self._check_version(
                conn.cursor(row_factory=dict_row)
                .execute(self._sql["schema_version"], self._version_params())
                .fetchall()
            )
        return self

    def close(self) -> None:
        if self._pool is not None and self._owns_pool:
            self._pool.close()
        self._pool = None

    def __enter__(self) -> WorkQueue:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _connection(self, conn: psycopg.Connection[Any] | None) -> Iterator[psycopg.Connection[Any]]:
        try:
            if conn is not None:
                yield conn
            elif isinstance(self._source, psycopg.Connection):
                with self._source.transaction():
                    yield self._source
            else:
                if self._pool is None:
                    raise ClawnsoleError("the work queue is not open: use `with WorkQueue(...)` or call open()")
                with self._pool.connection() as pooled:
                    yield pooled
        except psycopg.Error as error:
            raise self._translate(error) from None

    def run(self, op: ops.Op[T], conn: psycopg.Connection[Any] | None = None) -> T:
        """Drive one operation to its result inside one transaction."""
        with self._connection(conn) as c:
            cur = c.cursor(row_factory=dict_row)
            try:
                step = next(op)
                while True:
                    cur.execute(self._sql[step.name], self._params(step))
                    step = op.send(cur.fetchall() if _has_rows(cur) else [])
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]

    # The public operations: each a thin call of the same operation in `ops`.

    def enqueue(
        self, queue: str, title: str, *, conn: psycopg.Connection[Any] | None = None, **options: Any
    ) -> Enqueued:
        """Add an item (see `ops.enqueue` for the options); idempotent with `dedupe_key`."""
        return self.run(ops.enqueue(queue, title, agent=options.pop("agent", self.agent), **options), conn)

    def enqueue_many(
        self, items: Sequence[NewItem], *, conn: psycopg.Connection[Any] | None = None
    ) -> builtins.list[int]:
        """Add a batch of items in one round trip; returns their ids."""
        return self.run(ops.enqueue_many(items, agent=self.agent), conn)

    def claim_next(
        self,
        queues: str | Sequence[str],
        *,
        agent: str | None = None,
        lease: float | str | None = None,
        limit: int = 1,
        conn: psycopg.Connection[Any] | None = None,
    ) -> builtins.list[Item]:
        """Claim up to `limit` due items from one or more queues (empty list: nothing due)."""
        names = [queues] if isinstance(queues, str) else list(queues)
        return self.run(ops.claim(names, agent=agent or self.agent, lease=lease, limit=limit), conn)

    def progress(
        self,
        item_id: int,
        *,
        agent: str | None = None,
        lease_token: str | None = None,
        note: str | None = None,
        percent: int | None = None,
        extend: float | str | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> Item:
        """Renew the lease and record progress."""
        return self.run(
            ops.progress(
                item_id,
                agent=self._holder(agent, lease_token),
                lease_token=lease_token,
                note=note,
                percent=percent,
                extend=extend,
            ),
            conn,
        )

    def done(
        self,
        item_id: int,
        *,
        agent: str | None = None,
        lease_token: str | None = None,
        result: Any = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> Item:
        """Finish a held item successfully."""
        return self.run(
            ops.done(item_id, agent=self._holder(agent, lease_token), lease_token=lease_token, result=result),
            conn,
        )

    def fail(
        self,
        item_id: int,
        error: str,
        *,
        agent: str | None = None,
        lease_token: str | None = None,
        retry: bool = True,
        backoff: float | str | None = None,
        conn: psycopg.Connection[Any] | None = None,
    ) -> Item:
        """Record a failed attempt (retried after a backoff while attempts remain)."""
        return self.run(
            ops.fail(
                item_id,
                agent=self._holder(agent, lease_token),
                error=error,
                lease_token=lease_token,
                retry=retry,
                backoff=backoff,
            ),
            conn,
        )

    def cancel(self, item_id: int, *, reason: str | None = None, conn: psycopg.Connection[Any] | None = None) -> Item:
        """Cancel a pending item."""
        return self.run(ops.cancel(item_id, agent=self.agent, reason=reason), conn)

    def retry(self, item_id: int, *, conn: psycopg.Connection[Any] | None = None) -> Item:
        """Requeue a failed or cancelled item."""
        return self.run(ops.retry(item_id, agent=self.agent), conn)

    def get(self, item_id: int, *, conn: psycopg.Connection[Any] | None = None) -> Item:
        """One item by id."""
        return self.run(ops.get(item_id), conn)

    def list(self, queue: str | None = None, status: str | None = None, limit: int = 100) -> builtins.list[Item]:
        """Items, newest first."""
        return self.run(ops.list_items(queue, status, limit))

    def history(self, item_id: int) -> builtins.list[Event]:
        """An item's events, oldest first."""
        return self.run(ops.history(item_id))

    def status(self, queue: str | None = None) -> builtins.list[QueueCount]:
        """Counts per queue and status."""
        return self.run(ops.status(queue))


class AsyncWorkQueue(_Core):
    """The asyncio twin of `WorkQueue`: the same operations, driven on an async connection."""

    def __init__(
        self,
        source: str | AsyncConnectionPool | psycopg.AsyncConnection[Any],
        *,
        schema: str = "clawnsole",
        agent: str | None = None,
        max_connections: int = 10,
    ) -> None:
        super().__init__(schema)
        self.agent = agent or default_agent()
        self._source = source
        self._max = max_connections
        self._pool: AsyncConnectionPool | None = None
        self._owns_pool = False
        if isinstance(source, psycopg.AsyncConnection):
            self._describe = source.info.dsn

    async def open(self) -> AsyncWorkQueue:
        """Connect (when given a URL) and check the schema is migrated."""
        if isinstance(self._source, str):
            from psycopg_pool import AsyncConnectionPool

            self._describe = self._source
            self._pool = AsyncConnectionPool(
                self._source, min_size=1, max_size=self._max, open=False, kwargs=_OWN_POOL_CONNECTIONS
            )
            try:
                await self._pool.open(wait=True, timeout=15)
            except Exception as error:
                await self._pool.close()
                raise unavailable(self._source, error) from None
            self._owns_pool = True
        elif not isinstance(self._source, psycopg.AsyncConnection):
            self._pool = self._source
        async with self._connection(None) as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(self._sql["schema_version"], self._version_params())
            self._check_version(await cur.fetchall())
        return self

    async def close(self) -> None:
        if self._pool is not None and self._owns_pool:
            await self._pool.close()
        self._pool = None

    async def __aenter__(self) -> AsyncWorkQueue:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @asynccontextmanager
    async def _connection(
        self, conn: psycopg.AsyncConnection[Any] | None
    ) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        try:
            if conn is not None:
                yield conn
            elif isinstance(self._source, psycopg.AsyncConnection):
                async with self._source.transaction():
                    yield self._source
            else:
                if self._pool is None:
                    raise ClawnsoleError("the work queue is not open: use `async with AsyncWorkQueue(...)`")
                async with self._pool.connection() as pooled:
                    yield pooled
        except psycopg.Error as error:
            raise self._translate(error) from None

    async def run(self, op: ops.Op[T], conn: psycopg.AsyncConnection[Any] | None = None) -> T:
        """Drive one operation to its result inside one transaction."""
        async with self._connection(conn) as c:
            cur = c.cursor(row_factory=dict_row)
            try:
                step = next(op)
                while True:
                    await cur.execute(self._sql[step.name], self._params(step))
                    step = op.send(await cur.fetchall() if _has_rows(cur) else [])
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]

    async def enqueue(
        self, queue: str, title: str, *, conn: psycopg.AsyncConnection[Any] | None = None, **options: Any
    ) -> Enqueued:
        """Add an item (see `ops.enqueue` for the options); idempotent with `dedupe_key`."""
        return await self.run(ops.enqueue(queue, title, agent=options.pop("agent", self.agent), **options), conn)

    async def enqueue_many(
        self, items: Sequence[NewItem], *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> builtins.list[int]:
        """Add a batch of items in one round trip; returns their ids."""
        return await self.run(ops.enqueue_many(items, agent=self.agent), conn)

    async def claim_next(
        self,
        queues: str | Sequence[str],
        *,
        agent: str | None = None,
        lease: float | str | None = None,
        limit: int = 1,
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> builtins.list[Item]:
        """Claim up to `limit` due items from one or more queues (empty list: nothing due)."""
        names = [queues] if isinstance(queues, str) else list(queues)
        return await self.run(ops.claim(names, agent=agent or self.agent, lease=lease, limit=limit), conn)

    async def progress(
        self,
        item_id: int,
        *,
        agent: str | None = None,
        lease_token: str | None = None,
        note: str | None = None,
        percent: int | None = None,
        extend: float | str | None = None,
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> Item:
        """Renew the lease and record progress."""
        return await self.run(
            ops.progress(
                item_id,
                agent=self._holder(agent, lease_token),
                lease_token=lease_token,
                note=note,
                percent=percent,
                extend=extend,
            ),
            conn,
        )

    async def done(
        self,
        item_id: int,
        *,
        agent: str | None = None,
        lease_token: str | None = None,
        result: Any = None,
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> Item:
        """Finish a held item successfully."""
        return await self.run(
            ops.done(item_id, agent=self._holder(agent, lease_token), lease_token=lease_token, result=result),
            conn,
        )

    async def fail(
        self,
        item_id: int,
        error: str,
        *,
        agent: str | None = None,
        lease_token: str | None = None,
        retry: bool = True,
        backoff: float | str | None = None,
        conn: psycopg.AsyncConnection[Any] | None = None,
    ) -> Item:
        """Record a failed attempt (retried after a backoff while attempts remain)."""
        return await self.run(
            ops.fail(
                item_id,
                agent=self._holder(agent, lease_token),
                error=error,
                lease_token=lease_token,
                retry=retry,
                backoff=backoff,
            ),
            conn,
        )

    async def cancel(
        self, item_id: int, *, reason: str | None = None, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> Item:
        """Cancel a pending item."""
        return await self.run(ops.cancel(item_id, agent=self.agent, reason=reason), conn)

    async def retry(self, item_id: int, *, conn: psycopg.AsyncConnection[Any] | None = None) -> Item:
        """Requeue a failed or cancelled item."""
        return await self.run(ops.retry(item_id, agent=self.agent), conn)

    async def get(self, item_id: int, *, conn: psycopg.AsyncConnection[Any] | None = None) -> Item:
        """One item by id."""
        return await self.run(ops.get(item_id), conn)

    async def list(self, queue: str | None = None, status: str | None = None, limit: int = 100) -> builtins.list[Item]:
        """Items, newest first."""
        return await self.run(ops.list_items(queue, status, limit))

    async def history(self, item_id: int) -> builtins.list[Event]:
        """An item's events, oldest first."""
        return await self.run(ops.history(item_id))

    async def status(self, queue: str | None = None) -> builtins.list[QueueCount]:
        """Counts per queue and status."""
        return await self.run(ops.status(queue))


__all__ = ["AsyncWorkQueue", "WorkQueue", "default_agent", "notify_channel"]
