"""`clawnsole bench --quick` end to end against the test database: it runs, prints the table, writes the
JSON and leaves nothing behind. Benchmarks print figures; these tests never assert a timing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import psycopg
import pytest

from clawnsole.bench.runner import choose
from clawnsole.bench.stats import percentile, steady_rate, summary_ms
from clawnsole.errors import InvalidInput
from tests.conftest import Cli

SCENARIOS = ("ceiling", "enqueue", "throughput", "latency", "backlog", "cli", "api")


def _schema_exists(db_url: str, name: str) -> bool:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", [name]).fetchone() == (True,)


def test_quick_bench_runs_every_scenario_prints_the_table_writes_json_and_cleans_up(
    cli: Cli, db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    result = cli("bench", "--quick", "--json", str(out), timeout=200)
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


def test_bench_api_puts_each_http_figure_beside_the_librarys_from_the_same_run_and_stops_the_server(
    cli: Cli, db_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "bench.json"
    result = cli("bench", "--quick", "--json", str(out), "api", timeout=120)

    assert result.code == 0, result.stderr
    report = json.loads(out.read_text())
    # A server that failed to start, or did not exit 0 on SIGTERM, is an error of the scenario.
    assert report["errors"] == {}
    figures = {f["measure"]: f for f in report["figures"]}
    assert set(figures) == {"enqueue, 8 HTTP clients", "claim+done, 8 HTTP clients"}
    for measure, figure in figures.items():
        assert figure["scenario"] == "api" and figure["unit"] == "items/s"
        assert figure["value"] > 0 and figure["ceiling"] > 0, measure
        assert figure["ceiling_method"] == "library, 8 threads on one pool, same run"
        assert figure["ratio"] == pytest.approx(figure["value"] / figure["ceiling"], rel=0.01)
        # Both sides of the connection did work for every item (the server's CPU read from /proc).
        assert figure["detail"]["server_cpu_ms_per_item"] > 0 and figure["detail"]["clients_cpu_ms_per_item"] > 0
    lines = [line.strip() for line in result.stderr.splitlines() if line.strip().startswith("api ") and "/s (" in line]
    assert [line.split(":")[0] for line in lines] == ["api enqueue 8 clients", "api claim+done 8 clients"]
    assert all("% of the library's " in line for line in lines)
    assert not _schema_exists(db_url, "clawnsole_bench")


def test_without_the_web_extra_a_default_run_leaves_api_out_and_naming_it_is_refused_with_the_reason() -> None:
    reason = "the [web] extra is not installed (no module 'fastapi'): pip install 'clawnsole[web]'"

    assert choose([], web_missing=reason) == ["ceiling", "enqueue", "throughput", "latency", "backlog", "cli"]
    assert choose(["cli"], web_missing=reason) == ["cli"]
    assert choose([]) == list(SCENARIOS)
    with pytest.raises(InvalidInput) as refused:
        choose(["enqueue", "api"], web_missing=reason)
    assert refused.value.field == "scenario" and reason in str(refused.value)


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
