"""`clawnsole schedule …` (define recurring enqueues) and `clawnsole scheduler …` (fire them)."""

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
    read_text_arg,
    resolve,
    text_options,
)

if TYPE_CHECKING:
    from clawnsole.schedules.models import Schedule

_NAMES_HELP = "An unknown NAME exits 4 (not found); a NAME taken on add exits 2."
schedule_app = typer.Typer(
    help=f"Define recurring enqueues: cron in a time zone, or every N. {_NAMES_HELP} {EXIT_CODES_HELP}",
    no_args_is_help=True,
)
scheduler_app = typer.Typer(
    help=f"Fire due schedules: as a daemon (run) or once (tick, for cron). {EXIT_CODES_HELP}",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(help="The schedule's name.", show_default=False)]
_MAX_FILE = 4 * 1024 * 1024

Instructions = Annotated[str | None, typer.Option(help="What the item asks for (may be sensitive; never logged).")]
InstructionsFile = Annotated[
    str | None, typer.Option("--instructions-file", help="Read instructions from PATH, or - for stdin.")
]
Kind = Annotated[str | None, typer.Option(help="Task type of the items (selects a handler).")]
Payload = Annotated[str | None, typer.Option(help="JSON object handed to the worker with each item.")]
PayloadFile = Annotated[str | None, typer.Option("--payload-file", help="Read the payload from PATH or -.")]
MaxAttempts = Annotated[int | None, typer.Option("--max-attempts", help="Attempts per item before dead-letter.")]
Cron = Annotated[str | None, typer.Option(help="Five-field cron expression, e.g. '0 9 * * 1-5' (read in --timezone).")]
Timezone = Annotated[str | None, typer.Option(help="IANA time zone of --cron, e.g. Europe/Berlin (default UTC).")]
Every = Annotated[
    str | None, typer.Option(help="Interval instead of cron: 90s, 15m, 2h, 1d (first run one interval from now).")
]
CatchUp = Annotated[
    str | None,
    typer.Option("--catch-up", help="After missed windows: latest (one item, default), all (up to 100), none."),
]
Overlap = Annotated[
    str | None, typer.Option(help="allow (default), or skip a window while the previous item is still open.")
]
Description = Annotated[str | None, typer.Option(help="A note for people.")]


def _agent() -> str | None:
    return os.environ.get("CLAWNSOLE_AGENT")


def _row(schedule: Schedule) -> dict[str, Any]:
    """One line of `schedule list`: the next run in the schedule's own zone and in UTC."""
    from clawnsole.schedules import fire_times

    zone = schedule.timing.zone
    active = schedule.status == "active"
    return {
        "name": schedule.name,
        "status": schedule.status,
        "queue": schedule.queue,
        "when": schedule.cron or f"every {fire_times.format_interval(schedule.interval_seconds or 0)}",
        "timezone": schedule.timezone,
        "description": schedule.describe(),
        "next_run": schedule.next_run_at.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z") if active else "-",
        "next_run_utc": fire_times.utc_iso(schedule.next_run_at) if active else "-",
        "runs": schedule.run_count,
        "errors": schedule.error_count,
    }


@schedule_app.command()
@handle_errors
def add(
    name: Name,
    queue: Annotated[
        str | None, typer.Option("--queue", help="Queue the items go to (required but with --system).")
    ] = None,
    title: Annotated[
        str | None, typer.Option("--title", help="Title of each item (required but with --system).")
    ] = None,
    instructions: Instructions = None,
    instructions_file: InstructionsFile = None,
    kind: Kind = None,
    payload: Payload = None,
    payload_file: PayloadFile = None,
    priority: Annotated[str, typer.Option(help="Integer (higher first) or critical/high/normal/low.")] = "50",
    max_attempts: MaxAttempts = None,
    cron: Cron = None,
    timezone: Timezone = None,
    every: Every = None,
    catch_up: CatchUp = None,
    overlap: Overlap = None,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused (resume to start).")] = False,
    description: Description = None,
    system: Annotated[
        str | None,
        typer.Option(
            "--system",
            help="A job Clawnsole runs itself, run by the scheduler: cleanup (with --older-than), or replay (dead"
            ' letters; its filters in --payload, e.g. {"since": "24h", "exclude_kinds": ["x"], "max_replays": 3}).',
        ),
    ] = None,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="--system cleanup: delete items finished longer ago (30d).")
    ] = None,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Create a schedule (give --cron EXPR [--timezone TZ] or --every DURATION). Prints it as JSON.

    `--system cleanup --older-than 30d` makes a recurring cleanup: its items go to the reserved `clawnsole`
    queue and the scheduler (`scheduler run`/`tick`, `worker-loop --with-scheduler`) runs them itself.
    """
    from clawnsole.schedules.api import Schedules

    instructions, payload = text_options(instructions, instructions_file, payload, payload_file)
    options: dict[str, Any] = {
        "queue": queue, "title": title, "cron": cron, "every": every, "timezone": timezone,
        "instructions": instructions, "kind": kind, "payload": payload, "priority": priority,
        "paused": paused, "description": description, "system": system, "older_than": older_than,
    }  # fmt: skip
    for key, value in (("max_attempts", max_attempts), ("catch_up", catch_up), ("overlap", overlap)):
        if value is not None:
            options[key] = value
    with open_queue(database_url, schema, agent=_agent()) as wq:
        schedule = Schedules(wq).add(name, **options)
    print_json(schedule.to_json())


@schedule_app.command()
@handle_errors
def update(
    name: Name,
    queue: Annotated[str | None, typer.Option(help="Queue the items go to.")] = None,
    title: Annotated[str | None, typer.Option(help="Title of each item.")] = None,
    instructions: Instructions = None,
    instructions_file: InstructionsFile = None,
    kind: Kind = None,
    payload: Payload = None,
    payload_file: PayloadFile = None,
    priority: Annotated[str | None, typer.Option(help="Integer or critical/high/normal/low.")] = None,
    max_attempts: MaxAttempts = None,
    cron: Cron = None,
    timezone: Timezone = None,
    every: Every = None,
    catch_up: CatchUp = None,
    overlap: Overlap = None,
    paused: Annotated[bool | None, typer.Option("--paused/--active", help="Pause or resume it.")] = None,
    description: Description = None,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Change a schedule; options left out stay. '' clears instructions, kind or description.

    A new --cron, --every or --timezone re-times it from now; --active resumes it from its next window.
    """
    from clawnsole import validate
    from clawnsole.schedules.api import Schedules

    instructions, payload = text_options(instructions, instructions_file, payload, payload_file)
    with open_queue(database_url, schema, agent=_agent()) as wq:
        schedule = Schedules(wq).update(
            name, queue=queue, title=title, instructions=instructions, kind=kind,
            payload=None if payload is None else validate.payload(payload),
            priority=None if priority is None else validate.priority(priority),
            max_attempts=max_attempts, cron=cron, timezone=timezone, every=every, catch_up=catch_up,
            overlap=overlap, paused=paused, description=description,
        )  # fmt: skip
    print_json(schedule.to_json())


@schedule_app.command("list")
@handle_errors
def list_(
    status: Annotated[str | None, typer.Option(help="Only active or paused schedules.")] = None,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """List schedules: next run in the schedule's zone and in UTC, and what the timing means."""
    from clawnsole.schedules.api import Schedules

    with open_queue(database_url, schema) as wq:
        schedules = Schedules(wq).list(status)
    if as_json:
        print_json([s.to_json(with_instructions=False) for s in schedules])
        return
    print_table(
        [_row(s) for s in schedules],
        ["name", "status", "queue", "when", "timezone", "description", "next_run", "next_run_utc", "runs", "errors"],
    )


@schedule_app.command()
@handle_errors
def show(
    name: Name,
    runs: Annotated[int, typer.Option(help="How many recent runs (and the items they created) to show.")] = 20,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Show a schedule as JSON: its next runs, and its recent runs with the items they created."""
    from clawnsole.schedules import fire_times
    from clawnsole.schedules.api import Schedules

    with open_queue(database_url, schema) as wq:
        schedules = Schedules(wq)
        schedule = schedules.get(name)
        recent = schedules.runs(name, runs)
    upcoming = []
    if schedule.status == "active":
        first = schedule.next_run_at
        later = fire_times.upcoming(schedule.timing, first, 4, anchor=first)
        zone = schedule.timing.zone
        upcoming = [{"utc": fire_times.utc_iso(t), "local": t.astimezone(zone).isoformat()} for t in [first, *later]]
    print_json(schedule.to_json() | {"upcoming": upcoming, "recent_runs": [r.to_json() for r in recent]})


def _print_changed(name: str, database_url: str | None, schema: str | None, action: str) -> None:
    """Run one by-name change of the Schedules API (pause, resume, remove) and print the schedule."""
    from clawnsole.schedules.api import Schedules

    with open_queue(database_url, schema) as wq:
        schedule = getattr(Schedules(wq), action)(name)
    print_json(schedule.to_json())


@schedule_app.command()
@handle_errors
def pause(name: Name, database_url: DatabaseUrl = None, schema: Schema = None) -> None:
    """Stop firing a schedule until it is resumed."""
    _print_changed(name, database_url, schema, "pause")


@schedule_app.command()
@handle_errors
def resume(name: Name, database_url: DatabaseUrl = None, schema: Schema = None) -> None:
    """Fire a paused schedule again from its next window (windows missed while paused are not caught up)."""
    _print_changed(name, database_url, schema, "resume")


@schedule_app.command()
@handle_errors
def remove(name: Name, database_url: DatabaseUrl = None, schema: Schema = None) -> None:
    """Delete a schedule and its run log (items it already enqueued stay)."""
    _print_changed(name, database_url, schema, "remove")


@schedule_app.command("run-now")
@handle_errors
def run_now(name: Name, database_url: DatabaseUrl = None, schema: Schema = None) -> None:
    """Enqueue the schedule's item now (paused or not), under a key of its own: schedule:NAME:run-now:TIME."""
    from clawnsole.schedules.api import Schedules

    with open_queue(database_url, schema, agent=_agent()) as wq:
        outcome = Schedules(wq).run_now(name)
    print_json(outcome.item.to_json() | {"created": outcome.created})


@schedule_app.command("import")
@handle_errors
def import_(
    file: Annotated[str, typer.Argument(metavar="FILE.yaml", help="Schedules YAML file, or - for stdin.")],
    prune: Annotated[bool, typer.Option("--prune", help="Remove schedules the file does not name.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would change; write nothing.")] = False,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Create or update schedules by name from YAML, all or nothing (running it twice changes nothing)."""
    from clawnsole.schedules.api import Schedules
    from clawnsole.schedules.file import parse

    definitions = parse(read_text_arg(file, "file", _MAX_FILE), "<stdin>" if file == "-" else file)
    with open_queue(database_url, schema) as wq:
        report = Schedules(wq).apply(definitions, prune=prune, dry_run=dry_run)
    if as_json:
        print_json(report.to_json())
        return
    verb = "would " if dry_run else ""
    for name in report.created:
        typer.echo(f"{verb}create {name}")
    for name, fields in report.updated.items():
        typer.echo(f"{verb}update {name} ({', '.join(fields)})")
    for name in report.removed:
        typer.echo(f"{verb}remove {name}")
    typer.echo(
        f"{len(report.created)} created, {len(report.updated)} updated, {len(report.unchanged)} unchanged, "
        f"{len(report.removed)} removed" + (" (dry run: nothing written)" if dry_run else "")
    )


@schedule_app.command()
@handle_errors
def export(
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to PATH instead of stdout.")] = None,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Print every schedule as YAML that `schedule import` reads back unchanged."""
    from clawnsole.errors import InvalidInput
    from clawnsole.schedules.api import Schedules
    from clawnsole.schedules.file import dump

    with open_queue(database_url, schema) as wq:
        text = dump(Schedules(wq).export())
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as error:
        raise InvalidInput("output", f"cannot write {output!r}: {error.strerror}") from None


@scheduler_app.command()
@handle_errors
def run(
    max_sleep: Annotated[
        float, typer.Option("--max-sleep", help="Look at least this often (seconds), NOTIFY or not.")
    ] = 60.0,
    with_alerts: Annotated[
        bool, typer.Option("--with-alerts", help="Also evaluate alert rules and deliver notices in this process.")
    ] = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Fire due schedules until SIGTERM/SIGINT: sleeps until the next is due, woken early by schedule changes.

    Run as many as you like, on as many machines: each window's item is enqueued exactly once.
    """
    import logging
    import signal
    import threading

    from clawnsole.schedules.runtime import run_scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    channels = None
    if with_alerts:
        from clawnsole.alerts.channels import Channels

        channels = Channels.from_environment()  # checked before connecting: a bad variable exits 2 at once
    conninfo, schema_name = resolve(database_url, schema)
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logging.getLogger("clawnsole.scheduler").info("scheduler: %s received, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if channels is None:
        run_scheduler(conninfo, schema_name, stop, max_sleep=max_sleep)
        return
    from clawnsole.alerts.runtime import run_alerts

    # The alert loops beside the scheduler; whichever ends first (by SIGTERM, or raising) stops the other.
    failed: list[BaseException] = []

    def alerts() -> None:
        try:
            run_alerts(conninfo, schema_name, stop=stop, channels=channels)
        except BaseException as error:
            failed.append(error)
            stop.set()

    side = threading.Thread(target=alerts, name="clawnsole-alerts", daemon=True)
    side.start()
    try:
        run_scheduler(conninfo, schema_name, stop, max_sleep=max_sleep)
    finally:
        stop.set()
        side.join()
    if failed:
        raise failed[0]


@scheduler_app.command()
@handle_errors
def tick(database_url: DatabaseUrl = None, schema: Schema = None) -> None:
    """Fire every due schedule once and exit (for cron: `* * * * * clawnsole scheduler tick`). Prints JSON."""
    from clawnsole.schedules.runtime import tick as tick_once

    conninfo, schema_name = resolve(database_url, schema)
    print_json(tick_once(conninfo, schema_name).to_json())
