"""`clawnsole alert …`: alert rules and settings (import/export, add/update/remove/enable/disable, list,
show), one evaluation round (evaluate), and the delivery commands (run, test, history) at the end."""

from __future__ import annotations

import json
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
)

if TYPE_CHECKING:
    from clawnsole.alerts.rules import Rule

app = typer.Typer(
    help=f"Alert rules over the queue's own history, their evaluation and delivery. An unknown NAME exits 4; "
    f"a NAME taken on add exits 2. {EXIT_CODES_HELP}",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(help="The rule's name.", show_default=False)]
_MAX_FILE = 4 * 1024 * 1024

Condition = Annotated[
    list[str] | None,
    typer.Option(
        "--condition",
        help="KEY=VALUE of the rule's conditions (repeatable), e.g. consecutiveFailures=3 or jobPattern='^nightly'.",
    ),
]
Conditions = Annotated[
    str | None, typer.Option("--conditions", help="The conditions as one JSON object: '{\"dlqSize\": 1}'.")
]
Group = Annotated[
    str | None,
    typer.Option(help="jobFailures, queueHealth, performance or schedules (default: the condition's own)."),
]
Channel = Annotated[list[str] | None, typer.Option("--channel", help="slack, discord, email or webhook (repeatable).")]
Description = Annotated[str | None, typer.Option(help="A note for people ('' clears it on update).")]


def _conditions(pairs: list[str] | None, document: str | None) -> dict[str, Any] | None:
    """The conditions from --conditions JSON or --condition KEY=VALUE pairs (a value is JSON, else text)."""
    from clawnsole.errors import InvalidInput

    if pairs and document is not None:
        raise InvalidInput("conditions", "give --conditions or --condition, not both")
    if document is not None:
        try:
            parsed = json.loads(document)
        except json.JSONDecodeError as error:
            raise InvalidInput("conditions", f"is not JSON ({error.msg})") from None
        if not isinstance(parsed, dict):
            raise InvalidInput("conditions", "must be a JSON object")
        return parsed
    if not pairs:
        return None
    conditions: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InvalidInput("condition", f"{pair!r} is not KEY=VALUE")
        try:
            conditions[key] = json.loads(value)
        except json.JSONDecodeError:
            conditions[key] = value  # a pattern or a duration such as 1h
    return conditions


def _row(rule: Rule, firing: list[Any]) -> dict[str, Any]:
    """One line of `alert list`: the rule, and whether it is firing (for how many subjects, since when)."""
    d = rule.definition
    return {
        "name": d.name,
        "group": d.group,
        "conditions": ", ".join(f"{k}={v}" for k, v in d.conditions.items()),
        "severity": d.severity,
        "channels": ",".join(d.channels) or "(all)",
        "enabled": "yes" if d.enabled else "no",
        "state": f"firing ({len(firing)})" if firing else "ok",
        "since": min(a.fired_at for a in firing).isoformat(timespec="seconds") if firing else "",
        "error": rule.last_error or "",
    }


@app.command("import")
@handle_errors
def import_(
    file: Annotated[str, typer.Argument(metavar="FILE.yaml", help="alerts.yaml, or - for stdin.")],
    prune: Annotated[bool, typer.Option("--prune", help="Remove rules the file does not name.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would change; write nothing.")] = False,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Create or update rules (and settings) by name from YAML, all or nothing (running it twice changes nothing)."""
    from clawnsole.alerts.api import Alerts
    from clawnsole.alerts.rules import parse

    source = "<stdin>" if file == "-" else file
    parsed = parse(read_text_arg(file, "file", _MAX_FILE), source)
    with open_queue(database_url, schema) as wq:
        report = Alerts(wq).apply(parsed.rules, parsed.settings, prune=prune, dry_run=dry_run, source=source)
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
    if report.settings:
        typer.echo(f"{verb}update settings ({', '.join(report.settings)})")
    typer.echo(
        f"{len(report.created)} created, {len(report.updated)} updated, {len(report.unchanged)} unchanged, "
        f"{len(report.removed)} removed" + (" (dry run: nothing written)" if dry_run else "")
    )


@app.command()
@handle_errors
def export(
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to PATH instead of stdout.")] = None,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Print the settings and every rule as YAML that `alert import` reads back unchanged."""
    from clawnsole.alerts.api import Alerts
    from clawnsole.alerts.rules import dump
    from clawnsole.errors import InvalidInput

    with open_queue(database_url, schema) as wq:
        exported = Alerts(wq).export()
    assert exported.settings is not None
    text = dump(exported.settings, exported.rules)
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as error:
        raise InvalidInput("output", f"cannot write {output!r}: {error.strerror}") from None


@app.command()
@handle_errors
def add(
    name: Name,
    condition: Condition = None,
    conditions: Conditions = None,
    severity: Annotated[str, typer.Option(help="critical, high, medium or low.")] = "medium",
    channel: Channel = None,
    group: Group = None,
    description: Description = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled (enable to start).")] = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Create a rule (give its conditions). Prints it as JSON."""
    from clawnsole.alerts.api import Alerts
    from clawnsole.errors import InvalidInput

    parsed = _conditions(condition, conditions)
    if parsed is None:
        raise InvalidInput("conditions", "give --condition KEY=VALUE (repeatable) or --conditions JSON")
    with open_queue(database_url, schema) as wq:
        rule = Alerts(wq).add(
            name, conditions=parsed, severity=severity, channels=channel or (), group=group,
            description=description, enabled=not disabled,
        )  # fmt: skip
    print_json(rule.to_json())


@app.command()
@handle_errors
def update(
    name: Name,
    condition: Condition = None,
    conditions: Conditions = None,
    severity: Annotated[str | None, typer.Option(help="critical, high, medium or low.")] = None,
    channel: Channel = None,
    group: Group = None,
    description: Description = None,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Change a rule; options left out stay. New conditions replace all of the old ones."""
    from clawnsole.alerts.api import Alerts

    with open_queue(database_url, schema) as wq:
        rule = Alerts(wq).update(
            name, conditions=_conditions(condition, conditions), severity=severity, channels=channel,
            group=group, description=description,
        )  # fmt: skip
    print_json(rule.to_json())


def _print_changed(name: str, database_url: str | None, schema: str | None, action: str) -> None:
    """Run one by-name change of the Alerts API (remove, enable, disable) and print the rule."""
    from clawnsole.alerts.api import Alerts

    with open_queue(database_url, schema) as wq:
        rule = getattr(Alerts(wq), action)(name)
    print_json(rule.to_json())


@app.command()
@handle_errors
def remove(name: Name, database_url: DatabaseUrl = None, schema: Schema = None) -> None:
    """Delete a rule and its alerts (notices already queued are still delivered)."""
    _print_changed(name, database_url, schema, "remove")


@app.command()
@handle_errors
def enable(name: Name, database_url: DatabaseUrl = None, schema: Schema = None) -> None:
    """Evaluate a rule again."""
    _print_changed(name, database_url, schema, "enable")


@app.command()
@handle_errors
def disable(name: Name, database_url: DatabaseUrl = None, schema: Schema = None) -> None:
    """Stop evaluating a rule (its alerts keep their state until it is enabled again)."""
    _print_changed(name, database_url, schema, "disable")


@app.command("list")
@handle_errors
def list_(as_json: AsJson = False, database_url: DatabaseUrl = None, schema: Schema = None) -> None:
    """List the rules: conditions, severity, channels, and whether each is firing and since when."""
    from clawnsole.alerts.api import Alerts

    with open_queue(database_url, schema) as wq:
        alerts = Alerts(wq)
        rules = alerts.list()
        firing = alerts.alerts(state="firing")
    by_rule: dict[str, list[Any]] = {}
    for alert in firing:
        by_rule.setdefault(alert.rule, []).append(alert)
    if as_json:
        print_json([r.to_json() | {"firing": [a.to_json() for a in by_rule.get(r.name, [])]} for r in rules])
        return
    print_table(
        [_row(r, by_rule.get(r.name, [])) for r in rules],
        ["name", "group", "conditions", "severity", "channels", "enabled", "state", "since", "error"],
    )


@app.command()
@handle_errors
def status(as_json: AsJson = False, database_url: DatabaseUrl = None, schema: Schema = None) -> None:
    """Settings, whether each channel is configured here (from the environment; never a secret), and each
    rule with firing/ok and since when. The notes' `alert:status`."""
    from clawnsole.alerts.api import Alerts
    from clawnsole.alerts.channels import Channels

    with open_queue(database_url, schema) as wq:
        alerts = Alerts(wq)
        settings, rules, firing = alerts.settings(), alerts.list(), alerts.alerts(state="firing")
    channels = Channels.from_environment().describe()
    by_rule: dict[str, list[Any]] = {}
    for alert in firing:
        by_rule.setdefault(alert.rule, []).append(alert)
    if as_json:
        print_json(
            {
                "settings": settings.to_json(),
                "channels": {
                    name: {"enabled": name in settings.channels, "how": how} for name, how in channels.items()
                },
                "rules": [r.to_json() | {"firing": [a.to_json() for a in by_rule.get(r.name, [])]} for r in rules],
            }
        )
        return
    typer.echo(
        f"alerting {'on' if settings.enabled else 'off'}; channels {', '.join(settings.channels) or '(none)'}; "
        f"throttle {settings.min_interval_seconds}s, {settings.max_alerts_per_job_per_hour}/job/hour"
    )
    print_table(
        [{"channel": n, "enabled": n in settings.channels, "configured": how} for n, how in channels.items()],
        ["channel", "enabled", "configured"],
    )
    print_table(
        [_row(r, by_rule.get(r.name, [])) for r in rules],
        ["name", "group", "severity", "channels", "enabled", "state", "since", "error"],
    )


@app.command()
@handle_errors
def show(name: Name, database_url: DatabaseUrl = None, schema: Schema = None) -> None:
    """Show a rule as JSON, with its alerts (firing first)."""
    from clawnsole.alerts.api import Alerts

    with open_queue(database_url, schema) as wq:
        alerts = Alerts(wq)
        rule = alerts.get(name)
        states = alerts.alerts(rule=name)
    print_json(rule.to_json() | {"alerts": [a.to_json() for a in states]})


@app.command()
@handle_errors
def evaluate(
    every: Annotated[
        float, typer.Option("--every", help="Skip rules evaluated less than this many seconds ago (by anyone).")
    ] = 0.0,
    group: Annotated[list[str] | None, typer.Option("--group", help="Only rules of this group (repeatable).")] = None,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Run one evaluation round now: fire, resolve and throttle alerts, queue their notices. Prints what changed."""
    from clawnsole.alerts.api import Alerts

    with open_queue(database_url, schema) as wq:
        report = Alerts(wq).evaluate(every=every, groups=group)
    if as_json:
        print_json(report.to_json())
        return
    if not report.enabled:
        typer.echo("alerting is disabled (settings.enabled: false): nothing evaluated")
        return
    rows = [
        {
            "rule": c.rule,
            "subject": f"{c.subject_type} {c.subject}",
            "change": c.change,
            "notice": c.notice or "-",
            "channels": ",".join(c.channels),
            "suppressed": c.suppressed,
        }
        for r in report.rules
        for c in r.changes
    ]
    rows += [{"rule": r.rule, "change": "error", "notice": r.error} for r in report.rules if r.error]
    print_table(rows, ["rule", "subject", "change", "notice", "channels", "suppressed"])
    typer.echo(f"{len(report.rules)} rules evaluated, {report.notices} notices queued")


# --- Delivery commands (run, test, history): added below by the delivery half -----------------------------

_CHANNEL_NAMES = ("slack", "discord", "email", "webhook")


@app.command()
@handle_errors
def run(
    interval: Annotated[
        str, typer.Option("--interval", help="Evaluate every rule this often (failures are evaluated at once).")
    ] = "30s",
    log_format: Annotated[
        str, typer.Option("--log-format", envvar="CLAWNSOLE_LOG_FORMAT", help="Log lines on stderr: json or text.")
    ] = "json",
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """The alert daemon, until SIGTERM/SIGINT: evaluate rules every --interval and at once after a failure, and
    deliver notices as soon as they are written (retrying a channel that is down). Run any number of them."""
    import threading

    from clawnsole import validate
    from clawnsole.alerts.channels import Channels
    from clawnsole.alerts.runtime import LOG_FORMATS, configure_logging, run_alerts
    from clawnsole.cli.common import resolve
    from clawnsole.errors import InvalidInput
    from clawnsole.worker.signals import install

    # Everything is checked before connecting: a typo fails at once (exit 2), not after an "outage".
    seconds = validate.duration(interval, "interval")
    if log_format not in LOG_FORMATS:
        raise InvalidInput("log-format", f"must be one of {', '.join(LOG_FORMATS)}")
    channels = Channels.from_environment()
    conninfo, schema_name = resolve(database_url, schema)
    configure_logging(log_format)
    stop = threading.Event()
    restore = install(lambda _immediate: stop.set())
    try:
        run_alerts(conninfo, schema_name, interval=seconds, stop=stop, channels=channels)
    finally:
        restore()


@app.command("test")
@handle_errors
def test_(
    channel: Annotated[
        list[str] | None,
        typer.Option(
            "--channel", help="slack, discord, email or webhook (repeatable; default: the settings' channels)."
        ),
    ] = None,
    severity: Annotated[str, typer.Option(help="critical, high, medium or low.")] = "low",
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Send a test notice through the real path (outbox, channel, attempt recorded) and say what happened.

    Exits 0 when every channel took it, 1 when one failed (the reason on stderr)."""
    from clawnsole.alerts.api import Alerts
    from clawnsole.alerts.channels import Channels
    from clawnsole.alerts.delivery import Sender
    from clawnsole.alerts.messages import SEVERITIES
    from clawnsole.alerts.runtime import alerts_agent
    from clawnsole.cli.common import fail
    from clawnsole.errors import InvalidInput

    for name in channel or ():
        if name not in _CHANNEL_NAMES:
            raise InvalidInput("channel", f"{name!r} is not a channel (channels: {', '.join(_CHANNEL_NAMES)})")
    if severity not in SEVERITIES:
        raise InvalidInput("severity", f"must be one of {', '.join(SEVERITIES)}")
    channels = Channels.from_environment()
    with open_queue(database_url, schema) as wq:
        names = list(dict.fromkeys(channel or Alerts(wq).settings().channels or channels.configured()))
        if not names:
            fail(
                "no channel to test: none is configured here (set SLACK_WEBHOOK_URL, DISCORD_WEBHOOK_URL, "
                "CLAWNSOLE_SMTP_URL or CLAWNSOLE_ALERT_WEBHOOK_URL), and the settings name none",
                1,
            )
        sender = Sender(wq, channels, agent=alerts_agent())
        try:
            results = [sender.test(name, severity) for name in names]
        finally:
            channels.close()
    rows = [
        outcome.to_json() | {"ok": outcome.ok, "outbox_id": entry.id, "sent_at": entry.sent_at}
        for outcome, entry in results
    ]
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["channel", "status", "outbox_id", "status_code", "sent_at", "error"])
    failed = [outcome for outcome, _entry in results if not outcome.ok]
    if failed:
        fail("; ".join(o.error or f"{o.channel}: {o.status}" for o in failed), 1)


@app.command()
@handle_errors
def history(
    limit: Annotated[int, typer.Option("--limit", help="At most this many notices, newest first.")] = 50,
    severity: Annotated[str | None, typer.Option(help="Only notices of this severity.")] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Only notices of this rule.")] = None,
    job: Annotated[
        str | None, typer.Option("--job", help="Only notices about this job (or queue, or schedule) name.")
    ] = None,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """The notices sent, retrying or given up, newest first: rule, severity, subject, channel, delivery state."""
    from clawnsole.alerts import delivery

    with open_queue(database_url, schema) as wq:
        entries = wq.run(delivery.history(limit=limit, severity=severity, rule=rule, subject=job))
    if as_json:
        print_json([e.to_json() for e in entries])
        return
    rows = [
        {
            "id": e.id,
            "at": e.created_at.isoformat(timespec="seconds"),
            "rule": e.rule,
            "severity": e.severity,
            "kind": e.kind,
            "subject": e.subject,
            "channel": e.channel,
            "status": e.status,
            "attempts": e.attempts,
            "error": e.last_error or "",
        }
        for e in entries
    ]
    print_table(rows, ["id", "at", "rule", "severity", "kind", "subject", "channel", "status", "attempts", "error"])
