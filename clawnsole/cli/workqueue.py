"""`clawnsole workqueue …`: enqueue, claim, report progress, finish and inspect items."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

from clawnsole.cli.common import (
    EXIT_CODES_HELP,
    ApiToken,
    ApiUrl,
    AsJson,
    DatabaseUrl,
    Schema,
    api_client,
    handle_errors,
    open_queue,
    print_json,
    print_table,
    resolve,
    text_options,
)

app = typer.Typer(help=f"Enqueue, claim and finish work items. {EXIT_CODES_HELP}", no_args_is_help=True)

ItemId = Annotated[int | None, typer.Option("--id", help="The item id.", show_default=False)]
HeldId = Annotated[
    int | None,
    typer.Option("--id", envvar="CLAWNSOLE_ITEM_ID", help="The item id ($CLAWNSOLE_ITEM_ID).", show_default=False),
]
Agent = Annotated[
    str | None,
    typer.Option(
        "--agent",
        envvar="CLAWNSOLE_AGENT",
        help="The worker's stable id ($CLAWNSOLE_AGENT).",
        show_default=False,
    ),
]
LeaseToken = Annotated[
    str | None,
    typer.Option(
        "--lease",
        envvar="CLAWNSOLE_LEASE",
        help="The lease token from claim-next ($CLAWNSOLE_LEASE).",
        show_default=False,
    ),
]


def _item_id(option: int | None, positional: int | None = None) -> int:
    from clawnsole.errors import InvalidInput

    if option is not None and positional is not None and option != positional:
        raise InvalidInput("id", "given twice with different values")
    value = option if option is not None else positional
    if value is None:
        raise InvalidInput("id", "missing: give --id ID")
    return value


def _fence(agent: str | None, lease: str | None) -> None:
    """A command line write must name the holder or the lease; the library's default agent means nothing here."""
    from clawnsole.errors import InvalidInput

    if agent is None and lease is None:
        raise InvalidInput("agent", "give --agent (the holder) or --lease (the token from claim-next)")


def _warn_if_by_agent(agent: str | None, lease: str | None) -> bool:
    """`--agent` alone cannot tell this claim from an earlier one by a process with the same agent name:
    the convenience is documented and announced on stderr each time; scripts should pass `--lease`."""
    if lease is not None:
        return False
    typer.echo(
        f"clawnsole: warning: fenced by --agent {agent!r} alone: the write applies to that agent's current "
        "claim; pass --lease (the token from claim-next) to fence it to one claim",
        err=True,
    )
    return True


@app.command()
@handle_errors
def enqueue(
    queue: Annotated[str, typer.Option("--queue", help="Queue name.")],
    title: Annotated[str, typer.Option("--title", help="Short human title.")],
    instructions: Annotated[str | None, typer.Option(help="What to do (may be sensitive; never logged).")] = None,
    instructions_file: Annotated[
        str | None, typer.Option("--instructions-file", help="Read instructions from PATH, or - for stdin.")
    ] = None,
    kind: Annotated[str | None, typer.Option(help="Task type, e.g. health-check (selects a handler).")] = None,
    payload: Annotated[str | None, typer.Option(help="JSON object handed to the worker.")] = None,
    payload_file: Annotated[str | None, typer.Option("--payload-file", help="Read the payload from PATH or -.")] = None,
    priority: Annotated[str, typer.Option(help="Integer (higher first) or critical/high/normal/low.")] = "50",
    dedupe_key: Annotated[
        str | None, typer.Option("--dedupe-key", "--dedupeKey", help="Idempotency key per queue.")
    ] = None,
    cooldown: Annotated[
        str | None,
        typer.Option(help="With a dedupe key: a finished item holds it only this long (e.g. 60m)."),
    ] = None,
    run_at: Annotated[str | None, typer.Option("--run-at", help="Not before this ISO 8601 time.")] = None,
    delay: Annotated[str | None, typer.Option(help="Not before now + this duration (90, 15m, 2h).")] = None,
    max_attempts: Annotated[
        int | None, typer.Option("--max-attempts", help="Attempts before dead-letter [default: 3].", show_default=False)
    ] = None,
    retries: Annotated[
        int | None, typer.Option(help="Retries after the first attempt (= --max-attempts N+1).", show_default=False)
    ] = None,
    backoff: Annotated[str, typer.Option(help="Base retry delay; doubles per attempt, capped at 1h.")] = "10s",
    lease: Annotated[str, typer.Option(help="Default lease length for claims of this item.")] = "300",
    after: Annotated[
        list[int] | None,
        typer.Option(
            "--after", help="Run only once item ID is done (repeatable); waits until then.", show_default=False
        ),
    ] = None,
    metadata: Annotated[
        str | None, typer.Option(help="JSON object stored with the item (at most 64 KiB; shown, filterable).")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option(help="JSON object of key fields: the dedupe key is derived from them, whatever their order."),
    ] = None,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
    api_url: ApiUrl = None,
    token: ApiToken = None,
) -> None:
    """Add a work item (idempotent with --dedupe-key or --key). Prints the item as JSON with `created`."""
    from clawnsole import item_options
    from clawnsole.errors import InvalidInput

    if retries is not None and max_attempts is not None:
        raise InvalidInput("retries", "give either --retries or --max-attempts, not both")
    if key is not None and dedupe_key is not None:
        raise InvalidInput("key", "give either --key or --dedupe-key, not both")
    attempts = max_attempts if max_attempts is not None else 3
    if retries is not None:
        attempts = item_options.retries_to_max_attempts(retries)
    instructions, payload = text_options(instructions, instructions_file, payload, payload_file)
    if (api := api_client(api_url, token)) is not None:
        options = {
            "kind": kind, "instructions": instructions, "payload": payload, "priority": priority,
            "dedupe_key": dedupe_key, "key": key, "cooldown": cooldown, "run_at": run_at, "delay": delay,
            "max_attempts": attempts, "backoff": backoff, "lease": lease, "after": after, "metadata": metadata,
        }  # fmt: skip
        with api:
            print_json(api.enqueue(queue, title, **options))
        return
    with open_queue(database_url, schema) as wq:
        outcome = wq.enqueue(
            queue,
            title,
            kind=kind,
            instructions=instructions,
            payload=payload,
            priority=priority,
            dedupe_key=dedupe_key,
            key=key,
            cooldown=cooldown,
            run_at=run_at,
            delay=delay,
            max_attempts=attempts,
            backoff=backoff,
            lease=lease,
            after=after,
            metadata=metadata,
            agent=os.environ.get("CLAWNSOLE_AGENT"),
        )
    if outcome.created and outcome.note is not None:
        typer.echo(f"clawnsole: warning: item {outcome.item.id} was cancelled at once: {outcome.note}", err=True)
    print_json(outcome.item.to_json() | {"created": outcome.created})


@app.command("claim-next")
@handle_errors
def claim_next(
    queue: Annotated[list[str], typer.Option("--queue", help="Queue to claim from (repeatable).")],
    agent: Agent = None,
    lease: Annotated[str, typer.Option(help="Lease length (seconds or 90s/15m/2h).")] = "300",
    limit: Annotated[int, typer.Option(help="Claim up to this many items (prints one JSON object per line).")] = 1,
    wait: Annotated[str | None, typer.Option(help="Block up to this long for an item (LISTEN/NOTIFY).")] = None,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
    api_url: ApiUrl = None,
    token: ApiToken = None,
) -> None:
    """Claim the next due item. Prints it as JSON, or nothing (exit 0) when there is none."""
    from clawnsole import validate
    from clawnsole.queue import default_agent

    holder = agent or default_agent()
    wait_seconds = None if wait is None else validate.duration(wait, "wait", allow_zero=True)
    if (api := api_client(api_url, token)) is not None:
        from clawnsole.cli.over_http import claim_over_http

        with api:
            for claimed in claim_over_http(api, queue, lease=lease, limit=limit, wait=wait_seconds or 0):
                print_json(claimed)
        return
    with open_queue(database_url, schema, agent=holder) as wq:
        if wait_seconds:
            from clawnsole.listen import Listener, claim_waiting

            conninfo, schema_name = resolve(database_url, schema)
            with Listener.for_queues(conninfo, schema_name, queue) as listener:
                items = claim_waiting(wq, listener, queue, lease=lease, limit=limit, timeout=wait_seconds)
        else:
            items = wq.claim_next(queue, lease=lease, limit=limit)
    for item in items:
        print_json(item.to_json())


@app.command()
@handle_errors
def progress(
    item_id: HeldId = None,
    agent: Agent = None,
    lease: LeaseToken = None,
    note: Annotated[str | None, typer.Option(help="What is happening now.")] = None,
    percent: Annotated[int | None, typer.Option(help="0-100.")] = None,
    extend: Annotated[str | None, typer.Option(help="Renew the lease by this long (default: its length).")] = None,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
    api_url: ApiUrl = None,
    token: ApiToken = None,
) -> None:
    """Record progress and renew the lease of a held item."""
    from clawnsole import ops

    if (api := api_client(api_url, token)) is not None:
        from clawnsole.cli.over_http import held_lease

        with api:
            fenced = held_lease(lease)
            print_json(api.progress(_item_id(item_id), fenced, note=note, percent=percent, extend=extend))
        return
    _fence(agent, lease)
    by_agent = _warn_if_by_agent(agent, lease)
    with open_queue(database_url, schema) as wq:
        op = ops.progress(
            _item_id(item_id),
            agent=agent,
            lease_token=lease,
            note=note,
            percent=percent,
            extend=extend,
            by_agent=by_agent,
        )
        item = wq.run_steps(op)
    print_json(item.to_json())


@app.command()
@handle_errors
def done(
    item_id: HeldId = None,
    agent: Agent = None,
    lease: LeaseToken = None,
    result: Annotated[str | None, typer.Option(help="JSON result to store.")] = None,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
    api_url: ApiUrl = None,
    token: ApiToken = None,
) -> None:
    """Finish a held item successfully."""
    from clawnsole import ops, validate

    if (api := api_client(api_url, token)) is not None:
        from clawnsole.cli.over_http import held_lease

        with api:
            fenced = held_lease(lease)
            value = None if result is None else validate.json_value(result, "result")
            print_json(api.done(_item_id(item_id), fenced, result=value))
        return
    _fence(agent, lease)
    value = None if result is None else validate.json_value(result, "result")
    by_agent = _warn_if_by_agent(agent, lease)
    with open_queue(database_url, schema) as wq:
        item = wq.run_steps(
            ops.done(_item_id(item_id), agent=agent, lease_token=lease, result=value, by_agent=by_agent)
        )
    print_json(item.to_json())


@app.command()
@handle_errors
def fail(
    error: Annotated[str, typer.Option("--error", help="What went wrong.")],
    item_id: HeldId = None,
    agent: Agent = None,
    lease: LeaseToken = None,
    no_retry: Annotated[bool, typer.Option("--no-retry", help="Fail for good (dead-letter) now.")] = False,
    backoff: Annotated[str | None, typer.Option(help="Base retry delay for this failure.")] = None,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
    api_url: ApiUrl = None,
    token: ApiToken = None,
) -> None:
    """Record a failed attempt: retried after a backoff while attempts remain, else failed."""
    from clawnsole import ops

    if (api := api_client(api_url, token)) is not None:
        from clawnsole.cli.over_http import held_lease

        with api:
            fenced = held_lease(lease)
            print_json(api.fail(_item_id(item_id), fenced, error=error, retry=not no_retry, backoff=backoff))
        return
    _fence(agent, lease)
    by_agent = _warn_if_by_agent(agent, lease)
    with open_queue(database_url, schema) as wq:
        op = ops.fail(
            _item_id(item_id),
            agent=agent,
            error=error,
            lease_token=lease,
            retry=not no_retry,
            backoff=backoff,
            by_agent=by_agent,
        )
        item = wq.run_steps(op)
    print_json(item.to_json())


@app.command()
@handle_errors
def show(
    positional_id: Annotated[int | None, typer.Argument(metavar="[ID]", show_default=False)] = None,
    item_id: ItemId = None,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
    api_url: ApiUrl = None,
    token: ApiToken = None,
) -> None:
    """Show one item with its prerequisites and dependents (each with its status) and its history."""
    from clawnsole.dependencies.api import Dependencies

    if (api := api_client(api_url, token)) is not None:
        with api:
            print_json(api.show(_item_id(item_id, positional_id)))
        return
    with open_queue(database_url, schema) as wq:
        wanted = _item_id(item_id, positional_id)
        item = wq.get(wanted)
        links = Dependencies(wq).of(wanted)
        events = wq.history(wanted)
    print_json(item.to_json() | links.to_json() | {"history": [e.to_json() for e in events]})


@app.command("list")
@handle_errors
def list_(
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    status: Annotated[str | None, typer.Option(help="waiting, pending, claimed, done, failed or cancelled.")] = None,
    limit: Annotated[int, typer.Option(help="At most this many (newest first).")] = 100,
    metadata: Annotated[
        list[str] | None,
        typer.Option(
            "--metadata",
            help="Only items whose metadata has KEY=VALUE (a string; KEY:=JSON for any JSON value). Repeatable.",
            show_default=False,
        ),
    ] = None,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
    api_url: ApiUrl = None,
    token: ApiToken = None,
) -> None:
    """List items, newest first."""
    from clawnsole.cli.filters import metadata_filter

    wanted = metadata_filter(metadata or [])
    if (api := api_client(api_url, token)) is not None:
        from clawnsole.errors import InvalidInput

        if wanted:
            raise InvalidInput("metadata", "filtering by metadata is not offered by the API: list without it")
        with api:
            rows: list[dict[str, Any]] = api.list(queue=queue, status=status, limit=limit)
    else:
        with open_queue(database_url, schema) as wq:
            rows = [i.to_json(with_instructions=False) for i in wq.list(queue, status, limit, metadata=wanted)]
    if as_json:
        print_json(rows)
        return
    print_table(rows, ["id", "queue", "status", "priority", "attempts", "kind", "title", "claimed_by", "run_at"])


@app.command()
@handle_errors
def status(
    queue: Annotated[str | None, typer.Option(help="Only this queue.")] = None,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
    api_url: ApiUrl = None,
    token: ApiToken = None,
) -> None:
    """Counts per queue and status (and by kind and priority), the oldest pending age, expired leases, and
    the dedupe keys finished items still hold in their cooldown."""
    if (api := api_client(api_url, token)) is not None:
        with api:
            counts: list[dict[str, Any]] = api.status(queue)
    else:
        with open_queue(database_url, schema) as wq:
            counts = [c.to_json() for c in wq.status(queue)]
    if as_json:
        print_json(counts)
        return

    def spread(counted: dict[str, int]) -> str:
        return " ".join(f"{name}={n}" for name, n in counted.items())

    rows = [
        c
        | {
            "in_cooldown": c["dedupe_in_cooldown"],
            "kinds": spread(c["by_kind"]),
            "priorities": spread(c["by_priority"]),
        }
        for c in counts
    ]
    columns = ["queue", "status", "items", "oldest_pending_seconds", "expired_leases", "in_cooldown"]
    print_table(rows, [*columns, "kinds", "priorities"])


@app.command()
@handle_errors
def cancel(
    positional_id: Annotated[int | None, typer.Argument(metavar="[ID]", show_default=False)] = None,
    item_id: ItemId = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept in the history).")] = None,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
    api_url: ApiUrl = None,
    token: ApiToken = None,
) -> None:
    """Cancel a pending or waiting item (what waits for it is cancelled too)."""
    if (api := api_client(api_url, token)) is not None:
        with api:
            print_json(api.cancel(_item_id(item_id, positional_id), reason=reason))
        return
    with open_queue(database_url, schema) as wq:
        item = wq.cancel(_item_id(item_id, positional_id), reason=reason)
    print_json(item.to_json())


@app.command()
@handle_errors
def retry(
    positional_id: Annotated[int | None, typer.Argument(metavar="[ID]", show_default=False)] = None,
    item_id: ItemId = None,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
    api_url: ApiUrl = None,
    token: ApiToken = None,
) -> None:
    """Requeue a failed or cancelled item with fresh attempts."""
    if (api := api_client(api_url, token)) is not None:
        with api:
            print_json(api.retry(_item_id(item_id, positional_id)))
        return
    with open_queue(database_url, schema) as wq:
        item = wq.retry(_item_id(item_id, positional_id))
    print_json(item.to_json())


# The worker commands live in their own module; they import the runtime only when run.
from clawnsole.cli import worker as _worker  # noqa: E402

_worker.register(app)

# Retention and the event history (cleanup, stats, tail): their own module, the library loaded when run.
from clawnsole.cli import history as _history  # noqa: E402

_history.register(app)
