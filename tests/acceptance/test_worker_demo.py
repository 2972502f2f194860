"""`examples/two-workers-demo.py`, the README's first command, runs green against a fresh database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import Cli

DEMO = Path(__file__).resolve().parents[2] / "examples" / "two-workers-demo.py"


def test_the_two_workers_demo_passes_and_shows_the_final_state(cli: Cli) -> None:
    result = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=240, env=cli.env())
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "seeded demo-two-workers-" in out and "demo passed" in out
    assert "FAIL" not in out
    for state in ("done", "failed", "pending"):
        assert f" {state} " in out


def test_the_demo_migrates_a_database_that_has_no_schema_yet(empty_db_url: str) -> None:
    env = Cli(empty_db_url).env()
    result = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
