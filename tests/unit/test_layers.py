"""The architecture reads bottom-up: each layer imports only those below it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "clawnsole"

# module prefix -> imports it must never make
FORBIDDEN = {
    "clawnsole.db": ("typer", "clawnsole.cli", "clawnsole.worker", "clawnsole.queue", "clawnsole.ops"),
    "clawnsole.ops": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.queue": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.models": ("typer", "psycopg", "clawnsole.cli"),
    "clawnsole.validate": ("typer", "psycopg", "clawnsole.cli"),
    "clawnsole.errors": ("typer", "psycopg", "clawnsole."),
    "clawnsole.config": ("typer", "psycopg", "clawnsole.cli"),
    "clawnsole.worker": ("typer", "clawnsole.cli"),
    "clawnsole.scheduler": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.schedule": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.schedules": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.embedded": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.listen": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.bench": ("typer", "clawnsole.cli"),
}


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((name, path))
    return found


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_module_imports_only_from_layers_below(module: str, path: Path) -> None:
    for prefix, banned in FORBIDDEN.items():
        if module == prefix or module.startswith(prefix + ".") or module.startswith(prefix + "_"):
            bad = sorted(i for i in _imports(path) for b in banned if i == b.rstrip(".") or i.startswith(b))
            assert not bad, f"{module} must not import {bad}"
