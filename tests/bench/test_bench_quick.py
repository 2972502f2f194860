"""`clawnsole bench --quick` end to end against the test database: it runs, prints the table, writes the
JSON and leaves nothing behind. Benchmarks print figures; these tests never assert a timing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest

from clawnsole.bench.stats import percentile, steady_rate, summary_ms
from tests.conftest import Cli

SCENARIOS = ("ceiling", "enqueue", "throughput", "latency", "backlog", "cli")


def _schema_exists(db_url: str, name: str) -> bool:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", [name]).fetchone() == (True,)


def test_quick_bench_runs_every_scenario_prints_the_table_writes_json_and_cleans_up(
    cli: Cli, db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    result = cli("bench", "--quick", "--json", str(out), timeout=170)
    assert result.code == 0, result.stderr
    header = result.stdout.splitlines()[0].split()
    assert header[:4] == ["SCENARIO", "MEASURE", "VALUE", "UNIT"]
    for scenario in SCENARIOS:
        assert any(line.startswith(scenario) for line in result.stdout.splitlines()), scenario

    report = json.loads(out.read_text())
    assert report["format"] == "clawnsole-bench/1"
    assert report["mode"] == "quick"
    assert report["scenarios"] == list(SCENARIOS)
    assert report["errors"] == {}
    machine = report["machine"]
    assert machine["cores"] >= 1
    assert machine["postgres"]["version"].startswith("PostgreSQL")
    assert {"shared_buffers", "synchronous_commit", "fsync"} <= set(machine["postgres"]["settings"])
    figures = report["figures"]
    assert {f["scenario"] for f in figures} == set(SCENARIOS)
    for figure in figures:
        assert set(figure) >= {"scenario", "measure", "value", "unit", "ceiling", "ratio", "detail"}
        assert figure["value"] > 0
    # Everything but the ceiling rows themselves and the backlog's own churn is compared with a ceiling.
    assert all(f["ratio"] is not None for f in figures if f["scenario"] not in ("ceiling",))

    assert not _schema_exists(db_url, "clawnsole_bench")


def test_bench_refuses_a_schema_that_holds_items_and_leaves_it_alone(cli: Cli, db_url: str) -> None:
    assert cli("workqueue", "enqueue", "--queue", "real", "--title", "keep me").code == 0

    result = cli("bench", "--quick", "--schema", "clawnsole", "enqueue")

    assert result.code == 3
    assert "holds 1 work item(s)" in result.stderr and "--yes" in result.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM clawnsole.items").fetchone() == (1,)


def test_bench_rejects_an_unknown_scenario(cli: Cli) -> None:
    result = cli("bench", "--quick", "nosuch")
    assert result.code == 2
    assert "nosuch" in result.stderr


def test_a_pgbench_on_path_that_fails_gives_way_to_the_psycopg_loop_with_a_one_line_note(
    cli: Cli, tmp_path: Path
) -> None:
    fake = tmp_path / "bin" / "pgbench"
    fake.parent.mkdir()
    tried = tmp_path / "tried"
    fake.write_text(f"#!/bin/sh\necho run >> {tried}\necho 'pgbench: fatal: this one is broken' >&2\nexit 1\n")
    fake.chmod(0o755)
    out = tmp_path / "bench.json"

    result = cli(
        "bench", "--quick", "--json", str(out), "ceiling", PATH=f"{fake.parent}{os.pathsep}{cli.env()['PATH']}"
    )

    assert result.code == 0, result.stderr
    assert tried.exists(), "the fake pgbench was not the one found"
    # (The temporary paths name this test, hence pgbench: leave out the line saying where the JSON went.)
    notes = [line for line in result.stderr.splitlines() if "pgbench" in line and not line.startswith("wrote ")]
    assert len(notes) == 1, notes
    assert str(fake) in notes[0] and "this one is broken" in notes[0] and "psycopg loop" in notes[0]
    report = json.loads(out.read_text())
    assert report["errors"] == {}
    assert report["settings"]["ceiling_driver"] == "psycopg loop"
    methods = {f["measure"]: f["detail"]["method"] for f in report["figures"]}
    assert methods["enqueue single"] == "psycopg loop"
    assert methods["claim 100 then complete_many, 2 clients"] == "psycopg loop"
    assert all(f["value"] > 0 for f in report["figures"])


def test_percentiles_use_the_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert summary_ms([0.001, 0.002, 0.003])["max"] == 3.0


def test_steady_rate_leaves_out_the_first_and_last_tenth() -> None:
    # 100 completions one per 10 ms, then a straggler a second later: the tail does not drag the rate down.
    times = [n * 0.01 for n in range(100)] + [2.0]
    assert steady_rate(times) == pytest.approx(100.0, rel=0.02)
