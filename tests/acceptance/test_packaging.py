"""A real wheel (not only an editable install) carries the migrations and the named statements."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_ships_migrations_and_queries(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob("clawnsole-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped_migrations = {p.name for p in (ROOT / "clawnsole" / "migrations").glob("*.sql")}
    assert shipped_migrations and {f"clawnsole/migrations/{m}" for m in shipped_migrations} <= names
    assert "clawnsole/db/queries/items.sql" in names
    assert "clawnsole/py.typed" in names
