"""`clawnsole db …`: the embedded PostgreSQL server used when no database URL is configured."""

from __future__ import annotations

import json

import typer

from clawnsole.cli.common import handle_errors

# `clawnsole.embedded` (subprocess, pwd, fcntl, …) is imported inside each command: every other command
# loads this module too, and should not pay for it.

app = typer.Typer(
    help="Manage the embedded PostgreSQL server (data in CLAWNSOLE_DATA_DIR, socket only, no TCP port).",
    no_args_is_help=True,
)


@app.command()
@handle_errors
def start() -> None:
    """Start the server, creating and migrating the cluster on first use."""
    from clawnsole.embedded import EmbeddedPostgres, default_database_url

    # The same path as first use by any command, so a cluster created here is migrated too.
    default_database_url(announce=False)
    status = EmbeddedPostgres().status()
    typer.echo(f"running (pid {status.pid}) in {status.data_dir}")


@app.command()
@handle_errors
def stop() -> None:
    """Stop the server; data is kept."""
    from clawnsole.embedded import EmbeddedPostgres

    EmbeddedPostgres().stop()
    typer.echo("stopped")


@app.command()
@handle_errors
def status(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Show where the data lives, which PostgreSQL runs it, and whether it is running."""
    from clawnsole.embedded import EmbeddedPostgres

    current = EmbeddedPostgres().status()
    if as_json:
        fields = {**vars(current), "data_dir": str(current.data_dir), "bindir": str(current.bindir)}
        typer.echo(json.dumps(fields))
        return
    state = f"running (pid {current.pid})" if current.running else "stopped"
    typer.echo(f"state:      {state}")
    typer.echo(f"data dir:   {current.data_dir}")
    typer.echo(f"postgresql: {current.version} ({current.bindir})")
    typer.echo(f"url:        {current.url}")


@app.command()
@handle_errors
def url() -> None:
    """Print the connection URL (starting the server if needed), e.g. psql "$(clawnsole db url)"."""
    from clawnsole.embedded import default_database_url

    typer.echo(default_database_url(announce=False))


@app.command()
@handle_errors
def destroy(yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Stop the server and delete its data directory: every queue and item in it is lost."""
    from clawnsole.embedded import EmbeddedPostgres

    server = EmbeddedPostgres()
    if not yes:
        typer.confirm(f"Delete {server.data_dir} and everything in it?", abort=True)
    server.destroy()
    typer.echo(f"deleted {server.data_dir}")
