"""`clawnsole bench`: the benchmark, as a command. Everything heavy is imported when it runs."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from clawnsole.cli.common import DatabaseUrl, handle_errors

SCENARIO_HELP = (
    "enqueue, throughput, latency, backlog, cli, api (the HTTP API; needs the web extra), ceiling (default: all)."
)


@handle_errors
def bench_command(
    scenarios: Annotated[
        list[str] | None, typer.Argument(metavar="[SCENARIO]...", help=SCENARIO_HELP, show_default=False)
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="Small sizes: every scenario in seconds (CI).")] = False,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures and the machine to this file.")
    ] = None,
    database_url: DatabaseUrl = None,
    schema: Annotated[
        str, typer.Option("--schema", help="Scratch schema, created and dropped by the run.")
    ] = "clawnsole_bench",
    yes: Annotated[
        bool, typer.Option("--yes", help="Allow a scratch schema that already holds items (they are dropped).")
    ] = False,
    no_pgbench: Annotated[
        bool, typer.Option("--no-pgbench", help="Drive the ceiling with a psycopg loop even if pgbench is installed.")
    ] = False,
) -> None:
    """Benchmark this queue on your PostgreSQL, beside the raw-SQL ceiling measured in the same run.

    Runs in a scratch schema of its own and drops it at the end. Prints a table; each figure also as a
    share of its ceiling (the same statements driven raw, at the same batch size and concurrency).
    Exits 1 when a scenario failed.
    """
    from clawnsole.bench.runner import run
    from clawnsole.cli.common import database_url as resolve_url
    from clawnsole.cli.common import settings

    config = settings(database_url, None)
    scratch_schema = _schema_name(schema)

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # unwinds through the runner, which drops the scratch schema

    signal.signal(signal.SIGTERM, interrupted)

    def log(line: str) -> None:
        typer.echo(line, err=True)

    report = run(
        resolve_url(config),
        scratch_schema,
        scenarios or [],
        quick=quick,
        allow_existing=yes,
        use_pgbench=not no_pgbench,
        log=log,
    )
    typer.echo(report.table())
    if json_file is not None:
        report.write_json(json_file)
        typer.echo(f"wrote {json_file}", err=True)
    if report.errors:
        raise typer.Exit(1)


def _schema_name(name: str) -> str:
    """The scratch schema, checked by the same rule as every schema name (Settings)."""
    from clawnsole.config import Settings

    return Settings(schema_name=name).schema_name
