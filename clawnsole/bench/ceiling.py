"""The ceiling: the very statements the library runs, driven raw, at the same batch size and concurrency.

A script is built from the operations in `clawnsole.ops` (so it follows them when they change): each step's
named statement with its parameters inlined as SQL literals, in the same transactions. pgbench drives it
when it is installed (`-M prepared`, one connection per client); otherwise a tight psycopg loop does, with
a thread per client. What is left between a figure and its ceiling is the cost of Python: the library, the
worker runtime, process start-up.
"""

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from clawnsole import ops
from clawnsole.bench.scratch import Scratch
from clawnsole.errors import ClawnsoleError
from clawnsole.queue import notify_channel

_PARAM = re.compile(r"%\((\w+)\)s")
_QUOTED = re.compile(r"([Ee]?)'((?:[^']|'')*)'")
# The claim's last line returns whole rows; a raw script only needs the ids and tokens to finish them.
_CLAIM_RESULT = (
    "SELECT coalesce(array_agg(id), '{}') AS ids, coalesce(array_agg(lease_token), '{}') AS tokens FROM claimed"
)


@dataclass(frozen=True)
class Command:
    """One statement of a raw script; `gset` keeps its single result row as variables for the next ones."""

    text: str
    gset: bool = False


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
    """Turns steps into raw statements with their parameters inlined as literals."""

    def __init__(self, scratch: Scratch, conn: psycopg.Connection[Any]) -> None:
        self._scratch = scratch
        self._conn = conn
        self._channel = notify_channel(scratch.schema)

    def command(self, step: ops.Step, *, chained: Sequence[str] = (), style: str = "psycopg") -> Command:
        """The step's statement; parameters named in `chained` stay variables (`:name` for pgbench)."""
        params = {"channel": self._channel, **step.params}
        text = "\n".join(
            line for line in self._scratch.statement(step.name).splitlines() if not line.lstrip().startswith("--")
        )
        if step.name in ops.CLAIM_STATEMENTS.values():
            head, _, _ = text.rpartition("\nSELECT ")
            text = f"{head}\n{_CLAIM_RESULT}"
        if style == "psycopg":
            text = text.replace("%", "%%").replace("%%(", "%(")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in chained:
                return f":{name}" if style == "pgbench" else f"%({name})s"
            literal = sql.Literal(params[name]).as_string(self._conn)
            return literal.replace("%", "%%") if style == "psycopg" else _no_colons(literal)

        return Command(_PARAM.sub(substitute, text), gset=step.name in ops.CLAIM_STATEMENTS.values())


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
    complete = render.command(
        ops.Step(finish[0].name, finish[0].params | {"results": None}), chained=("ids", "tokens"), style=style
    )
    results = "array_fill(NULL::jsonb, ARRAY[cardinality(:ids::bigint[])])"
    if style == "psycopg":
        results = results.replace(":ids", "%(ids)s")
    complete = Command(complete.text.replace("NULL::jsonb[]", results))
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
        return _pgbench(pgbench, url, script_for("pgbench"), clients, transactions)
    return _psycopg(url, script_for("psycopg"), clients, transactions)


def _pgbench(pgbench: str, url: str, script: list[Command], clients: int, transactions: int) -> RawRun:
    body = "".join(f"{c.text}\n\\gset\n" if c.gset else f"{c.text};\n" for c in script)
    with tempfile.TemporaryDirectory(prefix="clawnsole-bench-") as folder:
        path = Path(folder) / "ceiling.sql"
        path.write_text(body, encoding="utf-8")
        done = subprocess.run(
            [
                pgbench,
                "-n",
                "-M",
                "prepared",
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


def _psycopg(url: str, script: list[Command], clients: int, transactions: int) -> RawRun:
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
                    cur.execute(command.text, variables, prepare=True)
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
    return RawRun(clients * transactions / elapsed, "psycopg loop")


def timed_ops(url: str, script: list[Command], samples: int) -> list[float]:
    """Seconds per run of the script, one connection, `samples` times (for raw latencies)."""
    timings: list[float] = []
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.cursor(row_factory=dict_row)
        for _ in range(samples):
            variables: dict[str, Any] = {}
            began = time.perf_counter()
            for command in script:
                cur.execute(command.text, variables, prepare=True)
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
                    cur.execute(command.text, {}, prepare=True)
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
                producer.execute(command.text, {}, prepare=True)
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
