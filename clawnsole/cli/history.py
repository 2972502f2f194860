"""`clawnsole workqueue cleanup|stats|tail`: retention and the event history, thin over `clawnsole.retention`
and `clawnsole.stats`. Registered into the `workqueue` group; the library loads inside each command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from clawnsole.cli.common import AsJson, DatabaseUrl, Schema, handle_errors, open_queue, print_json, print_table

if TYPE_CHECKING:
    from clawnsole.stats.models import TailEvent

Queue = Annotated[str | None, typer.Option("--queue", help="Only this queue.")]


def register(app: typer.Typer) -> None:
    """Add `cleanup`, `stats` and `tail` to the `workqueue` command group."""
    app.command("cleanup")(cleanup)
    app.command("stats")(stats)
    app.command("tail")(tail)


@handle_errors
def cleanup(
    older_than: Annotated[str, typer.Option("--older-than", help="Delete items finished longer ago than this (30d).")],
    status: Annotated[
        str | None, typer.Option("--status", help="Comma-separated: done, cancelled, failed (default: all three).")
    ] = None,
    queue: Queue = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")] = False,
    batch: Annotated[int, typer.Option("--batch", help="Items deleted per transaction.")] = 1000,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Delete finished items (and their history) older than --older-than, in short batches.

    Never touches pending, waiting or claimed items. Keeps a finished item whose dedupe key is still in its
    cooldown (until the cooldown ends) and a finished prerequisite of a waiting item.
    """
    from clawnsole.retention.api import Retention
    from clawnsole.retention.models import CleanupOptions

    options = CleanupOptions.checked(older_than, statuses=status, queue=queue, batch=batch)
    with open_queue(database_url, schema) as wq:
        report = Retention(wq).run(options, dry_run=dry_run)
    if as_json:
        print_json(report.to_json())
        return
    verb = "would delete" if dry_run else "deleted"
    typer.echo(
        f"{verb} {report.items} items and {report.events} events in {report.batches} batches "
        f"(finished before {report.cutoff.isoformat(timespec='seconds')}, statuses {','.join(options.statuses)}"
        + (f", queue {options.queue}" if options.queue else "")
        + ")"
    )
    kept = [
        f"{report.kept_in_cooldown} still holding their dedupe key in its cooldown" if report.kept_in_cooldown else "",
        f"{report.kept_as_prerequisite} prerequisites of waiting items" if report.kept_as_prerequisite else "",
        f"{report.left} locked by someone else (the next cleanup takes them)" if report.left else "",
    ]
    if any(kept):
        typer.echo("kept: " + "; ".join(k for k in kept if k))


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@handle_errors
def stats(
    queue: Queue = None,
    kind: Annotated[str | None, typer.Option("--kind", help="Only this kind.")] = None,
    since: Annotated[str, typer.Option("--since", help="Over the events of this long ago until now.")] = "24h",
    breakdown: Annotated[
        bool, typer.Option("--breakdown", help="Time per handler step (ctx.timed / clawnsole:step lines) instead.")
    ] = False,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Per queue and kind: done, failed, retried, success rate, p50/p95 run and wait time (seconds)."""
    from clawnsole.stats.api import Stats

    with open_queue(database_url, schema) as wq:
        api = Stats(wq)
        rows: list[Any] = (
            api.breakdown(queue=queue, kind=kind, since=since)
            if breakdown
            else api.stats(queue=queue, kind=kind, since=since)
        )
    if as_json:
        print_json([r.to_json() for r in rows])
        return
    if breakdown:
        table = [
            r.to_json()
            | {
                "total": _seconds(r.total_seconds),
                "p50": _seconds(r.p50),
                "p95": _seconds(r.p95),
                "kind": r.kind or "-",
            }
            for r in rows
        ]
        print_table(table, ["queue", "kind", "step", "count", "total", "p50", "p95"])
        return
    table = [
        r.to_json()
        | {
            "kind": r.kind or "-",
            "success": "-" if r.success_rate is None else f"{r.success_rate:.1%}",
            **{k: _seconds(getattr(r, k)) for k in ("run_p50", "run_p95", "wait_p50", "wait_p95")},
        }
        for r in rows
    ]
    columns = ["queue", "kind", "claimed", "done", "failed", "retried", "success"]
    print_table(table, [*columns, "run_p50", "run_p95", "wait_p50", "wait_p95"])


@handle_errors
def tail(
    queue: Queue = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Start with the events of this long ago (e.g. 10m).")
    ] = None,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Follow the event history live, one line per event (JSON with --json), until Ctrl-C or SIGTERM."""
    import os
    import signal
    import sys
    import threading

    from clawnsole import validate
    from clawnsole.cli.common import resolve
    from clawnsole.stats.tail import follow

    since_seconds = None if since is None else validate.duration(since, "since")
    wanted = None if queue is None else validate.queue_name(queue)
    conninfo, schema_name = resolve(database_url, schema)
    stop = threading.Event()

    def request_stop(_signum: int, _frame: object) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_stop)

    def emit(event: TailEvent) -> None:
        if stop.is_set():
            return
        try:
            if as_json:
                print_json(event.to_json())
            else:
                typer.echo(event.line())
            sys.stdout.flush()
        except BrokenPipeError:
            # Piped into `head`: the reader is gone. Stop quietly, and point stdout at /dev/null so the
            # interpreter's own flush at exit does not complain about the pipe again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            stop.set()

    def ready() -> None:
        typer.echo("clawnsole: following events (Ctrl-C to stop)", err=True)

    follow(conninfo, schema_name, emit, stop, queue=wanted, since=since_seconds, on_ready=ready)
