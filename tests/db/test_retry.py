"""Fail: retry with exponential, jittered backoff, then the dead-letter state."""

from __future__ import annotations

import psycopg

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
        failed = wq.fail(item.id, f"boom {attempt}", lease_token=str(item.lease_token))
        assert failed.status == "pending" and failed.last_error == f"boom {attempt}"
        delays.append((failed.run_at - failed.updated_at).total_seconds())
        assert wq.claim_next("q", agent="w") == [], "not due before its backoff"
        _make_due(db_url)
    assert 8 <= delays[0] <= 12 and 16 <= delays[1] <= 24, delays
    [item] = wq.claim_next("q", agent="w")
    dead = wq.fail(item.id, "boom 3", lease_token=str(item.lease_token))
    assert (dead.status, dead.attempts, dead.last_error) == ("failed", 3, "boom 3")
    events = [e.event for e in wq.history(item_id)]
    assert events.count("retry_scheduled") == 2 and events[-1] == "failed"


def test_no_retry_fails_at_once_and_retry_requeues(wq: WorkQueue) -> None:
    wq.enqueue("q", "x", max_attempts=5)
    [item] = wq.claim_next("q", agent="w")
    assert wq.fail(item.id, "fatal", lease_token=str(item.lease_token), retry=False).status == "failed"
    requeued = wq.retry(item.id)
    assert (requeued.status, requeued.attempts) == ("pending", 0)
    assert [i.id for i in wq.claim_next("q", agent="w")] == [item.id]


def test_backoff_is_capped_before_the_jitter_and_a_long_base_is_kept(wq: WorkQueue, db_url: str) -> None:
    # The exponential is capped at an hour, then jittered (so capped retries still spread out); a base
    # longer than the cap is the cap.
    delays = []
    for n in range(8):
        wq.enqueue("capped", f"x{n}", max_attempts=20, backoff="30m")
    for item in wq.claim_next("capped", limit=8):
        with psycopg.connect(db_url) as conn:  # the fifth attempt: 30 min * 2**4, far past the cap
            conn.execute("UPDATE clawnsole.items SET attempts = 5 WHERE id = %s", (item.id,))
        failed = wq.fail(item.id, "slow", lease_token=str(item.lease_token))
        delays.append((failed.run_at - failed.updated_at).total_seconds())
    assert all(0.8 * 3600 - 1 <= d <= 1.2 * 3600 + 1 for d in delays), delays
    assert len({round(d) for d in delays}) > 1, "jittered, not all at exactly one hour"
    wq.enqueue("long", "x", max_attempts=10, backoff="2h")
    [item] = wq.claim_next("long")
    failed = wq.fail(item.id, "slow", lease_token=str(item.lease_token))
    assert 0.8 * 7200 - 1 <= (failed.run_at - failed.updated_at).total_seconds() <= 1.2 * 7200 + 1
