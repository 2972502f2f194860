"""Where a worker's items come from and where what happens to them goes: the one seam between the runtime
(claim loop, handler threads, finisher, heartbeat) and the queue.

`DatabaseSource` runs the library's operations on PostgreSQL: one autocommit connection per role (claiming,
finishing, heartbeats, and the rest), LISTEN wake-ups, the workers registry. `ApiSource` (`api_source.py`)
does the same work through the HTTP API of `clawnsole serve`, for a worker that has a token and no database.

Every method raises what the library's operations raise: DatabaseUnavailable for an outage (the caller
retries with backoff), DatabaseError for a refused statement, InvalidInput, and LeaseLost / Conflict /
NotFound where an operation is fenced by a lease that is gone.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Protocol

from clawnsole import ops
from clawnsole.models import Item
from clawnsole.worker import steps
from clawnsole.worker.eventlog import EventLog
from clawnsole.worker.inflight import Key
from clawnsole.worker.presence import Presence
from clawnsole.worker.session import Session, worker_conninfo
from clawnsole.worker.wakeups import Wakeups

# Done items recorded by one statement at most (the finisher batches everything waiting, up to this).
MAX_BATCH = 500


class Source(Protocol):
    """What the runtime needs of a queue. `claim_wait` > 0: an idle claim may block that long on the other
    side until an item comes due (there is no wake-up listener); `finish_batch`: outcomes per `complete`."""

    @property
    def claim_wait(self) -> float: ...

    @property
    def finish_batch(self) -> int: ...

    def ping(self) -> None:
        """One round trip: the start-up check (SchemaMissing when the schema is absent or old)."""

    def claim(self, limit: int, *, recover: bool, wait: float = 0.0) -> list[Item]:
        """Claim up to `limit` due items (waiting up to `wait` seconds for one, when `claim_wait` allows)."""

    def next_wakeup(self) -> float | None:
        """Seconds until something may come due (None: nothing known); an idle worker sleeps that long."""

    def complete(self, outcomes: Sequence[tuple[int, str, Any]]) -> set[Key]:
        """Record these (id, lease token, result) as done; returns the keys whose lease was still held."""

    def fail(self, item_id: int, lease_token: str, error: str, *, retry: bool) -> Item:
        """Record a failed attempt; the item as it is now (pending again for a retry, or failed)."""

    def renew(self, leases: Sequence[Key]) -> set[Key]:
        """Renew these leases (a heartbeat); returns the keys still held. With none, one round trip."""

    def progress(self, item_id: int, lease_token: str, *, note: str | None, percent: int | None) -> None:
        """Record a handler's progress and renew its lease (LeaseLost when the lease is gone)."""

    def record_step(
        self, item_id: int, *, lease_token: str, step: str, seconds: float, error: str | None = None
    ) -> bool:
        """Record a handler's timed step; False when the lease is gone."""

    def release(self, leases: Sequence[Key], *, reason: str) -> set[Key]:
        """Give these leases back without charging the attempt; returns the keys released."""

    def register(self) -> None:
        """Announce the worker (the workers registry); never raises."""

    def refresh(self, *, in_flight: int, done: int, failed: int) -> None:
        """Refresh the worker's announcement after a heartbeat; never raises."""

    def stopped(self, *, done: int, failed: int) -> None:
        """Say the worker stopped cleanly; never raises."""

    def wakeups(self, *, log: EventLog, stop: threading.Event) -> Wakeups | None:
        """The connection that hears of enqueues (None: this source has none; an idle claim waits instead)."""

    def close(self) -> None:
        """Close every connection."""


class DatabaseSource:
    """The queue in PostgreSQL. A connection per role, so nothing queues behind anything else: the claim loop's,
    the finisher's, the heartbeat's own (no progress call or reconnect may wait in front of a beat), and one
    for progress, steps and releases. Each opens on first use and reopens after an outage."""

    claim_wait = 0.0
    finish_batch = MAX_BATCH

    def __init__(
        self,
        conninfo: str,
        schema: str,
        *,
        agent: str,
        queues: Sequence[str],
        lease: float,
        concurrency: int,
        heartbeat_seconds: float,
        log: EventLog,
    ) -> None:
        self.agent = agent
        self._queues = tuple(queues)
        self._lease = lease
        self._conninfo = worker_conninfo(conninfo, self.agent)
        self._schema = schema
        self._claiming = Session(self._conninfo, schema, self.agent)
        self._finishing = Session(self._conninfo, schema, self.agent)
        self._beating = Session(self._conninfo, schema, self.agent)
        self._side = Session(self._conninfo, schema, self.agent)
        # The worker's row in the workers registry (`clawnsole workers`): written at start, refreshed by the
        # heartbeat, closed at a clean stop; a failure to write it is logged, never fatal.
        self.presence = Presence(
            agent=self.agent,
            queues=self._queues,
            concurrency=concurrency,
            heartbeat_seconds=heartbeat_seconds,
            log=log,
        )

    def ping(self) -> None:
        self._claiming.run(steps.ping())

    def claim(self, limit: int, *, recover: bool, wait: float = 0.0) -> list[Item]:
        # The operation is a generator: a retry needs a fresh one, so each call builds its own.
        return self._claiming.run(
            ops.claim(self._queues, agent=self.agent, lease=self._lease, limit=limit, recover=recover)
        )

    def next_wakeup(self) -> float | None:
        return self._claiming.run(steps.next_wakeup(self._queues, agent=self.agent))

    def complete(self, outcomes: Sequence[tuple[int, str, Any]]) -> set[Key]:
        return self._finishing.run(ops.complete_many(outcomes, agent=self.agent))

    def fail(self, item_id: int, lease_token: str, error: str, *, retry: bool) -> Item:
        return self._finishing.run(
            ops.fail(item_id, agent=self.agent, error=error, lease_token=lease_token, retry=retry)
        )

    def renew(self, leases: Sequence[Key]) -> set[Key]:
        if not leases:
            self._beating.run(steps.ping())
            return set()
        return self._beating.run(ops.heartbeat(leases, agent=self.agent))

    def progress(self, item_id: int, lease_token: str, *, note: str | None, percent: int | None) -> None:
        self._side.run(ops.progress(item_id, agent=self.agent, lease_token=lease_token, note=note, percent=percent))

    def record_step(
        self, item_id: int, *, lease_token: str, step: str, seconds: float, error: str | None = None
    ) -> bool:
        from clawnsole.stats.ops import record_step

        return self._side.run(record_step(item_id, lease_token=lease_token, step=step, seconds=seconds, error=error))

    def release(self, leases: Sequence[Key], *, reason: str) -> set[Key]:
        return self._side.run(ops.release(leases, agent=self.agent, reason=reason))

    def register(self) -> None:
        self.presence.register(self._claiming)

    def refresh(self, *, in_flight: int, done: int, failed: int) -> None:
        # On the heartbeat's connection, right after a beat proved it works.
        self.presence.refresh(self._beating, in_flight=in_flight, done=done, failed=failed)

    def stopped(self, *, done: int, failed: int) -> None:
        # On the claim connection: the claim loop is over and its connection is open (a worker that never
        # reported progress has no side connection, and opening one now may find no slot free).
        self.presence.stopped(self._claiming, done=done, failed=failed)

    def wakeups(self, *, log: EventLog, stop: threading.Event) -> Wakeups:
        return Wakeups(self._conninfo, self._schema, self._queues, log=log, stop=stop)

    def close(self) -> None:
        for session in (self._claiming, self._finishing, self._beating, self._side):
            session.close()
