"""Fail: retry with exponential, jittered backoff, then the dead-letter state."""

from __future__ import annotations

import psycopg
import pytest

from clawnsole import WorkQueue


def _make_due(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE clawnsole.items SET run_at = now() WHERE status = 'pending'")


def test_failures_back_off_exponentially_then_dead_letter(wq: WorkQueue, db_url: str) -> None:
    item_id = wq.enqueue("q", "flaky", max_attempts=3).item.id
    delays = []
    for attempt in (1, 2):
        [item] = wq.claim_next("q", agent="w")
        assert item.attempts == attempt
        failed = wq.fail(item.id, f"boom {attempt}", agent="w")
        assert failed.status == "pending" and failed.last_error == f"boom {attempt}"
        delays.append((failed.run_at - failed.updated_at).total_seconds())
        assert wq.claim_next("q", agent="w") == [], "not due before its backoff"
        _make_due(db_url)
    assert 8 <= delays[0] <= 12 and 16 <= delays[1] <= 24, delays
    [item] = wq.claim_next("q", agent="w")
    dead = wq.fail(item.id, "boom 3", agent="w")
    assert (dead.status, dead.attempts, dead.last_error) == ("failed", 3, "boom 3")
    events = [e.event for e in wq.history(item_id)]
    assert events.count("retry_scheduled") == 2 and events[-1] == "failed"


def test_no_retry_fails_at_once_and_retry_requeues(wq: WorkQueue) -> None:
    wq.enqueue("q", "x", max_attempts=5)
    [item] = wq.claim_next("q", agent="w")
    assert wq.fail(item.id, "fatal", agent="w", retry=False).status == "failed"
    requeued = wq.retry(item.id)
    assert (requeued.status, requeued.attempts) == ("pending", 0)
    assert [i.id for i in wq.claim_next("q", agent="w")] == [item.id]


def test_backoff_is_capped_at_an_hour(wq: WorkQueue) -> None:
    wq.enqueue("q", "x", max_attempts=10, backoff="1d")
    [item] = wq.claim_next("q", agent="w")
    failed = wq.fail(item.id, "slow", agent="w")
    assert (failed.run_at - failed.updated_at).total_seconds() == pytest.approx(3600, abs=1)
