"""`WorkQueue` (sync) and `AsyncWorkQueue` (asyncio): thin drivers of the operations in `ops`."""

from __future__ import annotations

import asyncio
import builtins
import os
import random
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg import errors as pgerrors
from psycopg.pq import ExecStatus
from psycopg.rows import dict_row

from clawnsole import ops, validate
from clawnsole.db.connect import first_line, is_connection_error, unavailable
from clawnsole.db.migrate import latest_version
from clawnsole.db.sql import statements
from clawnsole.errors import ClawnsoleError, DatabaseError, DatabaseUnavailable, InvalidInput, SchemaMissing
from clawnsole.models import Enqueued, Event, Item, NewItem, QueueCount

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool, ConnectionPool

T = TypeVar("T")
Row = dict[str, Any]

# The connections of a pool the queue opens itself are in autocommit mode. An operation run by `run()`
# still gets one transaction (BEGIN … COMMIT around its statements); the item operations, whose statements
# each stand alone (their one write is a single statement; any other step is a read or housekeeping that
# stands on its own: recovering expired leases, releasing an expired dedupe key), are run by `run_steps()`,
# where each statement commits on its own in one round trip instead of three. A caller's `conn=` and a
# caller's own connection or pool keep their transactions as before.
_OWN_POOL_CONNECTIONS: dict[str, Any] = {"connect_timeout": 10, "autocommit": True}

# A statement that stands alone and lost a deadlock or a serialization conflict rolled back by itself:
# running it again on the same connection is safe, and is what the server's message asks for.
_ROLLBACK_TRIES = 5

# An enqueue with a dedupe key is retried this long when the connection is lost (the retry returns the
# item if the first attempt had committed); one without a key is never retried by the library.
_ENQUEUE_RETRY_SECONDS = 10.0


def default_agent() -> str:
    """The agent id used when none is given: host:pid:random, unique per process (and per queue object),
    so two processes on one host never pass for the same holder."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


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
        # Checked before any I/O: the schema names the NOTIFY channels, which PostgreSQL caps at 63 bytes.
        self.schema = validate.schema_name(schema)
        self.channel = notify_channel(schema)
        self._sql = statements(schema)
        self._describe = "the database"

    def _params(self, step: ops.Step) -> dict[str, Any]:
        return {"channel": self.channel, **step.params}

    def _translate(self, error: psycopg.Error) -> ClawnsoleError:
        """Clawnsole's error for a driver error: only a broken connection is an outage."""
        if isinstance(error, pgerrors.UndefinedTable | pgerrors.InvalidSchemaName | pgerrors.UndefinedFunction):
            return self._schema_missing(None)
        if isinstance(error, pgerrors.DataError | pgerrors.IntegrityError):
            return InvalidInput("input", first_line(error))
        if is_connection_error(error):
            return unavailable(self._describe, error, lost=True)
        if isinstance(error, pgerrors.TransactionRollback):
            return DatabaseError(f"the database rolled the transaction back, retry it: {first_line(error)}")
        return DatabaseError(f"the database refused the statement: {first_line(error)}")

    @staticmethod
    def _standalone(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> bool:
        """Whether each statement on `conn` commits by itself (autocommit, outside any transaction block)."""
        return conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE

    @staticmethod
    def _retry_rollback(error: psycopg.Error, attempt: int, standalone: bool) -> float | None:
        """Seconds to wait before running a statement again after `error`, or None to raise it."""
        if standalone and isinstance(error, pgerrors.TransactionRollback) and attempt < _ROLLBACK_TRIES:
            return random.uniform(0, 0.005 * attempt)  # spread the retries of the two losers apart
        return None

    @staticmethod
    def _enqueue_retry_policy() -> dict[str, Any]:
        """How an enqueue with a dedupe key is retried after a lost connection (tenacity's arguments)."""
        from tenacity import retry_if_exception_type, stop_after_delay, wait_random_exponential

        return {
            "retry": retry_if_exception_type(DatabaseUnavailable),
            "stop": stop_after_delay(_ENQUEUE_RETRY_SECONDS),
            "wait": wait_random_exponential(multiplier=0.1, max=2.0),
            "reraise": True,
        }

    @staticmethod
    def _enqueue_error(error: DatabaseUnavailable, retried: bool) -> DatabaseUnavailable:
        """Say what a lost enqueue means: it may have committed (README, "Guarantees")."""
        if not error.lost:
            return error
        if retried:
            return DatabaseUnavailable(f"{error} (retried with the dedupe key, without success)", lost=True)
        return DatabaseUnavailable(
            f"{error} (the item may have been added before the connection broke; without a dedupe key the "
            "enqueue is not retried, since a retry could add it twice)",
            lost=True,
        )

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
                # An autocommit connection (an application's own) needs no block around every operation:
                # `run` opens its own, `run_steps` statements commit by themselves. BEGIN and COMMIT around
                # each one were two more round trips: a single enqueue took twice the raw statement's time.
                if self._source.autocommit:
                    yield self._source
                else:
                    with self._source.transaction():
                        yield self._source
            else:
                if self._pool is None:
                    raise ClawnsoleError("the work queue is not open: use `with WorkQueue(...)` or call open()")
                # What the pool's connection() does, less its commit on the way out when the connection is in
                # autocommit mode (the queue's own pool): there is never anything to commit then.
                pooled = self._pool.getconn()
                try:
                    if pooled.autocommit:
                        yield pooled
                    else:
                        with pooled:
                            yield pooled
                finally:
                    self._pool.putconn(pooled)
        except psycopg.Error as error:
            raise self._translate(error) from None

    def run_plan(self, plan: ops.Plan[T]) -> T:
        """Drive a plan of several operations, each in a transaction of its own. An operation's error (other
        than a lost database, which is raised) is thrown back into the plan, which decides."""
        try:
            op = next(plan)
            while True:
                try:
                    result = self.run(op)
                except DatabaseUnavailable:
                    raise
                except ClawnsoleError as error:
                    op = plan.throw(error)
                else:
                    op = plan.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def run(self, op: ops.Op[T], conn: psycopg.Connection[Any] | None = None) -> T:
        """Drive one operation to its result inside one transaction, whatever the source: on an autocommit
        connection (the queue's own pool, or a caller's) the transaction is opened here."""
        with self._connection(conn) as c:
            if self._standalone(c):
                with c.transaction():
                    return self._drive(c, op, standalone=False)
            return self._drive(c, op, standalone=False)

    def run_steps(self, op: ops.Op[T], conn: psycopg.Connection[Any] | None = None) -> T:
        """Drive an operation whose statements each stand alone (the item operations): on an autocommit
        connection each commits by itself, and one that lost a deadlock is run again on the same connection."""
        with self._connection(conn) as c:
            return self._drive(c, op, standalone=self._standalone(c))

    def _drive(self, c: psycopg.Connection[Any], op: ops.Op[T], *, standalone: bool) -> T:
        cur = c.cursor(row_factory=dict_row)
        try:
            step = next(op)
            while True:
                attempt = 1
                while True:
                    try:
                        cur.execute(self._sql[step.name], self._params(step))
                        break
                    except psycopg.Error as error:
                        pause = self._retry_rollback(error, attempt, standalone)
                        if pause is None:
                            raise
                        time.sleep(pause)
                        attempt += 1
                step = op.send(cur.fetchall() if _has_rows(cur) else [])
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    # The public operations: each a thin call of the same operation in `ops`.

    def enqueue(
        self, queue: str, title: str, *, conn: psycopg.Connection[Any] | None = None, **options: Any
    ) -> Enqueued:
        """Add an item (see `ops.enqueue` for the options); idempotent with `dedupe_key`, and then retried by
        itself for a while when the connection is lost (never without a key: see README, "Guarantees")."""
        agent = options.pop("agent", self.agent)

        def attempt() -> Enqueued:
            return self.run_steps(ops.enqueue(queue, title, agent=agent, **options), conn)

        try:
            return attempt()
        except DatabaseUnavailable as error:
            if conn is not None or (options.get("dedupe_key") is None and options.get("key") is None):
                raise self._enqueue_error(error, retried=False) from None
        # Only once a keyed enqueue lost its connection: the common path does not import the retry library.
        from tenacity import Retrying

        try:
            return Retrying(**self._enqueue_retry_policy())(attempt)
        except DatabaseUnavailable as error:
            raise self._enqueue_error(error, retried=True) from None

    def enqueue_many(
        self, items: Sequence[NewItem], *, conn: psycopg.Connection[Any] | None = None
    ) -> builtins.list[int]:
        """Add a batch of items in one round trip; returns their ids."""
        return self.run_steps(ops.enqueue_many(items, agent=self.agent), conn)

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
        return self.run_steps(ops.claim(names, agent=agent or self.agent, lease=lease, limit=limit), conn)

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
        return self.run_steps(
            ops.progress(
                item_id,
                agent=agent,
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
        return self.run_steps(
            ops.done(item_id, agent=agent, lease_token=lease_token, result=result),
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
        return self.run_steps(
            ops.fail(
                item_id,
                agent=agent,
                error=error,
                lease_token=lease_token,
                retry=retry,
                backoff=backoff,
            ),
            conn,
        )

    def cancel(self, item_id: int, *, reason: str | None = None, conn: psycopg.Connection[Any] | None = None) -> Item:
        """Cancel a pending or waiting item (and, transitively, what waits for it)."""
        return self.run_steps(ops.cancel(item_id, agent=self.agent, reason=reason), conn)

    def retry(self, item_id: int, *, conn: psycopg.Connection[Any] | None = None) -> Item:
        """Requeue a failed or cancelled item (waiting again while a prerequisite is not done)."""
        return self.run_steps(ops.retry(item_id, agent=self.agent), conn)

    def get(self, item_id: int, *, conn: psycopg.Connection[Any] | None = None) -> Item:
        """One item by id."""
        return self.run_steps(ops.get(item_id), conn)

    def list(
        self,
        queue: str | None = None,
        status: str | None = None,
        limit: int = 100,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> builtins.list[Item]:
        """Items, newest first (`metadata`: only those whose metadata contains these keys and values)."""
        return self.run_steps(ops.list_items(queue, status, limit, metadata))

    def history(self, item_id: int) -> builtins.list[Event]:
        """An item's events, oldest first."""
        return self.run_steps(ops.history(item_id))

    def status(self, queue: str | None = None) -> builtins.list[QueueCount]:
        """Counts per queue and status."""
        return self.run_steps(ops.status(queue))


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
                if self._source.autocommit:  # see WorkQueue._connection
                    yield self._source
                else:
                    async with self._source.transaction():
                        yield self._source
            else:
                if self._pool is None:
                    raise ClawnsoleError("the work queue is not open: use `async with AsyncWorkQueue(...)`")
                pooled = await self._pool.getconn()
                try:
                    if pooled.autocommit:  # see WorkQueue._connection
                        yield pooled
                    else:
                        async with pooled:
                            yield pooled
                finally:
                    await self._pool.putconn(pooled)
        except psycopg.Error as error:
            raise self._translate(error) from None

    async def run_plan(self, plan: ops.Plan[T]) -> T:
        """Drive a plan of several operations (see `WorkQueue.run_plan`)."""
        try:
            op = next(plan)
            while True:
                try:
                    result = await self.run(op)
                except DatabaseUnavailable:
                    raise
                except ClawnsoleError as error:
                    op = plan.throw(error)
                else:
                    op = plan.send(result)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def run(self, op: ops.Op[T], conn: psycopg.AsyncConnection[Any] | None = None) -> T:
        """Drive one operation to its result inside one transaction, whatever the source (see `WorkQueue.run`)."""
        async with self._connection(conn) as c:
            if self._standalone(c):
                async with c.transaction():
                    return await self._drive(c, op, standalone=False)
            return await self._drive(c, op, standalone=False)

    async def run_steps(self, op: ops.Op[T], conn: psycopg.AsyncConnection[Any] | None = None) -> T:
        """Drive an operation whose statements each stand alone (see `WorkQueue.run_steps`)."""
        async with self._connection(conn) as c:
            return await self._drive(c, op, standalone=self._standalone(c))

    async def _drive(self, c: psycopg.AsyncConnection[Any], op: ops.Op[T], *, standalone: bool) -> T:
        cur = c.cursor(row_factory=dict_row)
        try:
            step = next(op)
            while True:
                attempt = 1
                while True:
                    try:
                        await cur.execute(self._sql[step.name], self._params(step))
                        break
                    except psycopg.Error as error:
                        pause = self._retry_rollback(error, attempt, standalone)
                        if pause is None:
                            raise
                        await asyncio.sleep(pause)
                        attempt += 1
                step = op.send(await cur.fetchall() if _has_rows(cur) else [])
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def enqueue(
        self, queue: str, title: str, *, conn: psycopg.AsyncConnection[Any] | None = None, **options: Any
    ) -> Enqueued:
        """Add an item (see `WorkQueue.enqueue`): retried when the connection is lost only with a dedupe key."""
        agent = options.pop("agent", self.agent)

        async def attempt() -> Enqueued:
            return await self.run_steps(ops.enqueue(queue, title, agent=agent, **options), conn)

        try:
            return await attempt()
        except DatabaseUnavailable as error:
            if conn is not None or (options.get("dedupe_key") is None and options.get("key") is None):
                raise self._enqueue_error(error, retried=False) from None
        from tenacity import AsyncRetrying

        try:
            return await AsyncRetrying(**self._enqueue_retry_policy())(attempt)
        except DatabaseUnavailable as error:
            raise self._enqueue_error(error, retried=True) from None

    async def enqueue_many(
        self, items: Sequence[NewItem], *, conn: psycopg.AsyncConnection[Any] | None = None
    ) -> builtins.list[int]:
        """Add a batch of items in one round trip; returns their ids."""
        return await self.run_steps(ops.enqueue_many(items, agent=self.agent), conn)

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
        return await self.run_steps(ops.claim(names, agent=agent or self.agent, lease=lease, limit=limit), conn)

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
        return await self.run_steps(
            ops.progress(
                item_id,
                agent=agent,
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
        return await self.run_steps(
            ops.done(item_id, agent=agent, lease_token=lease_token, result=result),
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
        return await self.run_steps(
            ops.fail(
                item_id,
                agent=agent,
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
        """Cancel a pending or waiting item (and, transitively, what waits for it)."""
        return await self.run_steps(ops.cancel(item_id, agent=self.agent, reason=reason), conn)

    async def retry(self, item_id: int, *, conn: psycopg.AsyncConnection[Any] | None = None) -> Item:
        """Requeue a failed or cancelled item (waiting again while a prerequisite is not done)."""
        return await self.run_steps(ops.retry(item_id, agent=self.agent), conn)

    async def get(self, item_id: int, *, conn: psycopg.AsyncConnection[Any] | None = None) -> Item:
        """One item by id."""
        return await self.run_steps(ops.get(item_id), conn)

    async def list(
        self,
        queue: str | None = None,
        status: str | None = None,
        limit: int = 100,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> builtins.list[Item]:
        """Items, newest first (`metadata`: only those whose metadata contains these keys and values)."""
        return await self.run_steps(ops.list_items(queue, status, limit, metadata))

    async def history(self, item_id: int) -> builtins.list[Event]:
        """An item's events, oldest first."""
        return await self.run_steps(ops.history(item_id))

    async def status(self, queue: str | None = None) -> builtins.list[QueueCount]:
        """Counts per queue and status."""
        return await self.run_steps(ops.status(queue))


__all__ = ["AsyncWorkQueue", "WorkQueue", "default_agent", "notify_channel"]
