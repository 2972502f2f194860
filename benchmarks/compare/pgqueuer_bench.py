"""Clawnsole next to pgqueuer, measured side by side in one run on one PostgreSQL: `make compare`.

Installs a pinned pgqueuer into a scratch venv (reused when it already holds that version), creates a scratch
database, and measures, figure by figure and each library with its default settings:

- drain throughput with 1 and 2 worker processes and a no-op handler (items/s, steady 10-90 % window);
- enqueue from the asyncio library on one connection: single-item calls, and calls of 100 items (items/s);
- idle pickup latency, enqueue -> handler start, p50 and p99 (ms).

Clawnsole's figures come from this checkout (`clawnsole.bench.scenarios`, the code behind `clawnsole bench`);
pgqueuer's from `pgqueuer_side.py`, run by the scratch venv's interpreter. Both sides' samples go through the
same statistics (`clawnsole.bench.stats`). Prints one table and writes JSON; drops the scratch database at the
end, also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import types
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from clawnsole.bench import scenarios
from clawnsole.bench.report import Figure, Report
from clawnsole.bench.scratch import Scratch, machine
from clawnsole.bench.stats import median, steady_rate, summary_ms
from clawnsole.db.connect import redact
from clawnsole.models import NewItem
from clawnsole.queue import AsyncWorkQueue

PGQUEUER_VERSION = "1.6.0"
PGQUEUER_REQUIREMENTS = (
    f"pgqueuer[asyncpg]=={PGQUEUER_VERSION}",  # asyncpg: the driver pgqueuer's README and benchmark use
    # pgqueuer 1.6.0's `pgq run` dies at start with typer 0.29 (its --log-level parser hands a str where the
    # code wants the enum: AttributeError: 'str' object has no attribute 'name'); 0.28 works.
    "typer<0.29",
)
HERE = Path(__file__).resolve().parent
SIDE = HERE / "pgqueuer_side.py"
SCHEMA = "clawnsole_bench"
RATE = "items/s"
MS = "ms"


@dataclass(frozen=True)
class Sizes:
    """How much work each figure does, the same for both libraries."""

    throughput_items: int
    repeats: int  # runs per throughput and enqueue figure; the median is reported
    enqueue_single: int  # single-item calls per run
    enqueue_batch: int  # items per call
    enqueue_batches: int  # calls per run
    latency_samples: int
    latency_gap: float  # seconds between enqueues


DEFAULT = Sizes(30_000, 3, 2_000, 100, 100, 250, 0.020)
QUICK = Sizes(2_000, 1, 200, 100, 10, 20, 0.020)


@dataclass
class Row:
    """One figure of both libraries; the ratio is clawnsole / pgqueuer (above 1 is better for rates only)."""

    figure: str
    unit: str
    clawnsole: float | None = None
    pgqueuer: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def better(self) -> str:
        return "higher" if self.unit == RATE else "lower"

    @property
    def ratio(self) -> float | None:
        if self.clawnsole is None or not self.pgqueuer:
            return None
        return self.clawnsole / self.pgqueuer

    def to_json(self) -> dict[str, Any]:
        ratio = self.ratio
        return {
            "figure": self.figure,
            "unit": self.unit,
            "better": self.better,
            "clawnsole": None if self.clawnsole is None else round(self.clawnsole, 3),
            "pgqueuer": None if self.pgqueuer is None else round(self.pgqueuer, 3),
            "ratio": None if ratio is None else round(ratio, 3),
            "detail": self.detail,
        }


@dataclass
class Run:
    """Everything one comparison run produces."""

    sizes: Sizes
    rows: dict[str, Row] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    load: dict[str, list[float]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    duration_s: float = 0.0

    def row(self, figure: str, unit: str) -> Row:
        return self.rows.setdefault(figure, Row(figure, unit))

    def note_load(self, moment: str) -> None:
        self.load[moment] = [round(x, 2) for x in os.getloadavg()]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "clawnsole-compare/1",
            "peer": "pgqueuer",
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 1),
            "versions": self.versions,
            "machine": self.machine,
            "load_average": self.load,
            "sizes": asdict(self.sizes),
            "figures": [r.to_json() for r in self.rows.values()],
            "errors": self.errors,
        }

    def table(self) -> str:
        """figure | clawnsole | pgqueuer | clawnsole/pgqueuer, plain text (it gets pasted into issues)."""
        rows = [["FIGURE", "CLAWNSOLE", "PGQUEUER", "CLAWNSOLE/PGQUEUER"]]
        for r in self.rows.values():
            ratio = r.ratio
            rows.append(
                [
                    f"{r.figure} ({r.unit}, {r.better} is better)",
                    _number(r.clawnsole, r.unit),
                    _number(r.pgqueuer, r.unit),
                    "" if ratio is None else f"{ratio:.2f}x",
                ]
            )
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
            for row in rows
        ]
        lines.append(
            f"clawnsole {self.versions.get('clawnsole', '?')}, pgqueuer {self.versions.get('pgqueuer', '?')}"
            f" (asyncpg {self.versions.get('asyncpg', '?')}), PostgreSQL"
            f" {self.machine.get('postgres', {}).get('version_num', '?')}, {self.machine.get('cores', '?')} cores"
        )
        lines.append(
            "load average (1/5/15 min): "
            + "; ".join(f"{moment} {'/'.join(f'{x:.2f}' for x in values)}" for moment, values in self.load.items())
        )
        lines.extend(f"{name}: FAILED: {message}" for name, message in self.errors.items())
        return "\n".join(lines)


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if unit == RATE else f"{value:.2f}"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the scratch venv and the scratch database --------------------------------------------------------------


def _venv_versions(python: Path) -> dict[str, str]:
    """Versions of the packages that matter in the venv, or {} when it is missing or broken."""
    if not python.exists():
        return {}
    probe = (
        "import importlib.metadata as m, json, sys\n"
        "found = {}\n"
        "for name in ('pgqueuer', 'asyncpg', 'typer'):\n"
        "    try: found[name] = m.version(name)\n"
        "    except m.PackageNotFoundError: pass\n"
        "found['python'] = sys.version.split()[0]\n"
        "print(json.dumps(found))\n"
    )
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=False, timeout=60)
    return dict(json.loads(done.stdout)) if done.returncode == 0 else {}


def _usable(versions: dict[str, str]) -> bool:
    typer_minor = tuple(int(p) for p in versions.get("typer", "0.99").split(".")[:2])
    return versions.get("pgqueuer") == PGQUEUER_VERSION and "asyncpg" in versions and typer_minor < (0, 29)


def ensure_venv(path: Path, *, fresh: bool) -> tuple[Path, dict[str, str]]:
    """The scratch venv's interpreter, with pgqueuer installed: reused when it already holds the pinned version."""
    python = path / "bin" / "python"
    if fresh and path.exists():
        subprocess.run(["rm", "-rf", "--", str(path)], check=True)
    versions = _venv_versions(python)
    if _usable(versions):
        _log(f"scratch venv {path}: pgqueuer {versions['pgqueuer']} already installed")
        return python, versions
    _log(f"scratch venv {path}: installing {' '.join(PGQUEUER_REQUIREMENTS)} …")
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=300)
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PGQUEUER_REQUIREMENTS],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    versions = _venv_versions(python)
    if pip.returncode != 0 or not _usable(versions):
        raise RuntimeError(f"could not install pgqueuer into {path}: {pip.stderr.strip()[-500:]}")
    return python, versions


def with_database(url: str, database: str) -> str:
    """The URL with its database replaced (asyncpg takes URLs only, so the result stays a URL)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise SystemExit(f"compare: --database-url must be a postgresql:// URL, not {redact(url)!r}")
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


def _admin(url: str, statement: sql.Composed) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


# --- the figures --------------------------------------------------------------------------------------------


def _side(python: Path, dsn: str, figure: str, *args: str) -> dict[str, Any]:
    """Run one pgqueuer figure in the scratch venv and return its raw samples."""
    # A session of its own, so an interrupted run can stop it together with the `pgq run` workers it started.
    side = subprocess.Popen(
        [str(python), str(SIDE), figure, "--dsn", dsn, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = side.communicate(timeout=900)
    except BaseException:
        os.killpg(side.pid, signal.SIGTERM)
        side.wait(timeout=60)
        raise
    if side.returncode != 0:
        lines = err.strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"pgqueuer_side.py {figure} exited {side.returncode}")
    return dict(json.loads(out))


def _clawnsole_figures(bench: scenarios.Bench, scenario: Callable[[scenarios.Bench], None]) -> list[Figure]:
    """Run one of `clawnsole bench`'s scenarios and return the figures it added."""
    before = len(bench.report.figures)
    scenario(bench)
    return bench.report.figures[before:]


def throughput(run: Run, bench: scenarios.Bench, python: Path, dsn: str) -> None:
    s = run.sizes
    for figure in _clawnsole_figures(bench, scenarios.throughput):
        count = 1 if figure.measure.startswith("1 ") else 2
        row = run.row(_throughput_name(count), RATE)
        row.clawnsole = figure.value
        row.detail["clawnsole"] = {"runs": figure.detail["runs"], "drain_s": round(figure.detail["drain_s"], 3)}
    for count in (1, 2):
        args = ["--items", str(s.throughput_items), "--processes", str(count), "--repeats", str(s.repeats)]
        runs = _side(python, dsn, "throughput", *args)["runs"]
        rates = [steady_rate(r["finished"]) for r in runs]
        drains = [max(r["finished"]) - r["first_pick"] for r in runs]
        row = run.row(_throughput_name(count), RATE)
        row.pgqueuer = median(rates)
        row.detail["pgqueuer"] = {"runs": [round(r) for r in rates], "drain_s": round(median(drains), 3)}
        _log(f"  pgqueuer: {_throughput_name(count)}: {row.pgqueuer:,.0f} items/s")


def _throughput_name(count: int) -> str:
    return f"drain, {count} worker process{'es' if count > 1 else ''}, no-op handler"


async def _clawnsole_enqueue(scratch: Scratch, s: Sizes) -> tuple[list[float], list[float]]:
    """Items/s of AsyncWorkQueue.enqueue, then of enqueue_many calls, on one connection (as pgqueuer's side)."""
    async with AsyncWorkQueue(scratch.url, schema=scratch.schema, agent="bench", max_connections=1) as wq:
        for n in range(20):
            await wq.enqueue(scenarios.QUEUE, f"warm-up {n}")
        single = []
        for _ in range(s.repeats):
            began = time.perf_counter()
            for n in range(s.enqueue_single):
                await wq.enqueue(scenarios.QUEUE, f"item {n}")
            single.append(s.enqueue_single / (time.perf_counter() - began))
        items = [NewItem(scenarios.QUEUE, f"item {n}") for n in range(s.enqueue_batch)]
        await wq.enqueue_many(items)
        batch = []
        for _ in range(s.repeats):
            began = time.perf_counter()
            for _ in range(s.enqueue_batches):
                await wq.enqueue_many(items)
            batch.append(s.enqueue_batch * s.enqueue_batches / (time.perf_counter() - began))
    return single, batch


def enqueue(run: Run, bench: scenarios.Bench, python: Path, dsn: str) -> None:
    s = run.sizes
    bench.scratch.reset()
    mine = asyncio.run(_clawnsole_enqueue(bench.scratch, s))
    bench.scratch.reset()
    args = ["--single", str(s.enqueue_single), "--batch", str(s.enqueue_batch), "--batches", str(s.enqueue_batches)]
    peer = _side(python, dsn, "enqueue", *args, "--repeats", str(s.repeats))
    names = ("enqueue, single-item calls, 1 connection", f"enqueue, calls of {s.enqueue_batch}, 1 connection")
    for name, clawnsole_runs, pgqueuer_runs in zip(names, mine, (peer["single"], peer["batch"]), strict=True):
        row = run.row(name, RATE)
        row.clawnsole, row.pgqueuer = median(clawnsole_runs), median(pgqueuer_runs)
        row.detail = {
            "clawnsole": {"runs": [round(r) for r in clawnsole_runs]},
            "pgqueuer": {"runs": [round(r) for r in pgqueuer_runs]},
        }
        _log(f"  {name}: clawnsole {row.clawnsole:,.0f}, pgqueuer {row.pgqueuer:,.0f} items/s")


def latency(run: Run, bench: scenarios.Bench, python: Path, dsn: str) -> None:
    s = run.sizes
    figures = _clawnsole_figures(bench, scenarios.latency)
    # The scenario puts the whole summary (p50/p95/p99/max/samples) on its p50 figure.
    mine = figures[0].detail
    delays = _side(python, dsn, "latency", "--samples", str(s.latency_samples), "--gap", str(s.latency_gap))["delays"]
    peer = summary_ms(delays)
    for key in ("p50", "p99"):
        row = run.row(f"idle pickup, enqueue -> handler start, {key}", MS)
        row.clawnsole, row.pgqueuer = float(mine[key]), float(peer[key])
        row.detail = {"clawnsole": dict(mine), "pgqueuer": peer}
    _log(f"  pgqueuer: pickup p50 {peer['p50']:.2f} ms, p99 {peer['p99']:.2f} ms")


FIGURES: dict[str, Callable[[Run, scenarios.Bench, Path, str], None]] = {
    "throughput": throughput,
    "enqueue": enqueue,
    "latency": latency,
}


# --- the run ------------------------------------------------------------------------------------------------


def compare(url: str, venv: Path, names: Sequence[str], sizes: Sizes, *, fresh_venv: bool) -> Run:
    """Run the chosen figures of both libraries in one scratch database, dropped at the end whatever happened."""
    run = Run(sizes, started_at=datetime.now(UTC).isoformat(timespec="seconds"))
    run.note_load("start")
    began = time.perf_counter()
    python, venv_versions = ensure_venv(venv, fresh=fresh_venv)
    run.versions = {"clawnsole": metadata.version("clawnsole"), **venv_versions}
    database = f"clawnsole_compare_{os.getpid()}"
    dsn = with_database(url, database)
    _admin(url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        run.machine = machine(dsn)
        # pgqueuer's schema as its README installs it: `pgq install`, default prefix, in the public schema.
        installed = subprocess.run(
            [str(python.parent / "pgq"), "--pg-dsn", dsn, "install"], capture_output=True, text=True, timeout=120
        )
        if installed.returncode != 0:
            raise RuntimeError(f"pgq install failed: {installed.stderr.strip()[-500:]}")
        scratch = Scratch(dsn, SCHEMA)
        scratch.create()
        bench_sizes = replace(
            scenarios.FULL,
            throughput_items=sizes.throughput_items,
            repeats=sizes.repeats,
            latency_samples=sizes.latency_samples,
            latency_gap=sizes.latency_gap,
        )
        report = Report(mode="compare", machine=run.machine, scenarios=list(names))
        bench = scenarios.Bench(scratch, bench_sizes, report, with_ceiling=False, use_pgbench=False, log=_log)
        for name in names:
            _log(f"{name} …")
            run.note_load(f"before {name}")
            step = time.perf_counter()
            try:
                FIGURES[name](run, bench, python, dsn)
            except Exception as error:  # one failed figure must not hide the others
                run.errors[name] = f"{type(error).__name__}: {error}"
                _log(f"{name}: FAILED: {run.errors[name]}")
            _log(f"{name}: {time.perf_counter() - step:.1f}s")
        run.note_load("end")
    finally:
        _admin(url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        run.duration_s = time.perf_counter() - began
    return run


def _stop_on_sigterm(signum: int, frame: types.FrameType | None) -> None:
    # Turned into an exception, so the `finally` blocks stop the workers and drop the scratch database.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("figures", nargs="*", help=f"some of {', '.join(FIGURES)} (default: all)")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("CLAWNSOLE_DATABASE_URL") or os.environ.get("DATABASE_URL"),
        help="a postgresql:// URL of a user who may create databases ($CLAWNSOLE_DATABASE_URL, $DATABASE_URL)",
    )
    parser.add_argument(
        "--venv",
        type=Path,
        default=Path(f"/tmp/clawnsole-compare-pgqueuer-{PGQUEUER_VERSION}"),
        help="the scratch venv for pgqueuer (created when missing, reused when it holds the pinned version)",
    )
    parser.add_argument("--fresh-venv", action="store_true", help="recreate the scratch venv")
    parser.add_argument("--json", type=Path, help="where to write the JSON (default: benchmarks/compare/results/)")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run each: a smoke test in seconds")
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("give --database-url (or set $CLAWNSOLE_DATABASE_URL)")
    if unknown := sorted(set(args.figures) - set(FIGURES)):
        parser.error(f"unknown figure {', '.join(unknown)} (choose from {', '.join(FIGURES)})")
    names = [n for n in FIGURES if not args.figures or n in args.figures]
    sizes = QUICK if args.quick else DEFAULT
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        run = compare(args.database_url, args.venv, names, sizes, fresh_venv=args.fresh_venv)
    except KeyboardInterrupt:
        _log("compare: interrupted; the scratch database was dropped")
        return 130
    path = args.json or HERE / "results" / f"{datetime.now(UTC):%Y-%m-%d}-pgqueuer-{PGQUEUER_VERSION}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run.to_json(), indent=2) + "\n", encoding="utf-8")
    print(run.table())
    print(f"JSON: {path} ({run.duration_s:.0f}s)")
    return 1 if run.errors else 0


if __name__ == "__main__":
    sys.exit(main())
