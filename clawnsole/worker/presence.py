"""The worker's row in the workers registry: written at start, refreshed by each heartbeat, closed at a
clean stop (statements in `db/queries/workers.sql`). `clawnsole workers`, `doctor`, the alerts and the
dashboard read it.

The registry is for people looking at the fleet; the queue's correctness never depends on it. So every
write here is tried once and a failure is logged (`registry_not_updated`), never raised: a heartbeat must
not die of it, and the next beat tries again. A heartbeat that finds the row gone (aged out after a long
outage, or taken over by a newer process started under the same agent name) writes it again, without
replacing the newer process's row.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Sequence
from importlib import metadata

from clawnsole.errors import ClawnsoleError
from clawnsole.incidents.workers import KEEP_GONE_SECONDS
from clawnsole.ops import Op, Step
from clawnsole.worker.eventlog import EventLog
from clawnsole.worker.session import Session

# At most this many gone rows are deleted per registration (the registering statement stays short).
PRUNE_BATCH = 100


def version() -> str | None:
    """The installed Clawnsole's version (None when it runs from a tree that was never installed)."""
    try:
        return metadata.version("clawnsole")
    except metadata.PackageNotFoundError:
        return None


def register(
    *,
    agent: str,
    instance: str,
    queues: Sequence[str],
    concurrency: int,
    heartbeat_seconds: float,
    replace: bool = True,
) -> Op[bool]:
    """Age out long-gone rows, then write this worker's row; True when the row is now this instance's.
    `replace` False writes it only when the agent has no row (a newer process of that name keeps its own)."""
    yield Step("worker_prune", {"keep": KEEP_GONE_SECONDS, "limit": PRUNE_BATCH})
    rows = yield Step(
        "worker_register" if replace else "worker_register_if_absent",
        {
            "agent": agent,
            "instance": instance,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": list(queues),
            "version": version(),
            "concurrency": concurrency,
            "heartbeat_seconds": heartbeat_seconds,
        },
    )
    return bool(rows)


def refresh(*, agent: str, instance: str, in_flight: int, done: int, failed: int) -> Op[bool]:
    """Last seen now, with these counts (skipped while someone holds the row locked); False when the row is
    not this instance's any more."""
    rows = yield Step(
        "worker_refresh",
        {"agent": agent, "instance": instance, "in_flight": in_flight, "done": done, "failed": failed},
    )
    return bool(rows[0]["ours"])


def stop(*, agent: str, instance: str, done: int, failed: int) -> Op[bool]:
    """Mark the row stopped (a clean stop); False when it is not this instance's."""
    rows = yield Step("worker_stop", {"agent": agent, "instance": instance, "done": done, "failed": failed})
    return bool(rows)


class Presence:
    """One worker's registry row, written through whichever session the caller is on at the time."""

    def __init__(
        self, *, agent: str, queues: Sequence[str], concurrency: int, heartbeat_seconds: float, log: EventLog
    ) -> None:
        self.agent = agent
        self.instance = str(uuid.uuid4())
        self._queues = list(queues)
        self._concurrency = concurrency
        self._heartbeat_seconds = heartbeat_seconds
        self._log = log
        # Whether the last write found the row ours: a refresh that does not is followed by a registration.
        self._registered = False

    def register(self, session: Session, *, replace: bool = True) -> bool:
        """Write the row (replacing an earlier start of this agent unless `replace` is False)."""
        op = register(
            agent=self.agent,
            instance=self.instance,
            queues=self._queues,
            concurrency=self._concurrency,
            heartbeat_seconds=self._heartbeat_seconds,
            replace=replace,
        )
        self._registered = self._try(session, op, "registering") is True
        return self._registered

    def refresh(self, session: Session, *, in_flight: int, done: int, failed: int) -> None:
        """Refresh the row; write it again when it went missing."""
        op = refresh(agent=self.agent, instance=self.instance, in_flight=in_flight, done=done, failed=failed)
        found = self._try(session, op, "refreshing")
        if found is False:
            if self._registered:
                self._log.emit("registry_row_missing", detail="aged out or taken over; registering again")
            self.register(session, replace=False)

    def stopped(self, session: Session, *, done: int, failed: int) -> None:
        """Mark the row stopped."""
        self._try(session, stop(agent=self.agent, instance=self.instance, done=done, failed=failed), "stopping")

    def _try(self, session: Session, op: Op[bool], what: str) -> bool | None:
        """The operation's result, or None (logged) when it could not be written: never raises."""
        try:
            return session.run(op)
        except ClawnsoleError as error:
            self._log.emit("registry_not_updated", during=what, error=str(error))
        except Exception as error:  # the registry must never take a heartbeat down with it
            self._log.emit("registry_not_updated", during=what, error=f"{type(error).__name__}: {error}")
        return None
