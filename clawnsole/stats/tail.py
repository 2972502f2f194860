"""Following the event log live: LISTEN for wake-ups, then read the events after the last one shown.

Enqueues and every change that makes an item pending NOTIFY the queue's channel, so those show at once;
other events (claimed, done, progress, step, …) send no notification and are picked up by the poll (every
second). Events are read by id (`id > last shown`), bounded by time through the BRIN index on
item_events.at (the table has no index on id alone).

An id is taken when an event is inserted, but becomes visible at its transaction's commit: an event may
appear after one with a higher id. The cursor remembers the ids it saw skipped for `GAP_TTL` seconds and
reads them too, and keeps its time bound `LAG` seconds behind the newest event shown; an event whose
transaction stayed open longer than that before committing can be missed (`workqueue show ID` has the
full history).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from clawnsole.db.connect import connect
from clawnsole.listen import Listener
from clawnsole.queue import WorkQueue, notify_channel
from clawnsole.stats import ops as stats_ops
from clawnsole.stats.models import TailEvent

LAG = 5.0
GAP_TTL = 30.0
# A jump in ids larger than this is not a transaction in flight (it is the start, or the sequence moving on):
# those ids are not remembered.
MAX_GAP = 1000
POLL = 1.0


class TailCursor:
    """Which events a tail has shown (pure bookkeeping: no I/O, the clock passed in)."""

    def __init__(self, after: int, horizon: datetime, *, lag: float = LAG, gap_ttl: float = GAP_TTL) -> None:
        self.after = after
        self.horizon = horizon
        self._lag = timedelta(seconds=lag)
        self._gap_ttl = gap_ttl
        # Ids seen missing, with the monotonic time they were first missed.
        self._gaps: dict[int, float] = {}
        # Gaps are only meaningful after an id really seen (not the 0 a --since tail starts from).
        self._anchored = after > 0

    @property
    def gaps(self) -> list[int]:
        return sorted(self._gaps)

    def read_params(self) -> dict[str, Any]:
        """The parameters of the next `tail_read`."""
        return {"after": self.after, "gaps": self.gaps, "horizon": self.horizon}

    def take(self, rows: list[dict[str, Any]], now: float) -> list[TailEvent]:
        """The events of `rows` (oldest first) not shown yet and of the queue asked for; moves the cursor."""
        shown: list[TailEvent] = []
        newest: datetime | None = None
        for row in rows:
            event_id = int(row["id"])
            if self._gaps.pop(event_id, None) is None:
                if event_id <= self.after:
                    continue
                if self._anchored and event_id - self.after - 1 <= MAX_GAP:
                    self._gaps.update(dict.fromkeys(range(self.after + 1, event_id), now))
                self.after, self._anchored = event_id, True
            newest = row["at"] if newest is None else max(newest, row["at"])
            if row["wanted"]:
                shown.append(cast(TailEvent, TailEvent.from_row(row)))  # Event.from_row builds `cls`
        for event_id, since in list(self._gaps.items()):
            if now - since > self._gap_ttl:
                del self._gaps[event_id]
        if newest is not None:
            self.horizon = max(self.horizon, newest - self._lag)
        return shown


def follow(
    conninfo: str,
    schema: str,
    emit: Callable[[TailEvent], None],
    stop: threading.Event,
    *,
    queue: str | None = None,
    since: float | None = None,
    on_ready: Callable[[], None] | None = None,
    poll: float = POLL,
) -> None:
    """Call `emit` with every new event (of `queue`, or all) until `stop` is set; with `since` (seconds),
    start with the events of that much recent history."""
    channel = notify_channel(schema)
    with (
        Listener(conninfo, channel, None if queue is None else [queue]) as listener,
        connect(conninfo, autocommit=True) as conn,
    ):
        wq = WorkQueue(conn, schema=schema).open()
        now, last_id = wq.run(stats_ops.tail_start(LAG))
        if since is None:
            cursor = TailCursor(last_id, now - timedelta(seconds=LAG))
        else:
            cursor = TailCursor(0, now - timedelta(seconds=since))
        if on_ready is not None:
            on_ready()
        while not stop.is_set():
            rows = wq.run(stats_ops.tail_read(**cursor.read_params(), queue=queue))
            for event in cursor.take(rows, time.monotonic()):
                emit(event)
            if len(rows) >= stats_ops.TAIL_BATCH:
                continue  # more are waiting: read on before sleeping
            listener.wait(poll, stop)
