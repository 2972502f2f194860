"""Loads the named statements in `queries/*.sql` once into a registry, per schema."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from psycopg import sql as pgsql

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def _templates() -> dict[str, str]:
    """Every statement by name, with `{schema}` still in place."""
    statements: dict[str, str] = {}
    for entry in sorted(resources.files("clawnsole.db").joinpath("queries").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        parts = _NAME.split(entry.read_text(encoding="utf-8"))
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in statements:
                raise RuntimeError(f"statement {name!r} is defined twice")
            statements[name] = _without_comments(body).strip().rstrip(";")
    return statements


# A comment that ends a line of SQL: `--` after the code, with no quote after it (a literal never holds one).
_TRAILING = re.compile(r"\s+--[^'\n]*$", re.MULTILINE)


def _without_comments(body: str) -> str:
    """The statement as sent: without its comment lines and trailing comments. The comments are for the
    reader of the .sql file; sent, they only cost bytes — and psycopg caches its parse of a query only up to
    4 KiB of text, so a long commented statement (the claim) was parsed again on every call."""
    lines = (line for line in body.splitlines() if not line.lstrip().startswith("--"))
    return _TRAILING.sub("", "\n".join(lines))


@cache
def statements(schema: str) -> dict[str, str]:
    """Every statement by name, with the schema name quoted in place."""
    quoted = pgsql.Identifier(schema).as_string(None)
    return {name: body.replace("{schema}", quoted) for name, body in _templates().items()}


def statement(schema: str, name: str) -> str:
    """One statement by name, for the given schema."""
    return statements(schema)[name]
