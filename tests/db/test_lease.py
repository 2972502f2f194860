"""Leases: expiry and recovery by claim-next itself, fencing of stale holders, renewal, finishing rules."""

from __future__ import annotations

import psycopg
import pytest

from clawnsole import Conflict, InvalidInput, LeaseLost, NotFound, WorkQueue


def _expire_leases(db_url: str) -> None:
    """Move every lease into the past on the database clock (no sleeping)."""
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "UPDATE clawnsole.items SET lease_expires_at = now() - interval '1 second' WHERE status = 'claimed'"
        )


def test_expired_lease_is_recovered_by_the_next_claim(wq: WorkQueue, db_url: str) -> None:
    item_id = wq.enqueue("q", "x").item.id
    [first] = wq.claim_next("q", agent="crashed")
    assert wq.claim_next("q", agent="other") == []
    _expire_leases(db_url)
    [again] = wq.claim_next("q", agent="other")
    assert again.id == item_id and again.claimed_by == "other" and again.attempts == 2
    assert again.lease_token != first.lease_token
    assert [e.event for e in wq.history(item_id)] == ["enqueued", "claimed", "lease_expired", "claimed"]


def test_expired_lease_with_no_attempts_left_fails_the_item(wq: WorkQueue, db_url: str) -> None:
    item_id = wq.enqueue("q", "x", max_attempts=1).item.id
    wq.claim_next("q", agent="crashed")
    _expire_leases(db_url)
    assert wq.claim_next("q", agent="other") == []
    item = wq.get(item_id)
    assert (item.status, item.last_error) == ("failed", "lease expired")
    assert item.finished_at is not None


def test_stale_holder_is_fenced_off_after_another_claims(wq: WorkQueue, db_url: str) -> None:
    wq.enqueue("q", "x")
    [stale] = wq.claim_next("q", agent="slow")
    _expire_leases(db_url)
    [fresh] = wq.claim_next("q", agent="fast")
    for attempt in (
        lambda: wq.done(stale.id, agent="slow", lease_token=str(stale.lease_token)),
        lambda: wq.progress(stale.id, agent="slow", lease_token=str(stale.lease_token), note="still here"),
        lambda: wq.fail(stale.id, "boom", agent="slow", lease_token=str(stale.lease_token)),
        lambda: wq.done(stale.id, agent="fast", lease_token=str(stale.lease_token)),
    ):
        with pytest.raises(LeaseLost):
            attempt()
    current = wq.get(fresh.id)
    assert (current.status, current.claimed_by, current.lease_token) == ("claimed", "fast", fresh.lease_token)
    wq.done(fresh.id, lease_token=str(fresh.lease_token), agent=None)
    assert wq.get(fresh.id).status == "done"


def test_progress_renews_the_lease_and_records_the_note(wq: WorkQueue) -> None:
    wq.enqueue("q", "x", lease=60)
    [item] = wq.claim_next("q", agent="w")
    renewed = wq.progress(item.id, lease_token=str(item.lease_token), note="halfway", percent=50, extend="1h")
    assert renewed.lease_expires_at is not None and item.lease_expires_at is not None
    assert renewed.lease_expires_at > item.lease_expires_at
    assert (renewed.progress_note, renewed.progress_percent) == ("halfway", 50)
    events = wq.history(item.id)
    assert events[-1].event == "progress" and events[-1].detail == {"note": "halfway", "percent": 50}


def test_finishing_a_finished_item_is_a_conflict(wq: WorkQueue) -> None:
    wq.enqueue("q", "x")
    [item] = wq.claim_next("q", agent="w")
    wq.done(item.id, agent="w", lease_token=str(item.lease_token), result={"ok": True})
    assert wq.get(item.id).result == {"ok": True}
    with pytest.raises(Conflict, match="already done") as caught:
        wq.done(item.id, agent="w", lease_token=str(item.lease_token))
    assert not isinstance(caught.value, LeaseLost)


def test_cancel_only_pending_and_retry_only_failed(wq: WorkQueue) -> None:
    pending = wq.enqueue("q", "a").item.id
    assert wq.cancel(pending, reason="not needed").status == "cancelled"
    with pytest.raises(Conflict):
        wq.cancel(pending)
    assert wq.retry(pending).status == "pending"
    [item] = wq.claim_next("q", agent="w")
    with pytest.raises(Conflict):
        wq.cancel(item.id)
    with pytest.raises(Conflict):
        wq.retry(item.id)
    with pytest.raises(NotFound):
        wq.cancel(999_999)


def test_a_malformed_lease_token_is_bad_input(wq: WorkQueue) -> None:
    wq.enqueue("q", "x")
    [item] = wq.claim_next("q", agent="w")
    with pytest.raises(InvalidInput, match="lease"):
        wq.done(item.id, agent="w", lease_token="not-a-uuid")
