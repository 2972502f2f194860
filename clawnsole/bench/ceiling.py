"""The ceiling: the very statements the library runs, driven raw, at the same batch size and concurrency.

A script is built from the operations in `clawnsole.ops` (so it follows them when they change): each step's
named statement with the same parameters bound, in the same transactions. pgbench drives it when it is
installed (`-M prepared`, the values passed with `-D`, one connection per client); otherwise a tight
psycopg loop does, with a thread per client. What is left between a figure and its ceiling is the cost of
Python: the library, the worker runtime, process start-up."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.adapt import PyFormat, Transformer
from psycopg.rows import dict_row

from clawnsole import ops
from clawnsole.bench.scratch import Scratch
from clawnsole.errors import ClawnsoleError
from clawnsole.queue import notify_channel

# The longest value passed to pgbench (`-D name=value`): Linux limits one argument to 128 KiB.
_MAX_ARGUMENT = 120_000
_PARAM = re.compile(r"%\((\w+)\)s")
_QUOTED = re.compile(r"([Ee]?)'((?:[^']|'')*)'")
# The claim's last line returns whole rows; a raw script only needs the ids and tokens to finish them.
_CLAIM_RESULT = (
    "SELECT coalesce(array_agg(id), '{}') AS ids, coalesce(array_agg(lease_token), '{}') AS tokens FROM claimed"
)


@dataclass(frozen=True)
class Command:
    """One statement of a raw script; `gset` keeps its single result row as variables for the next ones.

    `params` are the values bound to it on every run, as a client binds an item's data to a prepared
    statement: Python values for psycopg, their text form for pgbench (passed with `-D`)."""

    text: str
    gset: bool = False
    params: dict[str, Any] = field(default_factory=dict)


def steps(op: ops.Op[Any]) -> list[ops.Step]:
    """The statements an operation runs on its common path, each once, in order."""
    found: list[ops.Step] = []
    try:
        step = next(op)
        while step.name not in {s.name for s in found}:  # an enqueue retries its insert when it sees no row
            found.append(step)
            step = op.send([])
    except (StopIteration, ClawnsoleError):
        pass
    finally:
        op.close()
    return found


def find_pgbench() -> str | None:
    """pgbench on PATH, or beside the server binaries of a Debian/Ubuntu install."""
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pgbench"), reverse=True)
    return str(candidates[0]) if candidates else None


def pgbench_problem(pgbench: str, url: str) -> str | None:
    """Why this pgbench cannot drive the ceiling against `url` (None: it can).

    One transaction of a probe script using the same features as the ceiling's (`-M prepared`, `\\gset`),
    so a broken binary, a pgbench too old for them or one whose libpq cannot reach the server is found
    before any figure depends on it.
    """
    with tempfile.TemporaryDirectory(prefix="clawnsole-bench-") as folder:
        path = Path(folder) / "probe.sql"
        path.write_text("SELECT 1 AS one\n\\gset\n", encoding="utf-8")
        try:
            done = subprocess.run(
                [pgbench, "-n", "-M", "prepared", "-f", str(path), "-c", "1", "-t", "1", url],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as error:
            return str(error)
    if done.returncode == 0 and "tps = " in done.stdout:
        return None
    last = (done.stderr or done.stdout).strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
    return last[0]


class Renderer:
    """Turns steps into raw statements, their parameters bound as the library binds them.

    The values are parameters, never literals: a literal in a prepared statement is parsed and folded into
    the cached plan once (an item's JSON payload, a batch's rows), work a client enqueueing new data pays on
    every call. NULLs are the exception (pgbench cannot bind one): they are written as NULL. The `inline`
    style writes every value as a literal, for the process start-up floor, which runs each statement once.
    """

    def __init__(self, scratch: Scratch, conn: psycopg.Connection[Any]) -> None:
        self._scratch = scratch
        self._conn = conn
        self._channel = notify_channel(scratch.schema)
        self._transformer = Transformer(conn)
        self._steps = 0

    def command(self, step: ops.Step, *, chained: Sequence[str] = (), style: str = "psycopg") -> Command:
        """The step's statement; parameters named in `chained` stay variables (`:name` for pgbench), set by
        the statement before it (`gset`)."""
        params = {"channel": self._channel, **step.params}
        text = "\n".join(
            line for line in self._scratch.statement(step.name).splitlines() if not line.lstrip().startswith("--")
        )
        if step.name in ops.CLAIM_STATEMENTS.values():
            head, _, _ = text.rpartition("\nSELECT ")
            text = f"{head}\n{_CLAIM_RESULT}"
        gset = step.name in ops.CLAIM_STATEMENTS.values()
        if style == "psycopg":
            return Command(text, gset, {k: v for k, v in params.items() if k not in chained})
        # pgbench numbers its variables per statement: give each statement's its own names.
        prefix = f"s{self._steps}_"
        self._steps += 1
        bound: dict[str, Any] = {}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in chained:
                return f":{name}"
            value = params[name]
            if style == "inline" or value is None:
                return _no_colons(sql.Literal(value).as_string(self._conn))
            bound[prefix + name] = self._text(value)
            return f":{prefix}{name}"

        return Command(_PARAM.sub(substitute, text), gset, bound)

    def _text(self, value: Any) -> str:
        """A value as its text form, which the server parses as it parses the library's parameter."""
        data = self._transformer.get_dumper(value, PyFormat.TEXT).dump(value)
        return bytes(data or b"").decode()


def _no_colons(literal: str) -> str:
    """pgbench takes any `:word` as a variable, even inside quotes: spell colons in strings as E'\\x3a'."""

    def escape(match: re.Match[str]) -> str:
        prefix, body = match.group(1), match.group(2)
        if ":" not in body:
            return match.group(0)
        if not prefix:
            body = body.replace("\\", "\\\\")
        return "E'" + body.replace(":", "\\x3a") + "'"

    return _QUOTED.sub(escape, literal)


def claim_complete_script(
    scratch: Scratch, conn: psycopg.Connection[Any], queue: str, batch: int, style: str, *, recover: bool = False
) -> list[Command]:
    """Claim `batch` items, then finish them all in one statement: what a worker with `batch` free slots
    does. A worker recovers expired leases at most once a second, so by default the claim does not;
    `recover=True` is the library's `claim_next` (recovery first, in the claim's transaction)."""
    render = Renderer(scratch, conn)
    claim = [
        render.command(s, style=style) for s in steps(ops.claim([queue], agent="ceiling", limit=batch, recover=recover))
    ]
    if len(claim) > 1:
        claim = [Command("BEGIN"), *claim, Command("COMMIT")]
    finish = steps(ops.complete_many([(0, "00000000-0000-0000-0000-000000000000", None)], agent="ceiling"))
    complete = render.command(finish[0], chained=("ids", "tokens", "results"), style=style)
    # No handler results: one NULL per claimed item, as the finisher sends for a no-op handler.
    var = "%({})s" if style == "psycopg" else ":{}"
    results = f"array_fill(NULL::jsonb, ARRAY[cardinality({var.format('ids')}::bigint[])])"
    complete = Command(complete.text.replace(f"{var.format('results')}::jsonb[]", results), params=complete.params)
    return [*claim, complete]


def enqueue_script(scratch: Scratch, conn: psycopg.Connection[Any], op: ops.Op[Any], style: str) -> list[Command]:
    """The statements of one enqueue (single or batch), one transaction."""
    render = Renderer(scratch, conn)
    return [render.command(s, style=style) for s in steps(op)]


@dataclass(frozen=True)
class RawRun:
    """What a raw run achieved: transactions per second over all clients, and how it was driven."""

    tps: float
    method: str


def run_raw(
    url: str, script_for: Callable[[str], list[Command]], *, clients: int, transactions: int, use_pgbench: bool = True
) -> RawRun:
    """Run the script `transactions` times on each of `clients` connections."""
    pgbench = find_pgbench() if use_pgbench else None
    if pgbench is not None:
        script = script_for("pgbench")
        # A value goes to pgbench on its command line, where one argument is limited to 128 KiB (a batch
        # of 10,000 items is larger): such a script runs in the psycopg loop instead.
        if all(len(v) < _MAX_ARGUMENT for c in script for v in c.params.values()):
            return _pgbench(pgbench, url, script, clients, transactions)
        return _psycopg(url, script_for("psycopg"), clients, transactions, "psycopg loop (too large for pgbench)")
    return _psycopg(url, script_for("psycopg"), clients, transactions)


def _pgbench(pgbench: str, url: str, script: list[Command], clients: int, transactions: int) -> RawRun:
    body = "".join(f"{c.text}\n\\gset\n" if c.gset else f"{c.text};\n" for c in script)
    variables = [f"-D{name}={value}" for c in script for name, value in c.params.items()]
    with tempfile.TemporaryDirectory(prefix="clawnsole-bench-") as folder:
        path = Path(folder) / "ceiling.sql"
        path.write_text(body, encoding="utf-8")
        done = subprocess.run(
            [
                pgbench,
                "-n",
                "-M",
                "prepared",
                *variables,
                "-f",
                str(path),
                "-c",
                str(clients),
                "-j",
                str(clients),
                "-t",
                str(transactions),
                url,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", done.stdout) or re.search(
        r"tps = ([\d.]+)", done.stdout
    )
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"pgbench failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return RawRun(float(match.group(1)), "pgbench")


def _psycopg(url: str, script: list[Command], clients: int, transactions: int, method: str = "psycopg loop") -> RawRun:
    errors: list[BaseException] = []
    connections = [psycopg.connect(url, autocommit=True) for _ in range(clients)]
    start = threading.Barrier(clients + 1)

    def client(conn: psycopg.Connection[Any]) -> None:
        try:
            cur = conn.cursor(row_factory=dict_row)
            start.wait()
            variables: dict[str, Any] = {}
            for _ in range(transactions):
                for command in script:
                    cur.execute(command.text, command.params | variables, prepare=True)
                    if command.gset:
                        row = cur.fetchone()
                        variables = dict(row) if row else {}
        except BaseException as error:  # reported to the caller
            errors.append(error)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in connections]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    for c in connections:
        c.close()
    if errors:
        raise RuntimeError(f"raw psycopg loop failed: {errors[0]}")
    return RawRun(clients * transactions / elapsed, method)


def timed_ops(url: str, script: list[Command], samples: int) -> list[float]:
    """Seconds per run of the script, one connection, `samples` times (for raw latencies)."""
    timings: list[float] = []
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.cursor(row_factory=dict_row)
        for _ in range(samples):
            variables: dict[str, Any] = {}
            began = time.perf_counter()
            for command in script:
                cur.execute(command.text, command.params | variables, prepare=True)
                if command.gset:
                    row = cur.fetchone()
                    variables = dict(row) if row else {}
            timings.append(time.perf_counter() - began)
    return timings


def raw_pickup(scratch: Scratch, queue: str, samples: int, gap: float) -> list[float]:
    """Enqueue → claimed, raw: one connection LISTENs and claims on each notification, another enqueues."""
    with scratch.connect() as conn:
        enqueue = enqueue_script(scratch, conn, ops.enqueue(queue, "pickup", agent="ceiling"), "psycopg")
        claim = claim_complete_script(scratch, conn, queue, 1, "psycopg")
    listener = psycopg.connect(scratch.url, autocommit=True)
    listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(notify_channel(scratch.schema))))
    claimed: list[float] = []
    ready = threading.Event()
    stop = threading.Event()

    def listen() -> None:
        cur = listener.cursor(row_factory=dict_row)
        ready.set()
        while not stop.is_set():
            # The generator holds the connection until it ends: claim after it, not inside it.
            if list(listener.notifies(timeout=0.2, stop_after=1)):
                for command in claim[:-1]:
                    cur.execute(command.text, command.params, prepare=True)
                claimed.append(time.perf_counter())

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    ready.wait()
    sent: list[float] = []
    warm_up = 5  # the first round trips prepare statements and warm caches
    with psycopg.connect(scratch.url, autocommit=True) as producer:
        for _ in range(samples + warm_up):
            time.sleep(gap)
            sent.append(time.perf_counter())
            for command in enqueue:
                producer.execute(command.text, command.params, prepare=True)
        deadline = time.monotonic() + 5
        while len(claimed) < samples + warm_up and time.monotonic() < deadline:
            time.sleep(0.01)
    stop.set()
    thread.join()
    listener.close()
    return [c - s for s, c in zip(sent, claimed, strict=False)][warm_up:]


def cron_environment() -> dict[str, str]:
    """This environment as cron would give it to a command: Python's byte-code cache left on."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def process_start(url: str, commands: Sequence[Command], samples: int) -> list[float]:
    """Wall time of a new Python process that connects and runs the statements: the floor for a CLI call."""
    program = "import sys, psycopg\nwith psycopg.connect(sys.argv[1]) as c:\n" + "".join(
        f"    c.execute({c.text!r})\n" for c in commands if c.text not in ("BEGIN", "COMMIT")
    )
    timings = []
    for _ in range(samples):
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", program, url], check=True, capture_output=True, timeout=60, env=cron_environment()
        )
        timings.append(time.perf_counter() - began)
    return timings
