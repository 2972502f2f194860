"""The architecture reads bottom-up: each layer imports only those below it."""

from __future__ import annotations

import ast
import sys
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
    "clawnsole.schedules": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.retention": ("typer", "clawnsole.cli", "clawnsole.worker", "clawnsole.schedules"),
    "clawnsole.stats": ("typer", "clawnsole.cli", "clawnsole.worker", "clawnsole.schedules"),
    "clawnsole.deadletters": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.tokens": ("typer", "clawnsole.cli", "clawnsole.worker", "clawnsole.web"),
    "clawnsole.feed": ("typer", "clawnsole.cli", "clawnsole.worker", "clawnsole.web"),
    "clawnsole.client": ("typer", "clawnsole.cli", "clawnsole.worker", "clawnsole.web"),
    "clawnsole.web": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.mcp_server": ("typer", "clawnsole.cli", "clawnsole.web"),
    "clawnsole.queues": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.dependencies": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.incidents": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.alerts": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.item_options": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.embedded": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.listen": ("typer", "clawnsole.cli", "clawnsole.worker"),
    "clawnsole.bench": ("typer", "clawnsole.cli"),
}


def _within(module: str, banned: str) -> bool:
    """Whether `module` is `banned` or inside it (`clawnsole.cli.x` is in `clawnsole.cli`, `clawnsole.client`
    is not); a name ending in a dot bans everything under it."""
    if banned.endswith("."):
        return module.startswith(banned) or module == banned.rstrip(".")
    return module == banned or module.startswith(banned + ".")


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((name, path))
    return found


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
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
            bad = sorted(i for i in _imports(path) for b in banned if _within(i, b))
            assert not bad, f"{module} must not import {bad}"


def _imports_run_on_import(path: Path) -> set[str]:
    """The modules a module imports when it is itself imported: its top-level statements (and the `if`
    and `try` blocks among them), not its functions and not its `if TYPE_CHECKING:` block."""
    names: set[str] = set()

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
            elif isinstance(node, ast.If) and ast.unparse(node.test) not in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(ast.parse(path.read_text()).body)
    return names


# What a module may import at import time, beyond the standard library: the command line loads the library
# inside the commands that use it, so `clawnsole workqueue enqueue` pays for neither the worker nor the
# schedules (tests/unit/test_startup_imports.py checks the real command); the package names its public
# names and imports them on first use.
IMPORTED_ON_IMPORT = {
    "clawnsole": (),
    "clawnsole.__main__": ("clawnsole.cli.main",),
    "clawnsole.cli": ("typer", "clawnsole.cli."),
}


def _starts_fast(module: str) -> tuple[str, ...] | None:
    if module in IMPORTED_ON_IMPORT:
        return IMPORTED_ON_IMPORT[module]
    return IMPORTED_ON_IMPORT["clawnsole.cli"] if module.startswith("clawnsole.cli.") else None


@pytest.mark.parametrize(
    ("module", "path"),
    [(m, p) for m, p in _modules() if _starts_fast(m) is not None],
    ids=[m for m, _ in _modules() if _starts_fast(m) is not None],
)
def test_command_line_modules_import_the_library_only_inside_the_commands_that_use_it(module: str, path: Path) -> None:
    allowed = _starts_fast(module) or ()
    stdlib = sys.stdlib_module_names | {"__future__"}
    bad = sorted(
        name
        for name in _imports_run_on_import(path)
        if name.split(".")[0] not in stdlib and not any(name == a.rstrip(".") or name.startswith(a) for a in allowed)
    )
    assert not bad, f"{module} imports {bad} when it is imported; import them inside the function that uses them"
