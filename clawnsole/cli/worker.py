"""`clawnsole workqueue worker-loop|worker-pass` and `clawnsole handlers list`: thin wiring of the worker
runtime. Heavy imports stay inside the commands, so `clawnsole workqueue enqueue` starts fast from cron.

With `--api-url` (or $CLAWNSOLE_API_URL) and a token the worker needs no database: it works through the HTTP
API of `clawnsole serve` (`clawnsole.worker.api_source`), with the same output, exit codes and `--exec`."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from clawnsole.cli.common import (
    ApiToken,
    ApiUrl,
    AsJson,
    DatabaseUrl,
    Schema,
    handle_errors,
    print_json,
    print_table,
)

if TYPE_CHECKING:
    from clawnsole.worker import Handler

Queues = Annotated[
    list[str],
    typer.Option(
        "--queue", envvar="CLAWNSOLE_WORKER_QUEUES", help="Queue to work (repeatable; $CLAWNSOLE_WORKER_QUEUES)."
    ),
]
AgentId = Annotated[
    str | None, typer.Option("--agent", help="Stable worker id (default: host:pid).", show_default=False)
]
Exec = Annotated[
    str | None,
    typer.Option(
        "--exec",
        envvar="CLAWNSOLE_WORKER_EXEC",
        help="Command run per item (shlex-split): item JSON on stdin; exit 0 = done, else failed.",
        show_default=False,
    ),
]
Shell = Annotated[bool, typer.Option("--shell", help="Run the --exec command with /bin/sh -c.")]
HandlerSpec = Annotated[
    str | None,
    typer.Option(
        "--handler",
        envvar="CLAWNSOLE_WORKER_HANDLER",
        help="Python callable module:function(item, ctx); its return value is the result.",
        show_default=False,
    ),
]
HandlersModule = Annotated[
    str | None,
    typer.Option(
        "--handlers",
        envvar="CLAWNSOLE_WORKER_HANDLERS",
        help='Module of @handler("kind") functions; items are routed by kind.',
        show_default=False,
    ),
]
Concurrency = Annotated[
    int | None,
    typer.Option(
        "--concurrency",
        envvar="CLAWNSOLE_WORKER_CONCURRENCY",
        help="Items run at once (threads). Default: 32 for Python handlers, one per CPU (at least 2) for --exec.",
        show_default=False,
    ),
]
LeaseLength = Annotated[str, typer.Option("--lease", help="Lease length of claimed items; renewed every third.")]
Timeout = Annotated[
    str | None,
    typer.Option("--timeout", help="--exec only: terminate the child and fail the item after this long."),
]
Grace = Annotated[str, typer.Option("--grace", help="On SIGTERM/SIGINT, wait this long for items in flight.")]
KillGrace = Annotated[str, typer.Option("--kill-grace", help="Children get SIGKILL this long after SIGTERM.")]
MaxItems = Annotated[int | None, typer.Option("--max-items", help="Exit 0 after claiming this many items.")]
LogFormat = Annotated[
    str, typer.Option("--log-format", envvar="CLAWNSOLE_LOG_FORMAT", help="Event log on stderr: text or json.")
]
RefuseRoot = Annotated[bool, typer.Option("--refuse-root", help="Exit with an error instead of warning when root.")]

# Seconds a thread may hold the GIL while another waits, in a worker running Python handlers (see below).
PYTHON_HANDLER_SWITCH_INTERVAL = 0.001

ROOT_WARNING = (
    "clawnsole: warning: running as root; run workers as a dedicated unprivileged user "
    "(least privilege: see 'Run it unattended' in the README), or pass --refuse-root to forbid this"
)


def register(app: typer.Typer) -> None:
    """Add `worker-loop` and `worker-pass` to the `workqueue` command group."""
    app.command("worker-loop")(worker_loop)
    app.command("worker-pass")(worker_pass)


@handle_errors
def worker_loop(
    queue: Queues,
    agent: AgentId = None,
    exec_: Exec = None,
    shell: Shell = False,
    handler: HandlerSpec = None,
    handlers: HandlersModule = None,
    concurrency: Concurrency = None,
    lease: LeaseLength = "300",
    poll: Annotated[
        str, typer.Option("--poll", help="Look for due items at least this often (LISTEN wakes it sooner).")
    ] = "30",
    timeout: Timeout = None,
    grace: Grace = "30",
    kill_grace: KillGrace = "5",
    max_items: MaxItems = None,
    max_runtime: Annotated[
        str | None, typer.Option("--max-runtime", help="Stop gracefully and exit 0 after this long.")
    ] = None,
    log_format: LogFormat = "text",
    refuse_root: RefuseRoot = False,
    with_scheduler: Annotated[
        bool, typer.Option("--with-scheduler", help="Also run the recurring-enqueue scheduler in this process.")
    ] = False,
    with_alerts: Annotated[
        bool, typer.Option("--with-alerts", help="Also evaluate alert rules and deliver notices in this process.")
    ] = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
    api_url: ApiUrl = None,
    token: ApiToken = None,
) -> None:
    """Run items from the queues until stopped: LISTEN wake-ups, heartbeats, graceful SIGTERM (systemd)."""
    _run(
        once=False,
        queues=queue,
        agent=agent,
        exec_=exec_,
        shell=shell,
        handler=handler,
        handlers=handlers,
        concurrency=concurrency,
        lease=lease,
        poll=poll,
        timeout=timeout,
        grace=grace,
        kill_grace=kill_grace,
        max_items=max_items,
        max_runtime=max_runtime,
        log_format=log_format,
        refuse_root=refuse_root,
        with_scheduler=with_scheduler,
        with_alerts=with_alerts,
        database_url=database_url,
        schema=schema,
        api_url=api_url,
        token=token,
    )


@handle_errors
def worker_pass(
    queue: Queues,
    agent: AgentId = None,
    exec_: Exec = None,
    shell: Shell = False,
    handler: HandlerSpec = None,
    handlers: HandlersModule = None,
    concurrency: Concurrency = None,
    lease: LeaseLength = "300",
    timeout: Timeout = None,
    grace: Grace = "30",
    kill_grace: KillGrace = "5",
    max_items: Annotated[int, typer.Option("--max-items", help="Claim at most this many items.")] = 1,
    log_format: LogFormat = "text",
    refuse_root: RefuseRoot = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
    api_url: ApiUrl = None,
    token: ApiToken = None,
) -> None:
    """One pass for cron: run up to --max-items due items, then exit 0 (at once when there are none)."""
    _run(
        once=True,
        queues=queue,
        agent=agent,
        exec_=exec_,
        shell=shell,
        handler=handler,
        handlers=handlers,
        concurrency=concurrency,
        lease=lease,
        poll="30",
        timeout=timeout,
        grace=grace,
        kill_grace=kill_grace,
        max_items=max_items,
        max_runtime=None,
        log_format=log_format,
        refuse_root=refuse_root,
        with_scheduler=False,
        with_alerts=False,
        database_url=database_url,
        schema=schema,
        api_url=api_url,
        token=token,
    )


def _run(
    *,
    once: bool,
    queues: list[str],
    agent: str | None,
    exec_: str | None,
    shell: bool,
    handler: str | None,
    handlers: str | None,
    concurrency: int | None,
    lease: str,
    poll: str,
    timeout: str | None,
    grace: str,
    kill_grace: str,
    max_items: int | None,
    max_runtime: str | None,
    log_format: str,
    refuse_root: bool,
    with_scheduler: bool,
    with_alerts: bool = False,
    database_url: str | None,
    schema: str | None,
    api_url: str | None = None,
    token: str | None = None,
) -> None:
    from clawnsole import validate
    from clawnsole.cli.common import api_client, resolve
    from clawnsole.errors import InvalidInput
    from clawnsole.queue import default_agent
    from clawnsole.worker import Registry, SideTask, Worker, WorkerOptions, load_callable
    from clawnsole.worker.eventlog import FORMATS, EventLog
    from clawnsole.worker.exec_handler import ExecHandler, command_argv
    from clawnsole.worker.runtime import default_concurrency
    from clawnsole.worker.sdnotify import Notifier
    from clawnsole.worker.signals import install
    from clawnsole.worker.source import Source

    _check_root(refuse_root)
    if log_format not in FORMATS:
        raise InvalidInput("log-format", f"must be one of {', '.join(FORMATS)}")
    options = WorkerOptions(
        queues=tuple(queues),
        agent=agent or default_agent(),
        concurrency=concurrency if concurrency is not None else default_concurrency(processes=bool(exec_)),
        lease=validate.duration(lease, "lease"),
        poll=validate.duration(poll, "poll"),
        grace=validate.duration(grace, "grace", allow_zero=True),
        kill_grace=validate.duration(kill_grace, "kill-grace", allow_zero=True),
        max_items=max_items,
        max_runtime=None if max_runtime is None else validate.duration(max_runtime, "max-runtime"),
        once=once,
    )
    timeout_seconds = None if timeout is None else validate.duration(timeout, "timeout")
    # All configuration is checked before connecting: a typo must fail at once (exit 2), not after
    # waiting out what looks like an outage, or after starting the embedded server.
    given = [name for name, value in (("--exec", exec_), ("--handler", handler), ("--handlers", handlers)) if value]
    if len(given) != 1:
        raise InvalidInput(
            "handler",
            "give exactly one of --exec, --handler or --handlers" + (f" (got {' and '.join(given)})" if given else ""),
        )
    if shell and not exec_:
        raise InvalidInput("shell", "only applies to --exec")
    if timeout_seconds is not None and not exec_:
        raise InvalidInput("timeout", "applies to --exec; Python handlers stop themselves (see ctx.cancelled)")
    python_handler: Handler | None = None
    if handler:
        python_handler = load_callable(handler)
    elif handlers:
        python_handler = Registry.from_module(handlers)
    argv = command_argv(exec_ or "", shell=shell) if exec_ else []
    api = api_client(api_url, token)
    if api is not None:
        _check_over_http(agent=agent, with_scheduler=with_scheduler, with_alerts=with_alerts)
    run_scheduler = _scheduler() if with_scheduler else None
    run_alerts = _alerts(log_format) if with_alerts else None

    side_tasks = []
    if api is None:
        conninfo, schema_name = resolve(database_url, schema)
        source: str | Source = conninfo
        run_handler = python_handler or ExecHandler(
            argv, database_url=conninfo, schema=schema_name, timeout=timeout_seconds, kill_grace=options.kill_grace
        )
        if run_scheduler is not None:
            side_tasks.append(SideTask("scheduler", lambda stop: run_scheduler(conninfo, schema_name, stop)))
        if run_alerts is not None:
            side_tasks.append(SideTask("alerts", lambda stop: run_alerts(conninfo, schema_name, stop)))
    else:
        from clawnsole.worker.api_source import ApiSource

        schema_name = "clawnsole"  # unused: the server knows its schema
        source = ApiSource(api, queues=options.queues, lease=options.lease, renew_timeout=min(10.0, options.lease / 3))
        # No database here: an `--exec` child gets none either (nor the token), only its item.
        run_handler = python_handler or ExecHandler(
            argv, database_url=None, schema=None, timeout=timeout_seconds, kill_grace=options.kill_grace
        )
    worker = Worker(
        source,
        run_handler,
        options,
        schema=schema_name,
        log=EventLog(fmt=log_format, agent=options.agent),
        notifier=Notifier.from_environ(),
        side_tasks=side_tasks,
    )
    if python_handler is not None:
        # Python handlers run in threads beside the heartbeat; CPU-bound ones hold the GIL for the default
        # 5 ms at a time each, and a beat needs it a dozen times per round trip: with 8 such handlers a
        # renewal came up to 2.2 s apart at a 1 s interval. Handing the GIL on after 1 ms brought the worst
        # gap to 1.2 s (0.5 ms: 1.06 s, at a cost in drain throughput). This process is the worker's own, so
        # the interpreter setting is ours to change.
        sys.setswitchinterval(PYTHON_HANDLER_SWITCH_INTERVAL)
    restore = install(lambda immediate: worker.stop(immediate))
    try:
        code = worker.run()
    finally:
        restore()
    if code:
        raise typer.Exit(code)


def _check_over_http(*, agent: str | None, with_scheduler: bool, with_alerts: bool) -> None:
    """Refuse what a worker over the API cannot do: the server names the agent (the token's name), and the
    scheduler and the alert loops work on the database itself."""
    from clawnsole.errors import InvalidInput

    if agent:
        raise InvalidInput("agent", "over the API the agent is the token's name: leave --agent out")
    for given, name in ((with_scheduler, "with-scheduler"), (with_alerts, "with-alerts")):
        if given:
            raise InvalidInput(name, "needs the database: run it where the server runs, not over the API")


def _check_root(refuse: bool) -> None:
    """Warn once on stderr when run as root; with --refuse-root, refuse instead."""
    from clawnsole.errors import InvalidInput

    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    if refuse:
        raise InvalidInput(
            "refuse-root",
            "refusing to run as root: run the worker as a dedicated user (see 'Run it unattended' in the README)",
        )
    typer.echo(ROOT_WARNING, err=True)


def _scheduler() -> Callable[[str, str, threading.Event], None]:
    """The scheduler's entry point, imported only when asked for."""
    import importlib

    from clawnsole.errors import InvalidInput

    try:
        module = importlib.import_module("clawnsole.schedules.runtime")
        run: Callable[[str, str, threading.Event], None] = module.run_scheduler
    except (ImportError, AttributeError) as error:
        raise InvalidInput("with-scheduler", f"the scheduler is not available in this installation ({error})") from None
    return run


def _alerts(log_format: str) -> Callable[[str, str, threading.Event], None]:
    """The alert daemon's loops (evaluate and deliver), with the channels checked now: a malformed channel
    variable fails the worker's start (exit 2), not its first notice."""
    from clawnsole.alerts.channels import Channels
    from clawnsole.alerts.runtime import configure_logging, run_alerts

    channels = Channels.from_environment()
    configure_logging(log_format)

    def run(conninfo: str, schema: str, stop: threading.Event) -> None:
        run_alerts(conninfo, schema, stop=stop, channels=channels)

    return run


handlers_app = typer.Typer(
    help='Handler registries (modules of @handler("kind") functions): list one, run one job now, write a new one.',
    no_args_is_help=True,
)


@handlers_app.command("list")
@handle_errors
def list_handlers(
    handlers: Annotated[
        str, typer.Option("--handlers", envvar="CLAWNSOLE_WORKER_HANDLERS", help="The module to inspect.")
    ],
    as_json: AsJson = False,
) -> None:
    """List the kinds a handler module handles, and by which function."""
    from clawnsole.worker import Registry

    entries = Registry.from_module(handlers).entries()
    rows = [{"kind": e.kind, "handler": e.target, "description": e.description} for e in entries]
    if as_json:
        print_json(rows)
    else:
        print_table(rows, ["kind", "handler", "description"])


# `handlers run` and `handlers new` live in their own module; they import the runtime only when run.
from clawnsole.cli import handlers as _handlers  # noqa: E402

_handlers.register(handlers_app)
