"""The scenarios: what users do with the queue, timed, each next to its raw ceiling where one applies.

Every scenario starts from an empty scratch schema. Worker processes are the real `clawnsole workqueue
worker-loop` with a no-op handler; CLI calls are real new processes, as cron would start them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from psycopg import sql

from clawnsole import ops
from clawnsole.bench import ceiling as raw
from clawnsole.bench.ceiling import cron_environment
from clawnsole.bench.handlers import STARTS_ENV
from clawnsole.bench.report import MS, RATE, Figure, Report
from clawnsole.bench.scratch import Scratch
from clawnsole.bench.stats import median, percentile, steady_rate, summary_ms
from clawnsole.models import NewItem
from clawnsole.queue import WorkQueue
from clawnsole.worker.runtime import PYTHON_CONCURRENCY

QUEUE = "bench"
# Where the raw pickup runs beside the latency scenario's idle worker (which listens to QUEUE only).
RAW_QUEUE = "bench-raw"
# The throughput scenario runs workers with their default --concurrency, and the ceiling claims that many.
WORKER_CONCURRENCY = PYTHON_CONCURRENCY


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does: a full run for publishing, a quick one for CI."""

    enqueue_single: int
    enqueue_batches: tuple[tuple[int, int], ...]  # (batch size, batches per run)
    throughput_items: int
    repeats: int  # runs per figure; the median is reported
    latency_samples: int
    latency_gap: float  # seconds between enqueues
    backlog_pending: tuple[int, ...]
    backlog_finished: int
    backlog_churn: int
    backlog_samples: int
    cli_calls: int
    ceiling_claim_items: int
    api_items: int  # per figure and run, over all 8 clients (the `api` scenario)


FULL = Sizes(
    enqueue_single=2_000,
    enqueue_batches=((100, 100), (10_000, 5)),
    throughput_items=30_000,
    repeats=3,
    latency_samples=250,
    latency_gap=0.020,
    backlog_pending=(1_000, 100_000, 1_000_000),
    backlog_finished=1_000_000,
    backlog_churn=1_000_000,
    backlog_samples=300,
    cli_calls=10,
    ceiling_claim_items=60_000,
    api_items=2_000,
)
QUICK = Sizes(
    enqueue_single=100,
    enqueue_batches=((100, 3), (10_000, 1)),
    throughput_items=300,
    repeats=1,
    latency_samples=10,
    latency_gap=0.020,
    backlog_pending=(1_000, 5_000),
    backlog_finished=5_000,
    backlog_churn=2_000,
    backlog_samples=20,
    cli_calls=1,
    ceiling_claim_items=2_000,
    api_items=96,
)


@dataclass
class Bench:
    """What every scenario works with."""

    scratch: Scratch
    sizes: Sizes
    report: Report
    with_ceiling: bool
    use_pgbench: bool
    log: Callable[[str], None]
    # Raw figures by key, measured by the `ceiling` scenario: (value, how it was driven).
    ceilings: dict[str, tuple[float, str]] = field(default_factory=dict)
    # The same raw figures measured again beside the runs of a figure, run for run: a machine's speed drifts
    # within one benchmark (on a shared VM by half), and a ratio means something only between runs made under
    # the same conditions. A figure is compared with the median of these when there are any.
    beside: dict[str, list[float]] = field(default_factory=dict)

    def again(self, key: str, measure: Callable[[], tuple[float, str]]) -> None:
        """Measure the ceiling `key` once more, next to a run of its figure (when the ceiling is part of the
        run)."""
        if self.with_ceiling:
            value, method = measure()
            self.beside.setdefault(key, []).append(value)
            self.ceilings.setdefault(key, (value, method))

    def figure(
        self, scenario: str, measure: str, value: float, unit: str, ceiling_key: str | None = None, **detail: Any
    ) -> Figure:
        found = self.ceilings.get(ceiling_key) if ceiling_key else None
        fresh = self.beside.get(ceiling_key or "")
        if found is not None and fresh:
            found = (median(fresh), f"{found[1]}, beside each run")
            detail["ceiling_runs"] = [round(v, 3) for v in fresh]
        figure = Figure(
            scenario,
            measure,
            value,
            unit,
            None if found is None else found[0],
            None if found is None else found[1],
            detail,
        )
        self.log(f"  {scenario}: {measure}: {value:,.2f} {unit}")
        return self.report.add(figure)

    @contextmanager
    def queue(self, connections: int = 1) -> Iterator[WorkQueue]:
        with WorkQueue(self.scratch.url, schema=self.scratch.schema, agent="bench", max_connections=connections) as wq:
            yield wq

    def preload(self, count: int, title: str = "preloaded") -> None:
        """Enqueue `count` items through the library in batches of 10,000."""
        with self.queue() as wq:
            for start in range(0, count, 10_000):
                wq.enqueue_many([NewItem(QUEUE, f"{title} {n}") for n in range(start, min(count, start + 10_000))])
        self.execute("VACUUM ANALYZE {items}")

    def execute(self, statement: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        """A bench-only statement on the scratch schema (`{items}` and `{events}` name its tables)."""
        query = sql.SQL(statement).format(
            items=self.scratch.qualified("items"), events=self.scratch.qualified("item_events")
        )
        with self.scratch.connect() as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


def _claim_complete_rate(b: Bench, batch: int, clients: int) -> tuple[float, str]:
    """Items/s of the raw claim-then-finish script on `clients` connections over a preloaded backlog."""
    b.scratch.reset()
    per_client = max(1, b.sizes.ceiling_claim_items // (batch * clients))
    b.preload(per_client * batch * clients + batch * clients)
    with b.scratch.connect() as conn:
        run = raw.run_raw(
            b.scratch.url,
            lambda style: raw.claim_complete_script(b.scratch, conn, QUEUE, batch, style),
            clients=clients,
            transactions=per_client,
            use_pgbench=b.use_pgbench,
        )
    done = b.execute("SELECT count(*) FROM {items} WHERE status = 'done'")[0][0]
    # Every transaction claims a full batch while the backlog lasts; scale down if some came up short.
    return run.tps * batch * min(1.0, int(done) / (per_client * batch * clients)), run.method


def _claim_key(batch: int, clients: int) -> str:
    return f"claim {batch} then complete_many, {clients} clients"


def _raw_enqueue(b: Bench, batch: int | None, transactions: int) -> tuple[float, str]:
    """Items/s of the raw enqueue script: one item per call (`batch` None) or `batch` per enqueue_many."""
    items = [NewItem(QUEUE, f"raw {n}") for n in range(batch or 0)]

    def operation() -> ops.Op[Any]:
        return ops.enqueue(QUEUE, "raw", agent="ceiling") if batch is None else ops.enqueue_many(items, agent="ceiling")

    with b.scratch.connect() as conn:
        run = raw.run_raw(
            b.scratch.url,
            lambda style: raw.enqueue_script(b.scratch, conn, operation(), style),
            clients=1,
            transactions=max(transactions, 2),
            use_pgbench=b.use_pgbench,
        )
    return run.tps * (batch or 1), run.method


def _enqueue_key(batch: int | None) -> str:
    return "enqueue single" if batch is None else f"enqueue_many {batch}"


def ceiling(b: Bench) -> None:
    """The raw figures every other scenario is compared with."""
    s = b.sizes
    b.scratch.reset()
    b.ceilings[_enqueue_key(None)] = _raw_enqueue(b, None, s.enqueue_single)
    for batch, count in s.enqueue_batches:
        b.ceilings[_enqueue_key(batch)] = _raw_enqueue(b, batch, count)
    # A worker process claims on one connection while it finishes on another: two raw clients per process.
    for batch, clients in ((WORKER_CONCURRENCY, 2), (WORKER_CONCURRENCY, 4), (100, 2)):
        b.ceilings[_claim_key(batch, clients)] = _claim_complete_rate(b, batch, clients)
    b.scratch.reset()
    b.preload(1_000)
    with b.scratch.connect() as conn:
        script = raw.claim_complete_script(b.scratch, conn, QUEUE, 1, "psycopg", recover=True)
    timings = raw.timed_ops(b.scratch.url, script, b.sizes.backlog_samples)
    b.ceilings["claim+done 1k"] = (summary_ms(timings)["p50"], "psycopg loop")
    b.scratch.reset()
    pickups = raw.raw_pickup(b.scratch, QUEUE, b.sizes.latency_samples, b.sizes.latency_gap)
    b.ceilings["pickup p50"] = (percentile(pickups, 0.5) * 1000, "psycopg LISTEN + claim")
    b.ceilings["pickup p99"] = (percentile(pickups, 0.99) * 1000, "psycopg LISTEN + claim")
    b.preload(10)
    calls = max(3, b.sizes.cli_calls)
    for name, script in _floor_scripts(b).items():
        b.ceilings[f"process {name}"] = (median(raw.process_start(b.scratch.url, script, calls)) * 1000, _FLOOR)
    for key, (value, method) in b.ceilings.items():
        unit = MS if key.startswith(("claim+done", "pickup", "process")) else RATE
        b.report.add(Figure("ceiling", key, value, unit, detail={"method": method}))
        b.log(f"  ceiling: {key}: {value:,.2f} {unit} ({method})")


def enqueue(b: Bench) -> None:
    """Single-item enqueue from one connection, and enqueue_many in batches; each run beside a raw one."""
    s = b.sizes
    b.scratch.reset()
    with b.queue() as wq:
        for n in range(20):
            wq.enqueue(QUEUE, f"warm-up {n}")
        runs = []
        for _ in range(s.repeats):
            b.again(_enqueue_key(None), lambda: _raw_enqueue(b, None, s.enqueue_single))
            began = time.perf_counter()
            for n in range(s.enqueue_single):
                wq.enqueue(QUEUE, f"item {n}")
            runs.append(s.enqueue_single / (time.perf_counter() - began))
        b.figure("enqueue", "single, 1 connection", median(runs), RATE, _enqueue_key(None), runs=runs)
        for batch, count in s.enqueue_batches:
            items = [NewItem(QUEUE, f"item {n}") for n in range(batch)]
            wq.enqueue_many(items)
            runs = []
            for _ in range(s.repeats):
                b.again(_enqueue_key(batch), lambda batch=batch, count=count: _raw_enqueue(b, batch, count))  # type: ignore[misc]
                began = time.perf_counter()
                for _ in range(count):
                    wq.enqueue_many(items)
                runs.append(batch * count / (time.perf_counter() - began))
            b.figure(
                "enqueue", f"enqueue_many, batches of {batch:,}", median(runs), RATE, _enqueue_key(batch), runs=runs
            )


@contextmanager
def workers(b: Bench, count: int, handler: str, env: dict[str, str] | None = None) -> Iterator[list[Path]]:
    """`count` worker-loop processes with default settings, stopped with SIGTERM (a graceful drain) at the end."""
    logs = [Path(tempfile.mkstemp(prefix="clawnsole-bench-worker-", suffix=".log")[1]) for _ in range(count)]
    processes = []
    for n, log in enumerate(logs):
        with open(log, "wb") as stderr:
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "clawnsole",
                        "workqueue",
                        "worker-loop",
                        "--queue",
                        QUEUE,
                        "--handler",
                        handler,
                        "--agent",
                        f"bench-worker-{n}",
                        "--database-url",
                        b.scratch.url,
                        "--schema",
                        b.scratch.schema,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                    env=os.environ | {"CLAWNSOLE_SCHEMA": b.scratch.schema} | (env or {}),
                )
            )
    try:
        yield logs
        for p in processes:
            if p.poll() is not None:
                raise RuntimeError(f"a worker exited early ({p.returncode}): {_tail(logs[processes.index(p)])}")
    finally:
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in processes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.unlink(missing_ok=True)


def _tail(path: Path) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"


def _wait_done(b: Bench, count: int, timeout: float, processes_logs: list[Path]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if int(b.execute("SELECT count(*) FROM {items} WHERE status = 'done'")[0][0]) >= count:
            return
        time.sleep(0.1)
    raise RuntimeError(f"workers did not finish {count} items in {timeout:.0f}s: {_tail(processes_logs[0])}")


def throughput(b: Bench) -> None:
    """Drain a preloaded backlog with 1 and 2 worker processes (no-op handler, default concurrency)."""
    s = b.sizes
    for count in (1, 2):
        rates, drains = [], []
        key = _claim_key(WORKER_CONCURRENCY, 2 * count)
        for _ in range(s.repeats):
            b.again(key, lambda count=count: _claim_complete_rate(b, WORKER_CONCURRENCY, 2 * count))  # type: ignore[misc]
            b.scratch.reset()
            b.preload(s.throughput_items)
            with workers(b, count, "clawnsole.bench.handlers:noop") as logs:
                _wait_done(b, s.throughput_items, 60 + s.throughput_items / 200, logs)
            rows = b.execute(
                "SELECT extract(epoch FROM finished_at)::float8, extract(epoch FROM claimed_at)::float8"
                " FROM {items} WHERE status = 'done'"
            )
            finished = [float(r[0]) for r in rows]
            rates.append(steady_rate(finished))
            drains.append(max(finished) - min(float(r[1]) for r in rows))
        b.figure(
            "throughput",
            f"{count} worker process{'es' if count > 1 else ''}, steady (10-90 %)",
            median(rates),
            RATE,
            key,
            runs=[round(r) for r in rates],
            drain_s=median(drains),
            items=s.throughput_items,
        )


def latency(b: Bench) -> None:
    """One idle worker; items enqueued one at a time 20 ms apart; enqueue → handler start."""
    s = b.sizes
    b.scratch.reset()
    starts = Path(tempfile.mkstemp(prefix="clawnsole-bench-starts-")[1])
    sent: dict[int, float] = {}
    raw_delays: list[float] = []
    try:
        with workers(b, 1, "clawnsole.bench.handlers:record_start", {STARTS_ENV: str(starts)}) as logs, b.queue() as wq:
            # Warm up until the worker has handled an item, so it is started, connected and idle.
            deadline = time.monotonic() + 60
            while not starts.read_text().strip():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the worker never started an item: {_tail(logs[0])}")
                wq.enqueue(QUEUE, "warm-up")
                time.sleep(0.2)
            time.sleep(0.3)
            warm = len(starts.read_text().splitlines())
            # In chunks, each after a raw chunk on a queue the worker does not listen to (it ignores those
            # notifications): both sides sampled under the same conditions.
            chunks = 5 if s.latency_samples >= 50 else 1
            for chunk in range(chunks):
                if b.with_ceiling:
                    raw_delays += raw.raw_pickup(b.scratch, RAW_QUEUE, s.latency_samples // chunks, s.latency_gap)
                for n in range(chunk * s.latency_samples // chunks, (chunk + 1) * s.latency_samples // chunks):
                    time.sleep(s.latency_gap)
                    began = time.time()
                    sent[wq.enqueue(QUEUE, f"latency {n}").item.id] = began
            deadline = time.monotonic() + 30
            while len(starts.read_text().splitlines()) < warm + len(sent) and time.monotonic() < deadline:
                time.sleep(0.05)
        started = {int(i): float(t) for i, t in (line.split() for line in starts.read_text().splitlines())}
    finally:
        starts.unlink(missing_ok=True)
    delays = [started[i] - t for i, t in sent.items() if i in started]
    if len(delays) < len(sent):
        raise RuntimeError(f"only {len(delays)} of {len(sent)} items were started")
    summary = summary_ms(delays)
    if raw_delays:
        b.again("pickup p50", lambda: (percentile(raw_delays, 0.5) * 1000, "psycopg LISTEN + claim"))
        b.again("pickup p99", lambda: (percentile(raw_delays, 0.99) * 1000, "psycopg LISTEN + claim"))
    b.figure("latency", "enqueue → handler start, p50", summary["p50"], MS, "pickup p50", **summary)
    b.figure("latency", "enqueue → handler start, p99", summary["p99"], MS, "pickup p99")


def _claim_done(b: Bench, label: str, raw_too: bool) -> None:
    """Claim one item and finish it, `backlog_samples` times, on one connection; with its raw twin."""
    samples = b.sizes.backlog_samples
    with b.queue() as wq:
        timings = []
        for n in range(samples + 10):
            began = time.perf_counter()
            item = wq.claim_next(QUEUE)[0]
            wq.done(item.id, lease_token=str(item.lease_token))
            if n >= 10:
                timings.append(time.perf_counter() - began)
    key = None
    if raw_too:
        with b.scratch.connect() as conn:
            script = raw.claim_complete_script(b.scratch, conn, QUEUE, 1, "psycopg", recover=True)
        raw_p50 = summary_ms(raw.timed_ops(b.scratch.url, script, samples))["p50"]
        key = f"claim+done {label}"
        b.ceilings[key] = (raw_p50, "psycopg loop")
    b.figure("backlog", f"claim+done p50, {label}", summary_ms(timings)["p50"], MS, key, **summary_ms(timings))


def _load(b: Bench, count: int, status: str = "pending") -> None:
    """A bulk backlog in one INSERT … SELECT (setup only: no history rows, which claims never read)."""
    b.execute(
        "INSERT INTO {items} (queue, title, status, attempts, claimed_by, finished_at)"
        " SELECT %s, 'backlog ' || g, %s, CASE WHEN %s = 'done' THEN 1 ELSE 0 END,"
        "        CASE WHEN %s = 'done' THEN 'loader' END, CASE WHEN %s = 'done' THEN now() END"
        "   FROM generate_series(1, %s) AS g",
        [QUEUE, status, status, status, status, count],
    )


def backlog(b: Bench) -> None:
    """Claim+done latency with growing pending backlogs, with finished rows, and after churn without vacuum."""
    s = b.sizes
    extra = 2 * (s.backlog_samples + 10)  # consumed by the measurements themselves
    for pending in s.backlog_pending:
        b.scratch.reset()
        _load(b, pending + extra)
        b.execute("VACUUM ANALYZE {items}")
        _claim_done(b, f"{_count(pending)} pending", b.with_ceiling)
    b.scratch.reset()
    _load(b, s.backlog_finished, "done")
    _load(b, 1_000 + extra)
    b.execute("VACUUM ANALYZE {items}")
    _claim_done(b, f"1k pending + {_count(s.backlog_finished)} finished", b.with_ceiling)

    b.scratch.reset()
    _load(b, s.backlog_churn + 1_000 + 2 * extra)
    b.execute("VACUUM ANALYZE {items}")
    b.execute("ALTER TABLE {items} SET (autovacuum_enabled = off)")
    b.execute("ALTER TABLE {events} SET (autovacuum_enabled = off)")
    try:
        began = time.perf_counter()
        with b.queue() as wq:
            left = s.backlog_churn
            while left > 0:
                # Large batches: each claim walks the dead entries left by the ones before it.
                claimed = wq.claim_next(QUEUE, limit=min(left, 10_000))
                wq.run(ops.complete_many([(i.id, str(i.lease_token), None) for i in claimed], agent="bench"))
                left -= len(claimed)
        b.log(f"  backlog: churned {s.backlog_churn:,} rows in {time.perf_counter() - began:.1f}s")
        label = f"1k pending after {_count(s.backlog_churn)} churned"
        _claim_done(b, f"{label}, no vacuum", b.with_ceiling)
        b.execute("VACUUM {items}")
        _claim_done(b, f"{label}, vacuumed", b.with_ceiling)
    finally:
        b.execute("ALTER TABLE {items} RESET (autovacuum_enabled)")
        b.execute("ALTER TABLE {events} RESET (autovacuum_enabled)")


def _count(n: int) -> str:
    return (
        f"{n // 1_000_000}M"
        if n >= 1_000_000 and n % 1_000_000 == 0
        else (f"{n // 1_000}k" if n >= 1_000 and n % 1_000 == 0 else str(n))
    )


def _clawnsole_command() -> list[str]:
    """The `clawnsole` console script beside this interpreter, as cron would run it; else `python -m`."""
    script = Path(sys.executable).parent / "clawnsole"
    return [str(script)] if script.exists() else [sys.executable, "-m", "clawnsole"]


_FLOOR = "python -c 'import psycopg; …'"


def _floor_scripts(b: Bench) -> dict[str, list[raw.Command]]:
    """The statements of `workqueue enqueue` and `claim-next`, for a bare psycopg process to run (the floor)."""
    with b.scratch.connect() as conn:
        return {
            "enqueue": raw.enqueue_script(b.scratch, conn, ops.enqueue(QUEUE, "cron", agent=None), "inline"),
            "claim-next": raw.claim_complete_script(b.scratch, conn, QUEUE, 1, "inline", recover=True)[:-1],
        }


def cli(b: Bench) -> None:
    """Wall time of `clawnsole workqueue enqueue` and `claim-next`, a new process each, as cron runs them."""
    b.scratch.reset()
    # As cron runs it: settings from the environment, and byte code cached (no PYTHONDONTWRITEBYTECODE).
    env = {k: v for k, v in cron_environment().items() if not k.startswith("CLAWNSOLE_") and k != "DATABASE_URL"}
    env |= {"CLAWNSOLE_DATABASE_URL": b.scratch.url, "CLAWNSOLE_SCHEMA": b.scratch.schema}
    base = [*_clawnsole_command(), "workqueue"]
    commands = {
        "enqueue": [*base, "enqueue", "--queue", QUEUE, "--title", "from cron"],
        "claim-next": [*base, "claim-next", "--queue", QUEUE, "--agent", "cron"],
    }
    calls = b.sizes.cli_calls
    b.preload(calls * 4 + 4)  # the floor's claims take items too
    floors = _floor_scripts(b)
    for name, argv in commands.items():
        subprocess.run(argv, env=env, check=True, capture_output=True, timeout=60)  # warm the page cache
        timings = []
        for _ in range(calls):
            # Call for call beside the floor, which drifts with the machine as much as the command does.
            b.again(
                f"process {name}",
                lambda name=name: (raw.process_start(b.scratch.url, floors[name], 1)[0] * 1000, _FLOOR),  # type: ignore[misc]
            )
            began = time.perf_counter()
            done = subprocess.run(argv, env=env, capture_output=True, timeout=60, check=False)
            timings.append(time.perf_counter() - began)
            if done.returncode != 0:
                raise RuntimeError(f"`clawnsole workqueue {name}` failed: {done.stderr.decode().strip()}")
        b.figure(
            "cli",
            f"workqueue {name}, wall per call",
            median(timings) * 1000,
            MS,
            f"process {name}",
            **({"p95": percentile(timings, 0.95) * 1000, "max": max(timings) * 1000} if calls > 2 else {}),
            calls=calls,
        )


def api(b: Bench) -> None:
    """Enqueue and claim+done through `clawnsole serve` with 8 HTTP clients, beside the library (`bench.api`)."""
    from clawnsole.bench.api import api as run_api  # loaded only when run: it starts the web server

    run_api(b)


SCENARIOS: dict[str, Callable[[Bench], None]] = {
    "ceiling": ceiling,
    "enqueue": enqueue,
    "throughput": throughput,
    "latency": latency,
    "backlog": backlog,
    "cli": cli,
    "api": api,
}
# Scenarios that need an extra: left out of a default run when it is missing (the runner says why).
NEEDS_WEB = ("api",)


def sizes_json(sizes: Sizes) -> dict[str, Any]:
    return asdict(sizes)
