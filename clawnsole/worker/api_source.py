"""`ApiSource`: a worker's queue reached through the HTTP API of `clawnsole serve`, with a token and no database.

The same work as `DatabaseSource`, one request per operation on an item (the API has no batch writes):
claims ask the server for up to the free slots, waiting there (its LISTEN) when idle, so no listener runs
here; a heartbeat renews each held lease with a progress report that extends it; outcomes are `done` and
`fail`; a stopping worker `release`s what it still holds, without charging the attempt. Every write is fenced
by the item's lease token and the token's name (the agent the server records), so a lease lost here is the
same LeaseLost (409) the database path sees. The workers registry is the database path's only: a worker over
the API does not appear in `clawnsole workers`.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime
from typing import Any
from uuid import UUID

from clawnsole import validate
from clawnsole.client import ApiClient
from clawnsole.errors import Conflict, NotFound
from clawnsole.models import Item
from clawnsole.worker.eventlog import EventLog
from clawnsole.worker.inflight import Key
from clawnsole.worker.wakeups import Wakeups

# How long an idle claim waits on the server for an item: short, since the claim loop notices a stop only
# between two claims, and long enough that an idle worker asks once every few seconds.
CLAIM_WAIT = 2.0
# With several queues, a claim cannot wait on all of them at once (the API waits on one): an idle worker
# asks each in turn this often instead.
MULTI_QUEUE_POLL = 1.0
# The most items the API hands out per claim request.
MAX_CLAIM = 100

_TIMES = frozenset(f.name for f in fields(Item) if f.type in ("datetime", "datetime | None"))


def item_from_json(data: dict[str, Any]) -> Item:
    """The Item an API reply describes (the JSON `Item.to_json` makes, instructions included for `work`)."""
    values: dict[str, Any] = {}
    for f in fields(Item):
        value = data.get(f.name)
        if value is not None and f.name in _TIMES:
            value = datetime.fromisoformat(value)
        elif value is not None and f.name == "lease_token":
            value = UUID(value)
        values[f.name] = value
    return Item(**values)


class ApiSource:
    """The queues `queues` through `client`, claiming with leases of `lease` seconds."""

    finish_batch = 1

    def __init__(self, client: ApiClient, *, queues: Sequence[str], lease: float, renew_timeout: float = 10.0) -> None:
        self._client = client
        self._queues = tuple(validate.queue_name(q) for q in queues)
        self._lease = lease
        # A beat gives up after its interval anyway: one renewal must not hang longer than that.
        self._renew_timeout = renew_timeout

    @property
    def claim_wait(self) -> float:
        return CLAIM_WAIT if len(self._queues) == 1 else 0.0

    def ping(self) -> None:
        # The start-up check: the server and its database answer, the token is good and sees every queue
        # (Unauthorized or NotFound now, exit 6 or 4, rather than at the first claim).
        for queue in self._queues:
            self._client.queue(queue)

    def claim(self, limit: int, *, recover: bool, wait: float = 0.0) -> list[Item]:
        # The server recovers expired leases in every claim: `recover` needs nothing more here.
        items: list[Item] = []
        for queue in self._queues:
            while len(items) < limit:
                wanted = min(limit - len(items), MAX_CLAIM)
                claimed = self._client.claim(
                    queue, lease=self._lease, limit=wanted, wait=wait if len(self._queues) == 1 else 0
                )
                items.extend(item_from_json(c) for c in claimed)
                if len(claimed) < wanted:
                    break
        return items

    def next_wakeup(self) -> float | None:
        # Nothing tells an idle worker here when an item comes due: with one queue it waits in the claim,
        # with several it looks again soon.
        return MULTI_QUEUE_POLL

    def complete(self, outcomes: Sequence[tuple[int, str, Any]]) -> set[Key]:
        held: set[Key] = set()
        for item_id, token, result in outcomes:
            try:
                self._client.done(item_id, token, result=result)
            except (Conflict, NotFound):  # LeaseLost is a Conflict: the lease went, the item is another's
                continue
            held.add((item_id, token))
        return held

    def fail(self, item_id: int, lease_token: str, error: str, *, retry: bool) -> Item:
        return item_from_json(self._client.fail(item_id, lease_token, error=error, retry=retry))

    def renew(self, leases: Sequence[Key]) -> set[Key]:
        if not leases:
            self._client.ready()
            return set()
        held: set[Key] = set()
        for item_id, token in sorted(leases):
            try:
                self._client.progress(item_id, token, extend=self._lease, timeout=self._renew_timeout)
            except (Conflict, NotFound):
                continue
            held.add((item_id, token))
        return held

    def progress(self, item_id: int, lease_token: str, *, note: str | None, percent: int | None) -> None:
        self._client.progress(item_id, lease_token, note=note, percent=percent)

    def record_step(
        self, item_id: int, *, lease_token: str, step: str, seconds: float, error: str | None = None
    ) -> bool:
        return self._client.step(item_id, lease_token, step=step, seconds=seconds, error=error)

    def release(self, leases: Sequence[Key], *, reason: str) -> set[Key]:
        released: set[Key] = set()
        for item_id, token in sorted(leases):
            try:
                self._client.release(item_id, token, reason=reason)
            except (Conflict, NotFound):
                continue
            released.add((item_id, token))
        return released

    def register(self) -> None:
        """Nothing to write: the workers registry is the database's (see the module's docstring)."""

    def refresh(self, *, in_flight: int, done: int, failed: int) -> None:
        """Nothing to write (no registry over the API)."""

    def stopped(self, *, done: int, failed: int) -> None:
        """Nothing to write (no registry over the API)."""

    def wakeups(self, *, log: EventLog, stop: threading.Event) -> Wakeups | None:
        return None  # the server's LISTEN wakes a waiting claim instead

    def close(self) -> None:
        self._client.close()
