"""`clawnsole queue …`: pause, resume, drain and limit queues, and list them with their counts."""

from __future__ import annotations

import os
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
    from clawnsole.queues.api import Queues
    from clawnsole.queues.models import QueueControl

app = typer.Typer(
    help=f"Pause, resume, drain and limit queues; every worker honours them at its next claim. {EXIT_CODES_HELP}",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(metavar="QUEUE", help="The queue's name.", show_default=False)]
By = Annotated[
    str | None,
    typer.Option(
        "--by",
        help="Who is making the change, kept with it (default: $CLAWNSOLE_AGENT, else user@host).",
        show_default=False,
    ),
]

_CONTROL_COLUMNS = ["name", "state", "state_since", "state_by", "concurrency_limit", "rate", "limits_by"]


def _by(given: str | None) -> str:
    """Who a change is recorded as: the option, else $CLAWNSOLE_AGENT, else the login and host."""
    if given is not None:
        return given
    if agent := os.environ.get("CLAWNSOLE_AGENT"):
        return agent
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # no login name in a bare container: the uid says who
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def _change(
    action: str, name: str, by: str | None, as_json: bool, database_url: str | None, schema: str | None, **extra: Any
) -> None:
    """Run one change of the Queues API and print the queue's controls."""
    from clawnsole.queues.api import Queues

    with open_queue(database_url, schema) as wq:
        queues: Queues = Queues(wq)
        control: QueueControl = getattr(queues, action)(name, by=_by(by), **extra)
    _print_control(control, as_json)


def _print_control(control: QueueControl, as_json: bool) -> None:
    if as_json:
        print_json(control.to_json())
        return
    print_table([control.to_json()], _CONTROL_COLUMNS)


@app.command()
@handle_errors
def pause(
    name: Name, by: By = None, as_json: AsJson = False, database_url: DatabaseUrl = None, schema: Schema = None
) -> None:
    """Stop claims from QUEUE until it is resumed: workers stay up, enqueues are still accepted."""
    _change("pause", name, by, as_json, database_url, schema)


@app.command()
@handle_errors
def resume(
    name: Name, by: By = None, as_json: AsJson = False, database_url: DatabaseUrl = None, schema: Schema = None
) -> None:
    """Make a paused or draining QUEUE active again; its idle workers are woken at once."""
    _change("resume", name, by, as_json, database_url, schema)


@app.command()
@handle_errors
def drain(
    name: Name, by: By = None, as_json: AsJson = False, database_url: DatabaseUrl = None, schema: Schema = None
) -> None:
    """Refuse enqueues into QUEUE (exit 3) while claims go on until it is empty; `resume` undoes it."""
    _change("drain", name, by, as_json, database_url, schema)


@app.command()
@handle_errors
def limit(
    name: Name,
    concurrency: Annotated[
        int | None,
        typer.Option(
            help="At most N items of QUEUE claimed at once, across every worker; 0 clears it.", show_default=False
        ),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(
            help="At most N claims per window: 10/s, 600/m, 1000/h (or 100/10s); none clears it.", show_default=False
        ),
    ] = None,
    by: By = None,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Set or clear QUEUE's concurrency limit and/or claim rate; a limit left out stays as it is.

    A limit below what is claimed now applies to new claims: nothing already claimed is taken back.
    """
    _change("limit", name, by, as_json, database_url, schema, concurrency=concurrency, rate=rate)


@app.command("list")
@handle_errors
def list_(
    queue: Annotated[str | None, typer.Option("--queue", help="Only this queue.", show_default=False)] = None,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Every queue with items or controls: state, limits, pending / claimed / failed counts, the oldest due
    pending item's age (seconds), and items done in the last 5 minutes."""
    from clawnsole.queues.api import Queues

    with open_queue(database_url, schema) as wq:
        summaries = Queues(wq).list(queue)
    if as_json:
        print_json([s.to_json() for s in summaries])
        return
    print_table(
        [s.to_json() for s in summaries],
        [
            "name", "state", "concurrency_limit", "rate", "rate_used", "pending", "waiting", "claimed", "failed",
            "oldest_pending_seconds", "done_last_5m", "state_by",
        ],
    )  # fmt: skip
