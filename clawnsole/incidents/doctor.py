"""`doctor`: the checks an operator runs first, each an operation (sans-I/O) that reads and returns one
`Check` — OK, WARN or FAIL, what it found, and a one-line hint. The drivers run each check in a transaction
of its own that is always rolled back, under a statement timeout, so a check that cannot run (a table
missing, a lock held) is reported as failed and the others still run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from psycopg import sql as pgsql

from clawnsole.db.migrate import available
from clawnsole.errors import ClawnsoleError, DatabaseUnavailable, SchemaMissing
from clawnsole.incidents import plan, workers
from clawnsole.incidents.models import FAIL, OK, WARN, Check
from clawnsole.ops import Op, Step

# The indexes the claim and the lease recovery cannot do without.
REQUIRED_INDEXES = ("items_claimable_idx", "items_lease_idx")


@dataclass(frozen=True)
class Thresholds:
    """Where a check turns WARN or FAIL (seconds, rows, fractions); parameters so a test can move them."""

    transaction_warn_after: float = 300.0
    transaction_fail_after: float = 3600.0
    # Dead rows worth a warning: more than this many, and more than this share of the live ones.
    dead_rows: int = 10_000
    dead_ratio: float = 0.2
    notify_warn: float = 0.5
    notify_fail: float = 0.9
    # A lease expired this long ago and still not recovered means nobody claims from its queue.
    expired_lease_grace: float = 60.0


def ago(seconds: float | None) -> str:
    """A duration the way a person reads it: 45 s, 7 min, 3.2 h, 2.0 d."""
    if seconds is None:
        return "never"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _bounded(op: Op[Check]) -> Op[Check]:
    """The check under a statement and lock timeout (local to its rolled-back transaction)."""
    yield Step("doctor_timeouts", {})
    return (yield from op)


def schema(schema_name: str) -> Op[Check]:
    """The schema's migrations against the ones this Clawnsole ships."""
    ledger = f"{pgsql.Identifier(schema_name).as_string(None)}.schema_migrations"
    rows = yield Step("schema_version", {"ledger": ledger})
    if not rows or rows[0]["version"] is None:
        return Check(
            "schema", FAIL, f"schema {schema_name!r} is not set up in this database", "run `clawnsole migrate`"
        )
    applied = {r["version"] for r in (yield Step("doctor_migrations", {}))}
    shipped = available()
    pending = [f"{m.version}_{m.name}" for m in shipped if m.version not in applied]
    unknown = sorted(applied - {m.version for m in shipped})
    data = {"version": max(applied), "pending": pending, "unknown": unknown}
    if pending:
        return Check("schema", FAIL, f"pending migrations: {', '.join(pending)}", "run `clawnsole migrate`", data)
    if unknown:
        return Check(
            "schema",
            WARN,
            f"the schema has migrations this Clawnsole does not ship: {', '.join(unknown)}",
            "upgrade clawnsole on this machine to the version that migrated the schema",
            data,
        )
    return Check("schema", OK, f"at migration {max(applied)}, none pending", data=data)


def indexes(schema_name: str) -> Op[Check]:
    """Every index of the schema valid and ready, and the claim's own indexes present."""
    rows = yield Step("doctor_indexes", {"schema": schema_name})
    broken = [f"{r['index']} on {r['table']}" for r in rows if not (r["valid"] and r["ready"])]
    missing = [name for name in REQUIRED_INDEXES if name not in {r["index"] for r in rows}]
    data = {"invalid": broken, "missing": missing, "indexes": len(rows)}
    if broken:
        return Check(
            "indexes",
            FAIL,
            f"invalid: {', '.join(broken)} (the planner ignores it; writes may still pay for it)",
            "REINDEX INDEX CONCURRENTLY it (a failed CREATE INDEX CONCURRENTLY leaves one behind), or drop it",
            data,
        )
    if missing:
        return Check("indexes", FAIL, f"missing: {', '.join(missing)}", "run `clawnsole migrate`", data)
    return Check("indexes", OK, f"{len(rows)} indexes, all valid", data=data)


def claim_plan() -> Op[Check]:
    """Whether the planner takes the claim through items_claimable_idx (plain EXPLAIN: nothing runs)."""
    found = yield from plan.claim_plan(analyze=False, fmt="text")
    data = {"queues": found.queues}
    if found.uses_claimable_index:
        return Check("claim_plan", OK, f"the claim reads {plan.CLAIMABLE_INDEX} (queue {found.queues[0]})", data=data)
    return Check(
        "claim_plan",
        WARN,
        f"the claim does not read {plan.CLAIMABLE_INDEX}: every claim scans more than the due items",
        "check the index (above), ANALYZE the items table, and see `clawnsole explain-claim`",
        data,
    )


def vacuum(schema_name: str, limits: Thresholds) -> Op[Check]:
    """Dead rows and the last vacuum of items and item_events."""
    rows = yield Step("doctor_table_stats", {"schema": schema_name})
    parts, behind = [], []
    for r in rows:
        live, dead = int(r["live"]), int(r["dead"])
        parts.append(f"{r['table']}: {live} live, {dead} dead, vacuumed {ago(r['vacuum_age_seconds'])} ago")
        if dead > limits.dead_rows and dead > limits.dead_ratio * live:
            behind.append(str(r["table"]))
    detail = "; ".join(parts).replace("vacuumed never ago", "never vacuumed") or "no statistics yet"
    data = {"tables": [dict(r) for r in rows]}
    if behind:
        return Check(
            "vacuum",
            WARN,
            f"dead rows pile up in {', '.join(behind)}: {detail}",
            "an old transaction (see oldest_transaction) holds vacuum back, or autovacuum is off or too slow",
            data,
        )
    return Check("vacuum", OK, detail, data=data)


def oldest_transaction(limits: Thresholds) -> Op[Check]:
    """The oldest open transaction holding a snapshot: what keeps vacuum from removing dead rows."""
    rows = yield Step("doctor_oldest_transaction", {})
    if not rows:
        return Check("oldest_transaction", OK, "no other open transaction holds a snapshot")
    r = rows[0]
    age = float(r["age_seconds"] or 0.0)
    who = f"pid {r['pid']} (application {r['application_name'] or '-'!r}, user {r['usename']}, {r['state']})"
    data = {k: r[k] for k in ("pid", "application_name", "usename", "state", "age_seconds")}
    detail = f"{who} has had a transaction open for {ago(age)}"
    hint = f"end that transaction, or SELECT pg_terminate_backend({r['pid']}); until then no dead row is removed"
    if age > limits.transaction_fail_after:
        return Check("oldest_transaction", FAIL, detail, hint, data)
    if age > limits.transaction_warn_after:
        return Check("oldest_transaction", WARN, detail, hint, data)
    return Check("oldest_transaction", OK, detail, data=data)


def notifications(limits: Thresholds) -> Op[Check]:
    """How full the LISTEN/NOTIFY queue is (full: every enqueue fails)."""
    rows = yield Step("doctor_notification_queue", {})
    usage = float(rows[0]["usage"])
    detail = f"the notification queue is {usage:.1%} full"
    hint = "a session that LISTENs is stuck in a long transaction: see oldest_transaction and pg_stat_activity"
    data = {"usage": usage}
    if usage >= limits.notify_fail:
        return Check("notifications", FAIL, detail, hint, data)
    if usage >= limits.notify_warn:
        return Check("notifications", WARN, detail, hint, data)
    return Check("notifications", OK, detail, data=data)


def expired_leases(limits: Thresholds) -> Op[Check]:
    """Leases past their expiry that no claim has recovered for a while."""
    rows = yield Step("doctor_expired_leases", {})
    total = sum(int(r["leases"]) for r in rows)
    stale = [r for r in rows if float(r["oldest_seconds"]) > limits.expired_lease_grace]
    data = {"queues": [dict(r) for r in rows]}
    if stale:
        listed = ", ".join(f"{r['queue']} ({r['leases']}, oldest {ago(r['oldest_seconds'])})" for r in stale)
        return Check(
            "expired_leases",
            WARN,
            f"expired leases not recovered: {listed}",
            "claim-next recovers them: is a worker running for these queues? `clawnsole leases --expired`",
            data,
        )
    if total:
        return Check(
            "expired_leases", OK, f"{total} just expired (the next claim in their queue recovers them)", data=data
        )
    return Check("expired_leases", OK, "none", data=data)


def queue_controls() -> Op[Check]:
    """Queues paused or draining."""
    rows = yield Step("doctor_queue_controls", {})
    if not rows:
        return Check("queues", OK, "no queue is paused or draining")
    listed = ", ".join(
        f"{r['name']} {r['state']} for {ago(r['since_seconds'])}" + (f" by {r['state_by']}" if r["state_by"] else "")
        for r in rows
    )
    return Check(
        "queues",
        WARN,
        listed,
        "`clawnsole queue resume Q` if that is not intended",
        {"queues": [dict(r) for r in rows]},
    )


def silent_workers() -> Op[Check]:
    """Workers that stopped sending heartbeats without a clean stop."""
    found = yield from workers.list_workers()
    silent = [w for w in found if w.gone == "silent"]
    alive = sum(1 for w in found if w.gone is None)
    data = {"alive": alive, "silent": [w.agent for w in silent]}
    if silent:
        listed = ", ".join(f"{w.agent} on {w.host or '?'} (last seen {ago(w.last_seen_seconds)} ago)" for w in silent)
        return Check(
            "workers",
            WARN,
            f"{alive} alive; gone silent: {listed}",
            "the process died or lost the database; its leases expire and other workers recover them",
            data,
        )
    return Check("workers", OK, f"{alive} alive, none gone silent", data=data)


def checks(schema_name: str, limits: Thresholds | None = None) -> Iterator[tuple[str, Callable[[], Op[Check]]]]:
    """Every check, in the order the report lists them: (name, a function making its operation)."""
    t = limits or Thresholds()
    yield "schema", lambda: _bounded(schema(schema_name))
    yield "indexes", lambda: _bounded(indexes(schema_name))
    yield "claim_plan", lambda: _bounded(claim_plan())
    yield "vacuum", lambda: _bounded(vacuum(schema_name, t))
    yield "oldest_transaction", lambda: _bounded(oldest_transaction(t))
    yield "notifications", lambda: _bounded(notifications(t))
    yield "expired_leases", lambda: _bounded(expired_leases(t))
    yield "queues", lambda: _bounded(queue_controls())
    yield "workers", lambda: _bounded(silent_workers())


def could_not_check(name: str, error: ClawnsoleError) -> Check:
    """The check's result when its statements failed; a lost database is raised instead (exit 5)."""
    if isinstance(error, SchemaMissing):
        # The schema check itself fails this way when there is no schema at all (its statement names the
        # ledger table); the error then says exactly that.
        detail = str(error) if name == "schema" else "cannot check: the schema is missing or behind"
        return Check(name, FAIL, detail, "run `clawnsole migrate`")
    if isinstance(error, DatabaseUnavailable):
        raise error
    return Check(
        name, FAIL, f"cannot check: {error}", "run `clawnsole doctor` again; if it persists, look at the server log"
    )
