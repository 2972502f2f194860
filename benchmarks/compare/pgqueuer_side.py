"""pgqueuer's side of the comparison: runs inside the scratch venv that holds pgqueuer, never imports clawnsole.

`pgqueuer_bench.py` calls it once per figure (`python pgqueuer_side.py throughput|enqueue|latency --dsn URL ...`)
and reads one JSON object from its stdout: the raw samples (finish times, rates of each run, delays), so the
statistics of both libraries come from the same code (`clawnsole.bench.stats`) on the caller's side.

Consumers are pgqueuer's own runner with its defaults, `pgq run pgqueuer_side:consumer` (one asyncpg
connection per process, batch size 10, an async no-op entrypoint), as pgqueuer's README starts one.
Producers use `Queries.enqueue` over one asyncpg connection, as its README shows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries

ENTRYPOINT = "bench"
# Set for the consumer of the latency figure: where its handler appends "job_id wall_clock_seconds" lines.
STARTS_ENV = "PGQ_BENCH_STARTS"
PRELOAD_BATCH = 10_000
WARM_UP_CALLS = 20


@asynccontextmanager
async def consumer() -> AsyncIterator[PgQueuer]:
    """The factory `pgq run` starts: one connection, one entrypoint, pgqueuer's defaults otherwise."""
    connection = await asyncpg.connect(os.environ["PGDSN"])
    pgq = PgQueuer(AsyncpgDriver(connection))
    starts_path = os.environ.get(STARTS_ENV)
    if starts_path is None:

        @pgq.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            """Do nothing: what is left is the queue's own cost per job."""

    else:
        # Line-buffered, so the driver sees each start as soon as it happens.
        starts: TextIO = open(starts_path, "a", encoding="ascii", buffering=1)  # noqa: SIM115

        @pgq.entrypoint(ENTRYPOINT)
        async def record_start(job: Job) -> None:
            """Note when the handler started (wall clock, comparable across processes on one machine)."""
            starts.write(f"{job.id} {time.time():.6f}\n")

    try:
        yield pgq
    finally:
        await connection.close()


async def _connect(dsn: str) -> tuple[asyncpg.Connection, Queries]:
    connection = await asyncpg.connect(dsn)
    return connection, Queries.from_asyncpg_connection(connection)


async def _reset(queries: Queries) -> None:
    """Empty the queue, its log and its statistics between runs (pgqueuer's own benchmark does the same)."""
    await queries.clear_queue()
    await queries.clear_queue_log()
    await queries.clear_statistics_log()


async def _preload(connection: asyncpg.Connection, queries: Queries, count: int) -> None:
    for start in range(0, count, PRELOAD_BATCH):
        size = min(PRELOAD_BATCH, count - start)
        await queries.enqueue([ENTRYPOINT] * size, [f"preloaded {start + n}".encode() for n in range(size)], [0] * size)
    # As clawnsole's preload does: the drain starts on fresh statistics.
    await connection.execute("VACUUM ANALYZE pgqueuer")


def _tail(path: Path) -> str:
    lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"


@dataclass
class Workers:
    """Running `pgq run` processes and their logs."""

    processes: list[subprocess.Popen[bytes]]
    logs: list[Path]

    def check(self) -> None:
        """Stop waiting at once when a worker died (a bad install, a refused connection)."""
        for process, log in zip(self.processes, self.logs, strict=True):
            if process.poll() is not None:
                raise RuntimeError(f"a pgq worker exited early ({process.returncode}): {_tail(log)}")

    def tail(self) -> str:
        return _tail(self.logs[0])


@contextmanager
def workers(dsn: str, count: int, env: dict[str, str] | None = None) -> Iterator[Workers]:
    """`count` `pgq run` processes, stopped with SIGTERM (pgqueuer's graceful shutdown) at the end."""
    running = Workers([], [Path(tempfile.mkstemp(prefix="pgq-bench-worker-", suffix=".log")[1]) for _ in range(count)])
    pgq = Path(sys.executable).parent / "pgq"
    here = str(Path(__file__).resolve().parent)
    child_env = os.environ | {"PGDSN": dsn, "PYTHONPATH": here} | (env or {})
    try:
        for log in running.logs:
            with open(log, "wb") as output:
                running.processes.append(
                    subprocess.Popen(
                        [str(pgq), "run", "pgqueuer_side:consumer"],
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        env=child_env,
                        cwd=here,
                    )
                )
        yield running
        running.check()
    finally:
        for process in running.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in running.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in running.logs:
            log.unlink(missing_ok=True)


async def throughput(dsn: str, items: int, processes: int, repeats: int) -> dict[str, Any]:
    """Drain `items` preloaded jobs with `processes` consumers, `repeats` times; each run's finish times."""
    connection, queries = await _connect(dsn)
    runs = []
    try:
        for _ in range(repeats):
            await _reset(queries)
            await _preload(connection, queries, items)
            with workers(dsn, processes) as running:
                deadline = time.monotonic() + 60 + items / 200
                while True:
                    done = await connection.fetchval("SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'")
                    if done >= items:
                        break
                    running.check()
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"pgq workers did not finish {items} jobs in time: {running.tail()}")
                    await asyncio.sleep(0.1)
            # A job's completion is logged (and it leaves the queue) when the consumer's status buffer flushes:
            # the log row's `created` is the database clock at that moment, as clawnsole's `finished_at` is.
            finished = await connection.fetch(
                "SELECT extract(epoch FROM created)::float8 AS at FROM pgqueuer_log WHERE status = 'successful'"
            )
            first_pick = await connection.fetchval(
                "SELECT extract(epoch FROM min(created))::float8 FROM pgqueuer_log WHERE status = 'picked'"
            )
            runs.append({"finished": [float(r["at"]) for r in finished], "first_pick": float(first_pick)})
        await _reset(queries)
    finally:
        await connection.close()
    return {"runs": runs}


async def enqueue(dsn: str, single: int, batch: int, batches: int, repeats: int) -> dict[str, Any]:
    """Items/s of single-job `Queries.enqueue` calls, then of calls with `batch` jobs, on one connection."""
    connection, queries = await _connect(dsn)
    try:
        await _reset(queries)
        for n in range(WARM_UP_CALLS):
            await queries.enqueue(ENTRYPOINT, f"warm-up {n}".encode())
        single_runs = []
        for _ in range(repeats):
            began = time.perf_counter()
            for n in range(single):
                await queries.enqueue(ENTRYPOINT, f"item {n}".encode())
            single_runs.append(single / (time.perf_counter() - began))
        entrypoints = [ENTRYPOINT] * batch
        payloads: list[bytes | None] = [f"item {n}".encode() for n in range(batch)]
        priorities = [0] * batch
        await queries.enqueue(entrypoints, payloads, priorities)
        batch_runs = []
        for _ in range(repeats):
            began = time.perf_counter()
            for _ in range(batches):
                await queries.enqueue(entrypoints, payloads, priorities)
            batch_runs.append(batch * batches / (time.perf_counter() - began))
        await _reset(queries)
    finally:
        await connection.close()
    return {"single": single_runs, "batch": batch_runs}


async def latency(dsn: str, samples: int, gap: float) -> dict[str, Any]:
    """One idle consumer; jobs enqueued one at a time `gap` seconds apart; seconds from enqueue to handler start."""
    connection, queries = await _connect(dsn)
    starts = Path(tempfile.mkstemp(prefix="pgq-bench-starts-")[1])
    sent: dict[int, float] = {}
    try:
        await _reset(queries)
        with workers(dsn, 1, {STARTS_ENV: str(starts)}) as running:
            # Warm up until the consumer has handled a job, so it is started, connected and idle.
            deadline = time.monotonic() + 60
            while not starts.read_text().strip():
                running.check()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the pgq worker never started a job: {running.tail()}")
                await queries.enqueue(ENTRYPOINT, b"warm-up")
                await asyncio.sleep(0.2)
            await asyncio.sleep(0.3)  # let the warm-up jobs finish, so every sample finds the consumer idle
            warm = len(starts.read_text().splitlines())
            for n in range(samples):
                await asyncio.sleep(gap)
                began = time.time()
                sent[int((await queries.enqueue(ENTRYPOINT, f"latency {n}".encode()))[0])] = began
            deadline = time.monotonic() + 30
            while len(starts.read_text().splitlines()) < warm + len(sent) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        started = {int(i): float(t) for i, t in (line.split() for line in starts.read_text().splitlines())}
        await _reset(queries)
    finally:
        starts.unlink(missing_ok=True)
        await connection.close()
    delays = [started[i] - t for i, t in sent.items() if i in started]
    if len(delays) < len(sent):
        raise RuntimeError(f"only {len(delays)} of {len(sent)} jobs were started")
    return {"delays": delays}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("figure", choices=["throughput", "enqueue", "latency"])
    parser.add_argument("--dsn", required=True, help="postgresql:// URL of the scratch database")
    parser.add_argument("--items", type=int, default=30_000)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single", type=int, default=2_000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--samples", type=int, default=250)
    parser.add_argument("--gap", type=float, default=0.020)
    args = parser.parse_args(argv)
    if args.figure == "throughput":
        result = asyncio.run(throughput(args.dsn, args.items, args.processes, args.repeats))
    elif args.figure == "enqueue":
        result = asyncio.run(enqueue(args.dsn, args.single, args.batch, args.batches, args.repeats))
    else:
        result = asyncio.run(latency(args.dsn, args.samples, args.gap))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
