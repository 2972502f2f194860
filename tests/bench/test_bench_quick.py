"""`clawnsole bench --quick` end to end against the test database: it runs, prints the table, writes the
JSON and leaves nothing behind. Benchmarks print figures; these tests never assert a timing."""

from __future__ import annotations

import json
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
