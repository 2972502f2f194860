"""Reading a queue's event history: how many of its items were held at once."""

from __future__ import annotations

import psycopg


def held_at_once(db_url: str, queue: str) -> tuple[int, int]:
    """The most items of `queue` held at once, and how many claims there were, from the event history.

    Ordered by event id, not time: `at` is the transaction's start, and a claim that waited for the queue's
    lock carries a time from before the completion it waited for. Ids are drawn while each statement runs:
    a claim draws its id after it took the queue's lock and counted, so every completion it counted has a
    smaller id, and every claim before it in id order committed before it counted.
    """
    with psycopg.connect(db_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT e.event FROM clawnsole.item_events e JOIN clawnsole.items i ON i.id = e.item_id"
            " WHERE i.queue = %s AND e.event IN ('claimed', 'done', 'failed', 'retry_scheduled', 'released',"
            " 'lease_expired') ORDER BY e.id",
            [queue],
        ).fetchall()
    held = peak = claims = 0
    for (event,) in rows:
        if event == "claimed":
            held, claims = held + 1, claims + 1
            peak = max(peak, held)
        else:
            held -= 1
    return peak, claims
