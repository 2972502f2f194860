"""The event feed's reads on a history of its own: where a fresh feed starts, and that it reads the tail
through the BRIN index on event id, not by scanning the history (every SSE poll runs it)."""

from __future__ import annotations

import psycopg

from clawnsole import feed
from clawnsole.models import NewItem
from clawnsole.queue import WorkQueue
from tests.conftest import SCHEMA


def test_a_fresh_feed_starts_after_the_newest_event(wq: WorkQueue, db_url: str) -> None:
    assert wq.run_steps(feed.event_last()) >= 0
    item = wq.enqueue("feed", "one").item
    claimed = wq.claim_next(["feed"], lease="60")[0]
    wq.done(claimed.id, lease_token=claimed.lease_token)
    with psycopg.connect(db_url) as conn:
        newest = conn.execute(f"SELECT max(id) FROM {SCHEMA}.item_events").fetchone()
    assert newest is not None
    assert wq.run_steps(feed.event_last()) == newest[0]
    assert wq.run_steps(feed.event_feed(newest[0])) == []
    events = wq.run_steps(feed.event_feed(newest[0] - 3))
    assert [(e.event.item_id, e.event.event) for e in events] == [
        (item.id, "enqueued"),
        (item.id, "claimed"),
        (item.id, "done"),
    ]


def test_the_feed_finds_the_tail_by_the_brin_index(wq: WorkQueue, db_url: str) -> None:
    wq.enqueue_many([NewItem("feed", f"t{n}") for n in range(2000)])
    with psycopg.connect(db_url) as conn:
        conn.execute(f"ANALYZE {SCHEMA}.item_events")
        conn.execute("SET enable_seqscan = off")  # the question is whether an index serves it at all
        plan = "\n".join(row[0] for row in conn.execute(f"EXPLAIN SELECT id FROM {SCHEMA}.item_events WHERE id > 1990"))
    assert "item_events_id_brin" in plan, plan
