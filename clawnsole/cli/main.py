"""The `clawnsole` entry point: wires the sub-commands together."""

from __future__ import annotations

import atexit
import copy
import gc
import sys
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import TYPE_CHECKING, Annotated

import typer
from typer.main import get_command_name

from clawnsole.cli.bench import bench_command
from clawnsole.cli.common import EXIT_CODES_HELP, DatabaseUrl, Schema, handle_errors, print_table
from clawnsole.cli.incidents import doctor_command, explain_claim_command, workers_command
from clawnsole.cli.mcp import mcp_command
from clawnsole.cli.tokens import audit_command, serve_command

if TYPE_CHECKING:
    from typer.models import CommandInfo

# The command groups, in the order `clawnsole --help` lists them (after the top-level commands): name ->
# (module, attribute). typer builds every command it is given (signature, evaluated type hints, parameters)
# before it parses a single argument: building all 32 cost ~20 ms of a ~300 ms call. So a call imports
# only the group its command line names and builds only the command named in it; `clawnsole workqueue
# enqueue` from cron builds one command. Anything else (--help, no arguments, a misspelt name) gets the
# whole tree, so help and "No such command" read exactly as they always did.
GROUPS: dict[str, tuple[str, str]] = {
    "workqueue": ("clawnsole.cli.workqueue", "app"),
    "db": ("clawnsole.cli.db", "app"),
    "schedule": ("clawnsole.cli.schedule", "schedule_app"),
    "scheduler": ("clawnsole.cli.schedule", "scheduler_app"),
    "handlers": ("clawnsole.cli.worker", "handlers_app"),
    "queue": ("clawnsole.cli.queue", "app"),
    "dlq": ("clawnsole.cli.dlq", "app"),
    "leases": ("clawnsole.cli.incidents", "leases_app"),
    "alert": ("clawnsole.cli.alert", "app"),
    "token": ("clawnsole.cli.tokens", "token_app"),
}


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


# The top-level commands, in the order `clawnsole --help` lists them.
COMMANDS: dict[str, Callable[..., None]] = {
    "bench": bench_command,
    "migrate": migrate,
    "workers": workers_command,
    "doctor": doctor_command,
    "explain-claim": explain_claim_command,
    "mcp": mcp_command,
    "audit": audit_command,
    "serve": serve_command,
}


def build_app(argv: Sequence[str] | None = None) -> typer.Typer:
    """The command tree for a command line (`argv` without the program name): the group and command it
    names, when it names them exactly, else every group and command. `None` builds the whole tree."""
    app = typer.Typer(
        help=f"Clawnsole: a PostgreSQL-native, lease-based work queue. {EXIT_CODES_HELP}",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    words = list(argv or ())
    named = words[0] if words else None
    if named in GROUPS:
        module, attribute = GROUPS[named]
        group = getattr(import_module(module), attribute)
        app.add_typer(_only(group, words[1]) if len(words) > 1 else group, name=named)
        return app
    if named not in COMMANDS:
        for name, (module, attribute) in GROUPS.items():
            app.add_typer(getattr(import_module(module), attribute), name=name)
    # Both top-level commands, even when one is named: typer turns an app of a single command into that
    # command, which would take its name off the command line.
    for name, command in COMMANDS.items():
        app.command(name)(command)
    return app


def _only(group: typer.Typer, name: str) -> typer.Typer:
    """The group holding just its command (or sub-group) `name`; the group itself when it has none of that
    name, so that click reports the unknown name with the full list to suggest from."""
    commands = [c for c in group.registered_commands if _command_name(c) == name]
    groups = [g for g in group.registered_groups if g.name == name]
    if not commands and not groups:
        return group
    pruned = copy.copy(group)  # a shallow copy: the module's group keeps all its commands
    pruned.registered_commands = commands
    pruned.registered_groups = groups
    return pruned


def _command_name(command: CommandInfo) -> str | None:
    # The name typer gives the command (typer.main.get_command_from_info): its own, else its function's.
    if command.name:
        return command.name
    return None if command.callback is None else get_command_name(command.callback.__name__)


def __getattr__(name: str) -> typer.Typer:
    # `app` (the whole tree) for callers that drive the command line in-process, e.g. typer's CliRunner.
    if name == "app":
        return build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    """Console-script entry point."""
    # The process ends with the command, and the cyclic collector's passes at interpreter shutdown over
    # everything still alive (pydantic's schemas, typer's tree, the driver) freed nothing the kernel would
    # not, for ~30 ms of a ~300 ms call. Freezing puts those objects out of its reach. Registered first, this
    # runs after every other atexit handler; weakref finalizers and the flushing of stdout and stderr still
    # happen, unlike with os._exit (spack/spack#53020 does the same). What is skipped are the finalizers of
    # objects still in reference cycles at exit, which Python does not promise to run anyway.
    atexit.register(gc.freeze)
    args = spelled(sys.argv[1:])
    build_app(args)(args=args)


# The worker app's notes spell some commands with a colon (`alert:status`, `alert:history --limit 50`,
# `alert:test`): the same commands, `alert status` and so on.
COLON_SPELLINGS = {"alert:status", "alert:history", "alert:test"}


def spelled(argv: list[str]) -> list[str]:
    """The command line with a colon spelling taken apart into its group and command."""
    if argv and argv[0] in COLON_SPELLINGS:
        return [*argv[0].split(":"), *argv[1:]]
    return argv
