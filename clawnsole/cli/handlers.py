"""`clawnsole handlers run|new`: run one job now in the foreground, or write a handler module to start
from. Thin: parse, call `clawnsole.worker.foreground` / `clawnsole.worker.skeleton`, print. Registered on
the `handlers` group of `clawnsole.cli.worker`, beside `handlers list`."""

from __future__ import annotations

from typing import Annotated

import typer

from clawnsole.cli.common import AsJson, DatabaseUrl, Schema, handle_errors, print_json

# Exit code of `handlers run` when the handler failed (the item is then recorded as failed).
HANDLER_FAILED = 1


def register(app: typer.Typer) -> None:
    """Add `run` and `new` to the `handlers` command group."""
    app.command("run")(run)
    app.command("new")(new)


@handle_errors
def run(
    kind: Annotated[str, typer.Argument(metavar="KIND", help="The kind of job to run (a handler of the module).")],
    handlers: Annotated[
        str,
        typer.Option(
            "--handlers",
            envvar="CLAWNSOLE_WORKER_HANDLERS",
            help='Module of @handler("kind") functions (from the working directory or PYTHONPATH).',
        ),
    ],
    payload: Annotated[str | None, typer.Option("--payload", help="The job's input: a JSON object.")] = None,
    queue: Annotated[str, typer.Option("--queue", help="Queue the item is recorded in.")] = "manual",
    title: Annotated[str | None, typer.Option("--title", help="Title of the item (default: the kind).")] = None,
    lease: Annotated[str, typer.Option("--lease", help="Lease length; renewed every third while it runs.")] = "300",
    agent: Annotated[
        str | None,
        typer.Option("--agent", envvar="CLAWNSOLE_AGENT", help="Who runs it (default: host:pid).", show_default=False),
    ] = None,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Run one job now in the foreground, recorded as an item like any other; prints its result.

    Exit 0 when the handler succeeded (the item is done), 1 when it failed (the item is failed, with the
    error: `clawnsole dlq replay --ids ID --yes` runs it again), 130 on Ctrl-C (the item goes back to
    pending, the attempt not charged).
    """
    from clawnsole import validate
    from clawnsole.cli.common import resolve
    from clawnsole.errors import InvalidInput
    from clawnsole.queue import WorkQueue, default_agent
    from clawnsole.worker import Registry
    from clawnsole.worker.foreground import run_now

    # Everything is checked before connecting: a typo writes nothing and starts no embedded server.
    validate.kind(kind)
    validate.queue_name(queue)
    if title is not None:
        validate.title(title)
    job_input = validate.payload(payload if payload is not None else {})
    registry = Registry.from_module(handlers)
    kinds = [e.kind for e in registry.entries()]
    if kind not in kinds and "*" not in kinds:
        raise InvalidInput("kind", f"{handlers} has no handler for {kind!r} (it handles: {', '.join(kinds)})")
    conninfo, schema_name = resolve(database_url, schema)

    def said(note: str | None, percent: int | None) -> None:
        shown = " ".join(p for p in (None if percent is None else f"{percent}%", note) if p)
        typer.echo(f"progress: {shown}", err=True)

    with WorkQueue(conninfo, schema=schema_name, agent=agent or default_agent(), max_connections=3) as wq:
        outcome = run_now(
            wq, registry, kind=kind, payload=job_input, queue=queue, title=title, lease=lease, on_progress=said
        )
    if as_json:
        print_json(outcome.to_json())
    elif outcome.ok:
        typer.echo(f"item {outcome.item.id} ({outcome.item.queue}) done in {outcome.seconds:.2f}s", err=True)
        print_json(outcome.result)
    if not outcome.ok:
        if not as_json:
            typer.echo(f"clawnsole: item {outcome.item.id} ({outcome.item.queue}) failed: {outcome.error}", err=True)
        raise typer.Exit(HANDLER_FAILED)


@handle_errors
def new(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The kind the handler serves, e.g. daily.questmaster.")],
    directory: Annotated[str, typer.Option("--dir", help="Where to write the two files.")] = ".",
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that exist.")] = False,
    as_json: AsJson = False,
) -> None:
    """Write a handler module for kind NAME and a pytest test of it (NAME.py and test_NAME.py, with '.' and
    '-' as '_'). Refuses to overwrite (exit 3) unless --force; a bad NAME is exit 2."""
    from clawnsole.worker.skeleton import write

    paths = write(name, directory, force=force)
    if as_json:
        print_json({"kind": name, "files": [str(p) for p in paths]})
        return
    for path in paths:
        typer.echo(f"wrote {path}")
    module = paths[0].stem
    typer.echo(f"try it: cd {directory} && pytest {paths[1].name}", err=True)
    typer.echo(f"run it: clawnsole handlers run {name} --handlers {module}", err=True)
