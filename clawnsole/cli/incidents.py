"""`clawnsole workers`, `leases [release]`, `doctor`, `explain-claim`: the incident tools, thin over
`clawnsole.incidents`. Heavy imports stay inside the commands (see main.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from clawnsole.cli.common import (
    EXIT_CODES_HELP,
    AsJson,
    DatabaseUrl,
    Schema,
    handle_errors,
    open_queue,
    print_json,
    print_table,
    resolve,
)

if TYPE_CHECKING:
    from clawnsole.incidents.api import Incidents


@contextmanager
def _incidents(database_url: str | None, schema: str | None, *, checked: bool = True) -> Iterator[Incidents]:
    """The incident tools on one connection. `checked` False skips the schema version check, so `doctor` can
    report a missing or old schema as a check of its own instead of stopping at it."""
    from clawnsole.incidents.api import Incidents

    if checked:
        with open_queue(database_url, schema) as wq:
            yield Incidents(wq)
        return
    from clawnsole.db.connect import connect
    from clawnsole.queue import WorkQueue

    conninfo, schema_name = resolve(database_url, schema)
    with connect(conninfo) as conn:
        yield Incidents(WorkQueue(conn, schema=schema_name))


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.0f}"


@handle_errors
def workers_command(
    show_all: Annotated[bool, typer.Option("--all", help="Also list workers that stopped cleanly.")] = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete the rows of workers gone for more than 24 h, then list.")
    ] = False,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """The workers registry: who runs where, last heartbeat and counts, alive or gone.

    Gone: stopped cleanly, or silent (no heartbeat for 3 of its heartbeat intervals). Rows gone for more
    than 24 h are deleted by the next worker that starts (or --prune)."""
    with _incidents(database_url, schema) as incidents:
        pruned = incidents.prune_workers() if prune else None
        found = incidents.workers(include_stopped=show_all)
    if pruned is not None:
        typer.echo(f"pruned {pruned} worker row{'s' if pruned != 1 else ''} gone for more than 24 h", err=True)
    if as_json:
        print_json([w.to_json() for w in found])
        return
    rows: list[dict[str, Any]] = [
        w.to_json()
        | {
            "state": w.state if w.gone is None else f"gone ({w.gone})",
            "queues": ",".join(w.queues),
            "last_seen": f"{w.last_seen_seconds:.0f}s ago",
        }
        for w in found
    ]
    columns = ["agent", "state", "host", "pid", "queues", "last_seen", "in_flight", "done_count", "failed_count"]
    print_table(rows, [*columns, "version", "started_at"])


leases_app = typer.Typer(
    help=f"Who holds which lease, and taking one back. {EXIT_CODES_HELP}",
    invoke_without_command=True,
    no_args_is_help=False,
)


@leases_app.callback(invoke_without_command=True)
@handle_errors
def leases_command(
    ctx: typer.Context,
    queue: Annotated[str | None, typer.Option("--queue", help="Only this queue.")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Only leases this agent holds.")] = None,
    expired: Annotated[bool, typer.Option("--expired", help="Only leases past their expiry.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="At most this many (soonest to expire first).")] = 1000,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Leases held now: item, holder and attempt, since when, seconds left (negative: expired), last progress."""
    if ctx.invoked_subcommand is not None:
        return
    with _incidents(database_url, schema) as incidents:
        found = incidents.leases(queue=queue, agent=agent, expired=expired, limit=limit)
    if as_json:
        print_json([lease.to_json() for lease in found])
        return
    rows = [
        lease.to_json()
        | {
            "attempt": f"{lease.attempts}/{lease.max_attempts}",
            "left": _seconds(lease.lease_left_seconds),
            "progress": " ".join(
                p
                for p in (
                    None if lease.progress_percent is None else f"{lease.progress_percent}%",
                    lease.progress_note,
                )
                if p
            ),
        }
        for lease in found
    ]
    print_table(
        rows, ["id", "queue", "kind", "title", "agent", "attempt", "claimed_at", "left", "progress", "progress_at"]
    )


@leases_app.command("release")
@handle_errors
def release_command(
    item_id: Annotated[int | None, typer.Option("--id", help="The item whose lease to take back.")] = None,
    agent: Annotated[str | None, typer.Option("--agent", help="Take back every lease this agent holds.")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (kept in the item's history).")] = None,
    by: Annotated[
        str | None,
        typer.Option("--by", help="Who is releasing (default: $CLAWNSOLE_AGENT, else user@host).", show_default=False),
    ] = None,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Take leases back: the items go back to pending now, the attempt not charged.

    The old holder's later progress, done or fail are rejected (lease lost, exit 3). Exit 4 when nothing
    matching was held."""
    from clawnsole.cli.queue import _by

    with _incidents(database_url, schema) as incidents:
        released = incidents.release(item_id, agent=agent, reason=reason, by=_by(by))
    if as_json:
        print_json([r.to_json() for r in released])
        return
    print_table([r.to_json() for r in released], ["id", "queue", "holder", "attempts"])


@handle_errors
def doctor_command(
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Check the queue's health; each check OK, WARN or FAIL with a hint.

    The checks: schema and pending migrations, index validity, the claim plan, dead rows and vacuum, the
    oldest open transaction, the NOTIFY queue, expired leases, paused or draining queues, silent workers.
    Exit 0 when no check FAILs, 1 when one does (WARN alone is 0), 5 when the database is unreachable."""
    with _incidents(database_url, schema, checked=False) as incidents:
        report = incidents.doctor()
    if as_json:
        print_json(report.to_json())
    else:
        # Not print_table: a check's detail is a sentence, and the table cuts cells at 60 characters.
        width = max(len(c.name) for c in report.checks)
        for check in report.checks:
            typer.echo(f"{check.status:<4}  {check.name:<{width}}  {check.detail}")
            if check.status != "OK" and check.hint:
                typer.echo(f"{'':<4}  {'':<{width}}  hint: {check.hint}")
    if report.failed:
        raise typer.Exit(1)


@handle_errors
def explain_claim_command(
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", help="Queue to plan a claim from (repeatable; default: one with pending items)."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Items the planned claim asks for.")] = 1,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of the live claim statement, rolled back: nothing is claimed.

    The claim really runs inside a transaction that is then rolled back, so the plan and its timings are
    real while no item changes and no event is written."""
    with _incidents(database_url, schema) as incidents:
        found = incidents.explain_claim(queue, limit=limit, fmt="json" if as_json else "text")
    if as_json:
        print_json(found.to_json())
        return
    typer.echo(f"-- claim of up to {found.limit} from {', '.join(found.queues)}; rolled back, nothing claimed")
    typer.echo(found.plan)
    if not found.uses_claimable_index:
        typer.echo("-- note: the plan does not read items_claimable_idx (see `clawnsole doctor`)")
