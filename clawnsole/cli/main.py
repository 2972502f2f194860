"""The `clawnsole` entry point: wires the sub-commands together."""

from __future__ import annotations

from typing import Annotated

import typer

from clawnsole.cli.bench import bench_command
from clawnsole.cli.common import EXIT_CODES_HELP, DatabaseUrl, Schema, handle_errors, print_table
from clawnsole.cli.db import app as db_app
from clawnsole.cli.schedule import schedule_app, scheduler_app
from clawnsole.cli.worker import handlers_app
from clawnsole.cli.workqueue import app as workqueue_app

app = typer.Typer(
    help=f"Clawnsole: a PostgreSQL-native, lease-based work queue. {EXIT_CODES_HELP}",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(workqueue_app, name="workqueue")
app.add_typer(db_app, name="db")
app.add_typer(schedule_app, name="schedule")
app.add_typer(scheduler_app, name="scheduler")
app.add_typer(handlers_app, name="handlers")
app.command("bench")(bench_command)


@app.command()
@handle_errors
def migrate(
    show_status: Annotated[bool, typer.Option("--status", help="Show applied and pending migrations only.")] = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Create or upgrade the Clawnsole schema (safe to run twice, or from two processes at once)."""
    from clawnsole.cli.common import database_url as resolve_url
    from clawnsole.cli.common import settings
    from clawnsole.db import migrate as migrations

    config = settings(database_url, schema)
    url = resolve_url(config)
    if show_status:
        rows = [
            {
                "version": m.version,
                "name": m.name,
                "state": "applied" if m.applied_at else "pending",
                "applied_at": m.applied_at,
            }
            for m in migrations.status(url, config.schema_name)
        ]
        print_table(rows, ["version", "name", "state", "applied_at"])
        return
    applied = migrations.migrate(url, config.schema_name)
    if applied:
        typer.echo(f"applied {', '.join(applied)} to schema {config.schema_name!r}")
    else:
        typer.echo(f"schema {config.schema_name!r} is up to date ({migrations.latest_version()})")


def main() -> None:
    """Console-script entry point."""
    app()
