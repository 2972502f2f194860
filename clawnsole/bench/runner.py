"""Runs the chosen scenarios in a fresh scratch schema, the ceiling first, and always drops the schema."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from clawnsole.bench import api as bench_api
from clawnsole.bench import ceiling as raw
from clawnsole.bench.report import Report
from clawnsole.bench.scenarios import FULL, NEEDS_WEB, QUICK, SCENARIOS, WORKER_CONCURRENCY, Bench, sizes_json
from clawnsole.bench.scratch import Scratch, machine
from clawnsole.db.connect import redact
from clawnsole.errors import InvalidInput


def choose(names: Sequence[str], *, web_missing: str | None = None) -> list[str]:
    """The scenarios to run, in their fixed order (the ceiling first, so every figure can be compared).

    `web_missing`: why the `[web]` extra cannot be used here. A default run then leaves out the scenarios
    needing it; naming one of them is refused with that reason."""
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise InvalidInput("scenario", f"unknown {', '.join(unknown)} (choose from {', '.join(SCENARIOS)})")
    if web_missing is not None:
        if needing := [n for n in names if n in NEEDS_WEB]:
            raise InvalidInput("scenario", f"{', '.join(needing)} cannot run: {web_missing}")
        if not names:
            return [n for n in SCENARIOS if n not in NEEDS_WEB]
    return [n for n in SCENARIOS if not names or n in names]


def run(
    url: str,
    schema: str,
    names: Sequence[str],
    *,
    quick: bool,
    allow_existing: bool,
    use_pgbench: bool,
    log: Callable[[str], None],
) -> Report:
    """Run the scenarios and return the report; the scratch schema is gone afterwards whatever happened."""
    web_missing = bench_api.web_missing()
    chosen = choose(names, web_missing=web_missing)
    if web_missing is not None and not names:
        log(f"note: skipping {', '.join(NEEDS_WEB)}: {web_missing}")
    scratch = Scratch(url, schema)
    scratch.check(allow_existing=allow_existing)
    sizes = QUICK if quick else FULL
    pgbench = raw.find_pgbench() if use_pgbench else None
    if pgbench is not None and (problem := raw.pgbench_problem(pgbench, url)) is not None:
        # A broken pgbench, or one of another PostgreSQL that cannot talk to this server, must not cost the
        # ceiling: the psycopg loop measures it too, only with Python's overhead in it.
        log(f"note: {pgbench} does not work here ({redact(problem)}); the ceiling uses the psycopg loop")
        pgbench = None
    report = Report(
        mode="quick" if quick else "full",
        machine=machine(url),
        scenarios=chosen,
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        settings={
            "schema": schema,
            "worker_concurrency": WORKER_CONCURRENCY,
            "ceiling_driver": "pgbench" if pgbench else "psycopg loop",
            "pgbench": pgbench,
            "sizes": sizes_json(sizes),
        },
    )
    bench = Bench(scratch, sizes, report, "ceiling" in chosen, pgbench is not None, log)
    began = time.perf_counter()
    scratch.create()
    try:
        for name in chosen:
            log(f"{name} …")
            step = time.perf_counter()
            try:
                SCENARIOS[name](bench)
            except Exception as error:  # one failed scenario must not hide the others' figures
                report.errors[name] = f"{type(error).__name__}: {error}"
                log("".join(traceback.format_exception(error)).rstrip())
            log(f"{name}: {time.perf_counter() - step:.1f}s")
    finally:
        scratch.drop()
        report.duration_s = time.perf_counter() - began
    return report
