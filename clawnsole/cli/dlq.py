"""`clawnsole dlq list|show|replay`: the dead letters (failed items) and their bulk replay. Thin: parse,
call `clawnsole.deadletters`, print."""

from __future__ import annotations

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
)

if TYPE_CHECKING:
    from clawnsole.models import Item

app = typer.Typer(
    help=f"Dead letters: list, show and replay failed items. {EXIT_CODES_HELP} "
    "`replay` without --yes only prints what it would touch (exit 0).",
    no_args_is_help=True,
)

Queue = Annotated[str | None, typer.Option("--queue", help="Only this queue.", show_default=False)]
Kind = Annotated[str | None, typer.Option("--kind", help="Only this kind.", show_default=False)]
ExcludeKind = Annotated[
    list[str] | None, typer.Option("--exclude-kind", help="Leave this kind out (repeatable).", show_default=False)
]
Since = Annotated[str | None, typer.Option("--since", help="Only items that failed at most this long ago (24h, 90m).")]
ErrorText = Annotated[
    str | None, typer.Option("--error", help="Only items whose last error contains this text (any case).")
]
MaxReplays = Annotated[
    int | None,
    typer.Option("--max-replays", help="Only items replayed fewer than N times before.", show_default=False),
]

# The error column of the table: its first line, cut to this many characters (`show` has all of it).
ERROR_WIDTH = 60


def _first_line(error: str | None) -> str:
    line = (error or "").strip().split("\n", 1)[0]
    return line if len(line) <= ERROR_WIDTH else line[: ERROR_WIDTH - 1] + "…"


def _row(item: Item) -> dict[str, Any]:
    return {
        "id": item.id,
        "queue": item.queue,
        "kind": item.kind,
        "attempts": f"{item.attempts}/{item.max_attempts}",
        "finished_at": item.finished_at.isoformat(timespec="seconds") if item.finished_at else None,
        "title": item.title,
        "last_error": _first_line(item.last_error),
    }


@app.command("list")
@handle_errors
def list_(
    queue: Queue = None,
    kind: Kind = None,
    exclude_kind: ExcludeKind = None,
    since: Since = None,
    error: ErrorText = None,
    max_replays: MaxReplays = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many (newest failure first).")] = 100,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """List dead letters (failed items), newest failure first, with the first line of their last error."""
    from clawnsole.deadletters import DeadLetters

    with open_queue(database_url, schema) as wq:
        items = DeadLetters(wq).list(
            queue=queue,
            kind=kind,
            exclude_kinds=exclude_kind or (),
            since=since,
            error=error,
            max_replays=max_replays,
            limit=limit,
        )
    if as_json:
        print_json([i.to_json(with_instructions=False) for i in items])
        return
    print_table([_row(i) for i in items], ["id", "queue", "kind", "attempts", "finished_at", "title", "last_error"])


@app.command()
@handle_errors
def show(
    item_id: Annotated[int, typer.Argument(metavar="ID", help="The dead letter's id.", show_default=False)],
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Show one dead letter: the item, its full last error and its history (exit 4 if it is not failed)."""
    from clawnsole.deadletters import DeadLetters

    with open_queue(database_url, schema) as wq:
        letter = DeadLetters(wq).get(item_id)
    if as_json:
        print_json(letter.to_json())
        return
    item = letter.item
    fields = {
        "id": item.id,
        "queue": item.queue,
        "kind": item.kind,
        "title": item.title,
        "status": item.status,
        "attempts": f"{item.attempts}/{item.max_attempts}",
        "created_at": item.created_at.isoformat(timespec="seconds"),
        "finished_at": item.finished_at.isoformat(timespec="seconds") if item.finished_at else None,
        "dedupe_key": item.dedupe_key,
    }
    for name, value in fields.items():
        if value is not None:
            typer.echo(f"{name + ':':<12} {value}")
    typer.echo("last error:")
    for line in (item.last_error or "(none)").splitlines() or [""]:
        typer.echo(f"  {line}")
    typer.echo("history:")
    print_table(
        [
            {
                "at": e.at.isoformat(timespec="seconds"),
                "event": e.event,
                "agent": e.agent,
                "detail": None if not e.detail else _detail(e.detail),
            }
            for e in letter.history
        ],
        ["at", "event", "agent", "detail"],
    )


def _detail(detail: dict[str, Any]) -> str:
    import json

    return json.dumps(detail, ensure_ascii=False, default=str)


@app.command()
@handle_errors
def replay(
    queue: Queue = None,
    kind: Kind = None,
    exclude_kind: ExcludeKind = None,
    since: Since = None,
    ids: Annotated[
        str | None, typer.Option("--ids", help="Only these ids, e.g. 12,15,19 (each must be a dead letter).")
    ] = None,
    error: ErrorText = None,
    max_replays: MaxReplays = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really replay; without it, only say what would be.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be replayed (wins over --yes).")
    ] = False,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Put matching dead letters back to pending with fresh attempts, in batches.

    Without --yes (or with --dry-run) it prints what it would touch, e.g. "replay 37 failed items in ops",
    writes nothing and exits 0. --ids naming an item that is not a matching dead letter: exit 4, nothing
    written.
    """
    import os

    from clawnsole.deadletters import DeadLetters
    from clawnsole.deadletters.api import ids_from_text

    wanted = None if ids is None else ids_from_text(ids)
    with open_queue(database_url, schema, agent=os.environ.get("CLAWNSOLE_AGENT") or _operator()) as wq:
        report = DeadLetters(wq).replay(
            queue=queue,
            kind=kind,
            exclude_kinds=exclude_kind or (),
            since=since,
            ids=wanted,
            error=error,
            max_replays=max_replays,
            dry_run=dry_run or not yes,
        )
    if as_json:
        print_json(report.to_json())
        return
    typer.echo(report.summary())
    if report.dry_run and report.matched:
        typer.echo("(nothing written: pass --yes to replay)", err=True)


def _operator() -> str:
    """Who replays, for the history: the user at this host (a person at a shell, or a cron job's user)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
