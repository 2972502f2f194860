"""A model of the item lifecycle: a Hypothesis state machine drives real PostgreSQL through the sync library
from several simulated agents, and after every step the database is checked against a plain Python model
and against invariants that hold whatever the model says (one holder, attempts bounded, legal statuses, a
history that replays to the current status).

CI mode (`$CI` set) is derandomized, so a CI run is deterministic. Locally each run draws a seed and prints
it; `CLAWNSOLE_MODEL_SEED=N` replays one. `--soak N` (or $CLAWNSOLE_SOAK=N, see conftest.py) multiplies the
number of examples.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from psycopg.rows import dict_row

from clawnsole import Conflict, LeaseLost, WorkQueue, ops
from clawnsole.models import FINISHED, STATUSES

SCHEMA = "clawnsole"
QUEUES = ("alpha", "beta")
# Claims may name one queue or both: recovery and ordering must then span the queues named, and only those.
CLAIM_QUEUES = (("alpha",), ("beta",), ("alpha", "beta"))
AGENTS = ("agent-0", "agent-1", "agent-2")
ADMIN = "model-admin"  # the queue's own agent: it enqueues, cancels and requeues
# Few priorities and one key, so ties in the claim order and dedupe hits happen often.
PRIORITIES = (0, 50, 100)
DEDUPE_KEYS = ("k1",)
WRITES = ("progress", "done", "fail", "release")  # every write fenced by the lease

IN_CI = bool(os.environ.get("CI"))
# A passing run takes seconds. A failing one then shrinks its counterexample, which Hypothesis stops after
# 500 successful shrinks or five minutes (here: up to ~2,500 replays at ~75 ms, about 3 minutes). The timeout
# leaves room for that, so a failure reports the shrunk steps rather than a pytest timeout. It follows
# $CLAWNSOLE_SOAK (this marker replaces the reliability conftest's own timeout for soak runs).
_TIMEOUT = 600 * int(os.environ.get("CLAWNSOLE_SOAK") or 1)

# Which status each event leaves an item in, given the status it found (None: before the item existed).
# `lease_expired` goes to pending or failed, as its detail says.
TRANSITIONS: dict[str, tuple[tuple[str | None, ...], str | None]] = {
    "enqueued": ((None,), "pending"),
    "claimed": (("pending",), "claimed"),
    "progress": (("claimed",), "claimed"),
    "done": (("claimed",), "done"),
    "failed": (("claimed",), "failed"),
    "retry_scheduled": (("claimed",), "pending"),
    "lease_expired": (("claimed",), None),
    "released": (("claimed",), "pending"),
    "cancelled": (("pending",), "cancelled"),
    "requeued": (("failed", "cancelled"), "pending"),
}


@dataclass
class ExpectedEvent:
    """An event the model expects in an item's history: its name, agent, and keys its detail must hold."""

    event: str
    agent: str | None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelItem:
    """What one item's row should hold."""

    id: int
    queue: str
    priority: int
    max_attempts: int
    dedupe_key: str | None
    cooldown: float | None
    run_at: datetime
    dedupe_held: bool
    due: bool  # run_at <= now(): false only for an item enqueued with a delay and not requeued since
    status: str = "pending"
    claimed_by: str | None = None
    # The last token handed out: the row keeps it after the lease ends, and only a claim replaces it.
    token: str | None = None
    attempts: int = 0
    lease_expires_at: datetime | None = None
    expired: bool = False  # lease forced into the past and not yet recovered
    last_error: str | None = None
    note: str | None = None
    percent: int | None = None
    events: list[ExpectedEvent] = field(default_factory=list)

    def end_lease(self) -> None:
        """The claim is over (finished, failed, released or recovered): no lease, nothing to expire."""
        self.lease_expires_at, self.expired = None, False


@dataclass(frozen=True)
class Claim:
    """What an agent remembers of one claim: the item and the lease token it was given."""

    agent: str
    item_id: int
    token: str


class ItemLifecycle(RuleBasedStateMachine):
    """Drives enqueue/claim/progress/done/fail/expiry/release/cancel/retry and stale writes."""

    def __init__(self, wq: WorkQueue, db: psycopg.Connection[dict[str, Any]]) -> None:
        super().__init__()
        self.wq, self.db = wq, db
        # Emptied with DELETE rather than TRUNCATE: 2 ms instead of 20, and shrinking replays hundreds of
        # examples. Ids restart so a printed counterexample replays with the same ids.
        self.db.execute(f"DELETE FROM {SCHEMA}.item_events")
        self.db.execute(f"DELETE FROM {SCHEMA}.items")
        self.db.execute(f"ALTER TABLE {SCHEMA}.items ALTER COLUMN id RESTART")
        self.items: dict[int, ModelItem] = {}
        self.claims: list[Claim] = []

    # What the model knows.

    def _valid(self, claim: Claim) -> bool:
        item = self.items[claim.item_id]
        return item.status == "claimed" and item.token == claim.token

    def _current_claims(self) -> list[Claim]:
        return [c for c in self.claims if self._valid(c)]

    def _stale_claims(self) -> list[Claim]:
        return [c for c in self.claims if not self._valid(c)]

    def _superseded_claims(self) -> list[Claim]:
        """Stale claims of items that are claimed again under a newer lease: the case fencing exists for."""
        return [c for c in self._stale_claims() if self.items[c.item_id].status == "claimed"]

    def _unexpired_claimed(self) -> list[int]:
        return [i.id for i in self.items.values() if i.status == "claimed" and not i.expired]

    def _snapshot(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Every row of both tables, to prove a refused write changed nothing at all."""
        items = self.db.execute(f"SELECT * FROM {SCHEMA}.items ORDER BY id").fetchall()
        events = self.db.execute(f"SELECT * FROM {SCHEMA}.item_events ORDER BY id").fetchall()
        return items, events

    # Rules.

    @initialize(
        items=st.lists(
            st.tuples(st.sampled_from(QUEUES), st.sampled_from(PRIORITIES), st.sampled_from([1, 2, 3])),
            min_size=1,
            max_size=4,
        )
    )
    def a_few_items(self, items: list[tuple[str, int, int]]) -> None:
        """Start every example with work waiting, so its steps go to the lifecycle rather than to setup."""
        for queue, priority, max_attempts in items:
            self.enqueue(queue, priority, max_attempts, dedupe_key=None, cooldown=None)

    @rule(
        queue=st.sampled_from(QUEUES),
        priority=st.sampled_from(PRIORITIES),
        max_attempts=st.sampled_from([1, 2, 3]),
        dedupe_key=st.none() | st.sampled_from(DEDUPE_KEYS),
        cooldown=st.sampled_from([None, 0.0]),
        delay=st.sampled_from([None, None, 3600.0]),
    )
    def enqueue(
        self,
        queue: str,
        priority: int,
        max_attempts: int,
        dedupe_key: str | None,
        cooldown: float | None,
        delay: float | None = None,
    ) -> None:
        """Enqueue, due now or (with `delay`) in an hour, which no claim of this test may take early."""
        if dedupe_key is None:
            cooldown = None
        holder = next(
            (i for i in self.items.values() if i.queue == queue and i.dedupe_key == dedupe_key and i.dedupe_held),
            None,
        )
        # A cooldown of 0 lets a finished holder's key go at the next enqueue with it.
        if holder is not None and holder.status in FINISHED and holder.cooldown is not None:
            holder.dedupe_held = False
            holder = None
        before = self._snapshot() if holder is not None else None
        got = self.wq.enqueue(
            queue,
            "model item",
            priority=priority,
            max_attempts=max_attempts,
            dedupe_key=dedupe_key,
            cooldown=cooldown,
            delay=delay,
            backoff=0,  # retries are due at once, so the model needs no clock
        )
        if holder is not None:
            assert not got.created and got.item.id == holder.id, (got, holder)
            assert got.item.status == holder.status
            assert self._snapshot() == before, "a deduplicated enqueue changed the database"
            return
        assert got.created, got
        assert got.item.id not in self.items and got.item.id > max(self.items, default=0)
        self.items[got.item.id] = ModelItem(
            id=got.item.id,
            queue=queue,
            priority=priority,
            max_attempts=max_attempts,
            dedupe_key=dedupe_key,
            cooldown=cooldown,
            run_at=got.item.run_at,
            dedupe_held=dedupe_key is not None,
            due=delay is None,
            events=[ExpectedEvent("enqueued", ADMIN)],
        )

    @precondition(lambda self: any(i.dedupe_key for i in self.items.values()))
    @rule(data=st.data(), cooldown=st.sampled_from([None, 0.0]))
    def enqueue_with_a_used_key(self, data: st.DataObject, cooldown: float | None) -> None:
        """Enqueue again with the key of an existing item, whatever its status: the holder comes back
        unless it finished with a cooldown of 0. Its own rule, since random keys rarely meet a finished holder."""
        keyed = sorted((i.queue, i.dedupe_key) for i in self.items.values() if i.dedupe_key)
        queue, key = data.draw(st.sampled_from(keyed), label="queue, key")
        self.enqueue(queue, 50, 3, dedupe_key=key, cooldown=cooldown)

    @rule(queues=st.sampled_from(CLAIM_QUEUES), agent=st.sampled_from(AGENTS), limit=st.sampled_from([1, 2, 3]))
    def claim_next(self, queues: tuple[str, ...], agent: str, limit: int) -> None:
        self._claim(queues, agent, limit)

    def _claim(self, queues: tuple[str, ...], agent: str, limit: int) -> None:
        # First the recovery claim-next does of expired leases in the queues it names (and no others).
        for item in self.items.values():
            if item.queue in queues and item.status == "claimed" and item.expired:
                item.status = "failed" if item.attempts >= item.max_attempts else "pending"
                item.claimed_by, item.last_error = None, "lease expired"
                item.end_lease()
                item.events.append(
                    ExpectedEvent(
                        "lease_expired", None, {"attempt": item.attempts, "now": item.status, "lease": item.token}
                    )
                )
        # Then the claim, of due items only (a failed attempt's backoff is 0, so it is due at once).
        due = sorted(
            (i for i in self.items.values() if i.queue in queues and i.status == "pending" and i.due),
            key=lambda i: (-i.priority, i.run_at, i.id),
        )
        expected = [i.id for i in due[:limit]]
        got = self.wq.claim_next(list(queues), agent=agent, limit=limit)
        assert [i.id for i in got] == expected, f"claimed {[i.id for i in got]}, the contract's order says {expected}"
        known_tokens = {c.token for c in self.claims}
        for claimed in got:
            item = self.items[claimed.id]
            token = str(claimed.lease_token)
            assert (claimed.status, claimed.claimed_by, claimed.attempts) == ("claimed", agent, item.attempts + 1)
            assert token not in known_tokens, "a claim reused an old lease token"
            item.status, item.claimed_by, item.token = "claimed", agent, token
            item.attempts += 1
            item.expired, item.note, item.percent = False, None, None
            item.lease_expires_at = claimed.lease_expires_at
            item.events.append(ExpectedEvent("claimed", agent, {"attempt": item.attempts}))
            previous = next((c for c in reversed(self.claims) if c.item_id == item.id), None)
            self.claims.append(Claim(agent, item.id, token))
            # The moment fencing exists for: the item is claimed again while its previous holder still has a
            # token. Every write with that token alone must be refused, now, not only when a rule picks it.
            if previous is not None:
                self._refuse(previous, None, list(WRITES))
            # Nor may an item in flight be cancelled or requeued under its holder.
            self._refuse_admin(item.id, ["cancel", "retry"])

    @precondition(lambda self: self._current_claims())
    @rule(
        data=st.data(),
        late=st.booleans(),
        name_agent=st.booleans(),
        note=st.none() | st.sampled_from(["a", "b"]),
        percent=st.none() | st.integers(0, 100),
    )
    def progress(
        self, data: st.DataObject, late: bool, name_agent: bool, note: str | None, percent: int | None
    ) -> None:
        """Renew a lease; `late` picks, when there is one, a lease that ran out but was not yet recovered."""
        expired = [c for c in self._current_claims() if self.items[c.item_id].expired]
        claim = data.draw(st.sampled_from((late and expired) or self._current_claims()), label="claim")
        item = self.items[claim.item_id]
        got = self.wq.progress(
            claim.item_id,
            agent=claim.agent if name_agent else None,
            lease_token=claim.token,
            note=note,
            percent=percent,
        )
        assert (got.status, str(got.lease_token), got.claimed_by) == ("claimed", claim.token, claim.agent)
        # Progress renews the lease: one forced into the past (but not yet recovered) is live again.
        assert item.lease_expires_at is not None and got.lease_expires_at is not None
        assert got.lease_expires_at > item.lease_expires_at, "progress did not renew the lease"
        item.expired, item.lease_expires_at = False, got.lease_expires_at
        item.note = note if note is not None else item.note
        item.percent = percent if percent is not None else item.percent
        detail = {k: v for k, v in (("note", note), ("percent", percent)) if v is not None}
        item.events.append(ExpectedEvent("progress", claim.agent, detail))

    @precondition(lambda self: self._current_claims())
    @rule(data=st.data(), name_agent=st.booleans())
    def done(self, data: st.DataObject, name_agent: bool) -> None:
        claim = data.draw(st.sampled_from(self._current_claims()), label="claim")
        item = self.items[claim.item_id]
        got = self.wq.done(
            claim.item_id,
            agent=claim.agent if name_agent else None,
            lease_token=claim.token,
            result={"by": claim.agent},
        )
        assert (got.status, got.result) == ("done", {"by": claim.agent})
        item.status, item.percent = "done", 100
        item.end_lease()
        item.events.append(ExpectedEvent("done", claim.agent))

    @precondition(lambda self: self._current_claims())
    @rule(data=st.data(), name_agent=st.booleans(), retry=st.booleans())
    def fail(self, data: st.DataObject, name_agent: bool, retry: bool) -> None:
        claim = data.draw(st.sampled_from(self._current_claims()), label="claim")
        item = self.items[claim.item_id]
        error = f"boom {len(item.events)}"
        got = self.wq.fail(
            claim.item_id, error, agent=claim.agent if name_agent else None, lease_token=claim.token, retry=retry
        )
        again = retry and item.attempts < item.max_attempts
        assert got.status == ("pending" if again else "failed"), (got.status, item)
        item.status, item.claimed_by, item.last_error = got.status, None, error
        item.end_lease()
        if again:
            item.run_at = got.run_at
            detail: dict[str, Any] = {"error": error, "attempt": item.attempts, "delay_seconds": 0}
            item.events.append(ExpectedEvent("retry_scheduled", claim.agent, detail))
        else:
            item.events.append(ExpectedEvent("failed", claim.agent, {"error": error, "attempt": item.attempts}))

    @precondition(lambda self: self._unexpired_claimed())
    @rule(
        data=st.data(),
        then_claim=st.none() | st.sampled_from(CLAIM_QUEUES),
        agent=st.sampled_from(AGENTS),
    )
    def expire_lease(self, data: st.DataObject, then_claim: tuple[str, ...] | None, agent: str) -> None:
        """A holder that went silent: its lease runs out (forced on the database clock). With `then_claim`
        a claim-next follows at once, as another worker's would: in the item's queue it recovers the item,
        in the other queue alone it must leave it be."""
        item_id = data.draw(st.sampled_from(self._unexpired_claimed()), label="item_id")
        [row] = self.db.execute(
            f"UPDATE {SCHEMA}.items SET lease_expires_at = now() - interval '1 second' WHERE id = %s"
            " RETURNING lease_expires_at",
            (item_id,),
        ).fetchall()
        self.items[item_id].expired, self.items[item_id].lease_expires_at = True, row["lease_expires_at"]
        if then_claim is not None:
            self._claim(then_claim, agent, 1)

    @precondition(lambda self: self._current_claims())
    @rule(data=st.data(), then_claim=st.none() | st.sampled_from(AGENTS))
    def release(self, data: st.DataObject, then_claim: str | None) -> None:
        """A worker shutting down gives its item back; with `then_claim` an agent claims from that queue at once
        (so the released token soon meets a newer claim of its item)."""
        claim = data.draw(st.sampled_from(self._current_claims()), label="claim")
        item = self.items[claim.item_id]
        released = self._release(claim, claim.agent)
        assert released == {(claim.item_id, claim.token)}, released
        # A release gives the attempt back: the item was not at fault.
        item.status, item.claimed_by = "pending", None
        item.end_lease()
        item.attempts -= 1
        item.events.append(ExpectedEvent("released", claim.agent, {"reason": "test"}))
        if then_claim is not None:
            self._claim((item.queue,), then_claim, 1)

    @precondition(lambda self: self.items)
    @rule(data=st.data(), action=st.sampled_from(["cancel", "retry"]), legal=st.booleans())
    def cancel_or_retry(self, data: st.DataObject, action: str, legal: bool) -> None:
        """Cancel (pending items only) or retry (failed or cancelled ones only) an item: in the wrong status it
        is a Conflict that changes nothing. `legal` picks, when there is one, an item the action applies to.
        One rule for both, so they do not crowd out the workers."""
        allowed = ("pending",) if action == "cancel" else ("failed", "cancelled")
        fits = [i for i in sorted(self.items) if self.items[i].status in allowed]
        item = self.items[data.draw(st.sampled_from((legal and fits) or sorted(self.items)), label="item_id")]
        if item.status not in allowed:
            self._refuse_admin(item.id, [action])
        elif action == "cancel":
            assert self.wq.cancel(item.id, reason="model").status == "cancelled"
            item.status = "cancelled"
            item.events.append(ExpectedEvent("cancelled", ADMIN, {"reason": "model"}))
        else:
            got = self.wq.retry(item.id)
            assert (got.status, got.attempts) == ("pending", 0)
            item.status, item.attempts, item.run_at, item.due = "pending", 0, got.run_at, True
            item.events.append(ExpectedEvent("requeued", ADMIN))

    @precondition(lambda self: self._stale_claims())
    @rule(data=st.data(), superseded=st.booleans(), name_agent=st.booleans(), actions=st.permutations(WRITES))
    def stale_write(self, data: st.DataObject, superseded: bool, name_agent: bool, actions: list[str]) -> None:
        """A remembered token used after its item moved on: every fenced write is refused and changes nothing.
        `superseded` picks, when there is one, an item claimed again since: the case fencing exists for, and
        rare among stale claims."""
        pool = (superseded and self._superseded_claims()) or self._stale_claims()
        claim = data.draw(st.sampled_from(pool), label="claim")
        self._refuse(claim, claim.agent if name_agent else None, actions)

    @precondition(lambda self: self._current_claims())
    @rule(data=st.data(), actions=st.permutations(WRITES))
    def write_by_another_agent(self, data: st.DataObject, actions: list[str]) -> None:
        """The live token named with an agent other than its holder: the agent check refuses every write."""
        claim = data.draw(st.sampled_from(self._current_claims()), label="claim")
        other = data.draw(st.sampled_from([a for a in AGENTS if a != claim.agent]), label="other")
        self._refuse(claim, other, actions)

    def _refuse_admin(self, item_id: int, actions: list[str]) -> None:
        """Cancel or retry in a status that does not allow it: Conflict, and both tables as they were."""
        before = self._snapshot()
        for action in actions:
            with pytest.raises(Conflict):
                if action == "cancel":
                    self.wq.cancel(item_id, reason="model")
                else:
                    self.wq.retry(item_id)
        assert self._snapshot() == before, f"a refused {actions} changed the database"

    def _release(self, claim: Claim, agent: str) -> set[tuple[int, str]]:
        """Release one lease as a shutting-down worker does; the (id, token) pairs released."""
        return self.wq.run(ops.release([(claim.item_id, claim.token)], agent=agent, reason="test"))

    def _refuse(self, claim: Claim, agent: str | None, actions: list[str]) -> None:
        """Each write must be refused (Conflict; LeaseLost while the item is live) and, all of them together,
        leave both tables exactly as they were."""
        live = self.items[claim.item_id].status in ("pending", "claimed")
        before = self._snapshot()
        for action in actions:
            if action == "release":
                assert self._release(claim, agent or claim.agent) == set(), "a release with a stale lease released"
                continue
            with pytest.raises(Conflict) as raised:
                if action == "progress":
                    self.wq.progress(claim.item_id, agent=agent, lease_token=claim.token, note="late")
                elif action == "done":
                    self.wq.done(claim.item_id, agent=agent, lease_token=claim.token, result={"late": 1})
                else:
                    self.wq.fail(claim.item_id, "late", agent=agent, lease_token=claim.token)
            if live:
                assert isinstance(raised.value, LeaseLost), f"{action}: expected LeaseLost, got {raised.value!r}"
        assert self._snapshot() == before, f"refused writes {actions} changed the database"

    # Invariants, checked after every step.

    def _rows(self) -> list[dict[str, Any]]:
        return self.db.execute(
            f"SELECT *, lease_expires_at < now() AS lease_past, run_at <= now() AS due FROM {SCHEMA}.items ORDER BY id"
        ).fetchall()

    def _events(self) -> dict[int, list[dict[str, Any]]]:
        history: dict[int, list[dict[str, Any]]] = {}
        for row in self.db.execute(f"SELECT * FROM {SCHEMA}.item_events ORDER BY item_id, id").fetchall():
            history.setdefault(row["item_id"], []).append(row)
        return history

    @invariant()
    def the_database_agrees(self) -> None:
        """After every step: read both tables once and hold them to the model and to the global invariants."""
        rows, history = self._rows(), self._events()
        self._rows_match_the_model(rows)
        self._history_matches_the_model(history)
        self._every_row_is_legal(rows)
        self._history_replays_to_the_status(rows, history)
        self._at_most_one_live_claim_per_item()

    def _rows_match_the_model(self, rows: list[dict[str, Any]]) -> None:
        assert [r["id"] for r in rows] == sorted(self.items), "the database holds other items than the model"
        for row in rows:
            item = self.items[row["id"]]
            want = {
                "queue": item.queue,
                "priority": item.priority,
                "max_attempts": item.max_attempts,
                "dedupe_key": item.dedupe_key,
                "dedupe_held": item.dedupe_held,
                "status": item.status,
                "claimed_by": item.claimed_by,
                "lease_token": item.token,
                "attempts": item.attempts,
                "run_at": item.run_at,
                "last_error": item.last_error,
                "progress_note": item.note,
                "progress_percent": item.percent,
                "lease_expires_at": item.lease_expires_at,
            }
            have = {k: str(row[k]) if k == "lease_token" and row[k] is not None else row[k] for k in want}
            assert have == want, f"item {item.id}: database {have} != model {want}"
            if item.status == "pending":
                assert row["due"] is item.due, f"item {item.id}: due {row['due']} (run_at {row['run_at']})"
            if item.status == "claimed":
                assert row["lease_past"] is item.expired, f"item {item.id}: lease expiry {row['lease_expires_at']}"

    def _history_matches_the_model(self, history: dict[int, list[dict[str, Any]]]) -> None:
        for item in self.items.values():
            events = history.get(item.id, [])
            have = [(e["event"], e["agent"]) for e in events]
            want = [(e.event, e.agent) for e in item.events]
            assert have == want, f"item {item.id}: history {have} != model {want}"
            for expected, event in zip(item.events, events, strict=True):
                detail = event["detail"] or {}
                assert {k: detail.get(k) for k in expected.detail} == expected.detail, (item.id, expected, detail)

    def _every_row_is_legal(self, rows: list[dict[str, Any]]) -> None:
        """Whatever the model says: legal statuses, bounded attempts, one holder exactly while claimed."""
        held_keys: Counter[tuple[str, str]] = Counter()
        for row in rows:
            status = row["status"]
            assert status in STATUSES, row
            assert 0 <= row["attempts"] <= row["max_attempts"], row
            assert (status == "claimed") == (row["lease_expires_at"] is not None), row
            assert (status in FINISHED) == (row["finished_at"] is not None), row
            # The holder is named while claimed (and kept by a done item as who finished it), else nobody.
            if status == "claimed":
                assert row["claimed_by"] is not None and row["lease_token"] is not None, row
            elif status != "done":
                assert row["claimed_by"] is None, row
            if row["dedupe_held"]:
                held_keys[(row["queue"], row["dedupe_key"])] += 1
        assert all(n == 1 for n in held_keys.values()), held_keys

    def _history_replays_to_the_status(
        self, rows: list[dict[str, Any]], history: dict[int, list[dict[str, Any]]]
    ) -> None:
        """Each history is a legal walk of the state machine that ends in the row's status, with one
        `claimed` per attempt charged since the last requeue and at most one `done`."""
        for row in rows:
            events = history.get(row["id"], [])
            state: str | None = None
            attempts = 0
            for event in events:
                name = event["event"]
                sources, target = TRANSITIONS[name]
                assert state in sources, f"item {row['id']}: {name} from {state} in {[e['event'] for e in events]}"
                if name == "lease_expired":
                    target = (event["detail"] or {}).get("now")
                    assert target in ("pending", "failed"), event
                if name == "claimed":
                    attempts += 1
                    assert (event["detail"] or {}).get("attempt") == attempts, (row["id"], event)
                elif name == "released":
                    attempts -= 1
                elif name == "requeued":
                    attempts = 0
                state = target
            assert state == row["status"], f"item {row['id']}: history ends {state}, row says {row['status']}"
            assert attempts == row["attempts"], (
                f"item {row['id']}: {attempts} claims charged, row says {row['attempts']}"
            )
            assert sum(e["event"] == "done" for e in events) <= 1, row["id"]
            times = [e["at"] for e in events]
            assert times == sorted(times), f"item {row['id']}: history out of time order"

    def _at_most_one_live_claim_per_item(self) -> None:
        live = Counter(c.item_id for c in self._current_claims())
        assert all(n == 1 for n in live.values()), live
        assert len({c.token for c in self.claims}) == len(self.claims), "a lease token was handed out twice"


@pytest.mark.timeout(_TIMEOUT)
def test_the_item_lifecycle_matches_its_model(db_url: str, soak: int) -> None:
    config = settings(
        max_examples=25 * soak,
        stateful_step_count=30,
        deadline=None,
        database=None,  # no .hypothesis directory in the checkout
        derandomize=IN_CI,
        report_multiple_bugs=False,  # shrink one counterexample, not every distinct one (shrinking is slow)
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )

    # One queue and one inspection connection for every example: opening them is a tenth of an example.
    with (
        WorkQueue(db_url, schema=SCHEMA, agent=ADMIN, max_connections=1) as wq,
        psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as db,
    ):

        def machine() -> ItemLifecycle:
            return ItemLifecycle(wq, db)

        factory: Callable[[], ItemLifecycle] = machine
        if not IN_CI:
            chosen = int(os.environ.get("CLAWNSOLE_MODEL_SEED") or random.randrange(2**32))
            print(f"item lifecycle model: replay with CLAWNSOLE_MODEL_SEED={chosen}")
            factory = seed(chosen)(machine)
        # Hypothesis takes any factory of machines; its annotation names only the class.
        run_state_machine_as_test(factory, settings=config)  # type: ignore[arg-type]
