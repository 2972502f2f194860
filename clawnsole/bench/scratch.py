"""The benchmark's throwaway schema, and a description of the machine it ran on.

Everything the benchmark writes lives in one schema of its own (default `clawnsole_bench`), created fresh,
migrated, and dropped at the end. A schema that already holds items, or tables that are not Clawnsole's, is
refused unless the caller says `--yes`: the benchmark must never eat a real queue by accident.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from clawnsole.db.connect import connect
from clawnsole.db.migrate import available, migrate
from clawnsole.db.sql import statements
from clawnsole.errors import Conflict, InvalidInput

# The server settings that move queue numbers most; recorded with every run.
KEY_SETTINGS = (
    "shared_buffers",
    "synchronous_commit",
    "fsync",
    "full_page_writes",
    "wal_level",
    "wal_buffers",
    "max_wal_size",
    "checkpoint_timeout",
    "max_connections",
    "work_mem",
    "random_page_cost",
    "effective_cache_size",
    "jit",
    "autovacuum",
    "autovacuum_naptime",
)
_CREATE_TABLE = re.compile(r"CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.IGNORECASE)
_FORBIDDEN = {"public", "information_schema"}
_OURS = {"items", "item_events", "schema_migrations"}
# Set on the scratch schema when created, so the leftovers of an interrupted run are recognised as ours.
MARK = "clawnsole bench scratch schema: dropped at the end of the run"


@dataclass(frozen=True)
class Scratch:
    """A scratch schema on one server: where every scenario runs."""

    url: str
    schema: str

    def statement(self, name: str) -> str:
        """The named runtime statement, for this schema."""
        return statements(self.schema)[name]

    def connect(self, *, autocommit: bool = True) -> psycopg.Connection[tuple[Any, ...]]:
        return connect(self.url, autocommit=autocommit)

    def qualified(self, table: str) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(table))

    def check(self, *, allow_existing: bool) -> None:
        """Refuse a schema that looks like real data, unless allowed."""
        if self.schema in _FORBIDDEN or self.schema.startswith("pg_"):
            raise InvalidInput("schema", f"the benchmark drops its schema at the end; it never uses {self.schema!r}")
        if allow_existing:
            return
        with self.connect() as conn:
            mark = conn.execute("SELECT obj_description(to_regnamespace(%s), 'pg_namespace')", [self.schema])
            row = mark.fetchone()
            if row is not None and row[0] == MARK:
                return
            tables = [
                str(r[0])
                for r in conn.execute(
                    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
                    [self.schema],
                )
            ]
            if not tables:
                return
            foreign = sorted(set(tables) - _OURS - _later_tables())
            if foreign:
                raise Conflict(
                    f"schema {self.schema!r} holds tables that are not Clawnsole's ({', '.join(foreign[:5])}); "
                    "pick another --schema, or pass --yes to let the benchmark drop it"
                )
            count = 0
            if "items" in tables:
                row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(self.qualified("items"))).fetchone()
                count = int(row[0]) if row else 0
            # Schedules and their runs are real data too, even before any item exists.
            filled = [
                t
                for t in tables
                if t not in ("items", "schema_migrations")
                and conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {})").format(self.qualified(t))).fetchone()
                == (True,)
            ]
            if count or filled:
                held = ", ".join([f"{count} work item(s)"] * bool(count) + [f"rows in {t}" for t in filled])
                raise Conflict(
                    f"schema {self.schema!r} holds {held}; the benchmark drops its schema, so pick another "
                    "--schema, or pass --yes to let it drop them"
                )

    def create(self) -> None:
        """Drop whatever is left of the schema and migrate it afresh."""
        self.drop()
        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
            conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(sql.Identifier(self.schema), sql.Literal(MARK)))
        migrate(self.url, self.schema)

    def reset(self) -> None:
        """Empty every table between scenarios (TRUNCATE also leaves no dead rows behind)."""
        with self.connect() as conn:
            tables = [
                str(r[0])
                for r in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> 'schema_migrations'",
                    [self.schema],
                )
            ]
            if tables:
                conn.execute(
                    sql.SQL("TRUNCATE {} RESTART IDENTITY CASCADE").format(
                        sql.SQL(", ").join(self.qualified(t) for t in tables)
                    )
                )

    def drop(self) -> None:
        with self.connect() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))


def _later_tables() -> set[str]:
    """Tables created by the shipped migrations (they are Clawnsole's too)."""

    found: set[str] = set()
    for migration in available():
        found.update(name.lower() for name in _CREATE_TABLE.findall(migration.sql))
    return found


def machine(url: str) -> dict[str, Any]:
    """The machine and server the run measured: cores, memory, load, PostgreSQL version and key settings."""
    info: dict[str, Any] = {
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "memory_mb": _memory_mb(),
    }
    with connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT version(), current_setting('server_version_num')::int").fetchone()
        assert row is not None
        info["postgres"] = {"version": str(row[0]), "version_num": int(row[1])}
        info["postgres"]["settings"] = {
            str(name): _pretty(setting, unit)
            for name, setting, unit in conn.execute(
                "SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%s) ORDER BY name", [list(KEY_SETTINGS)]
            )
        }
        host = conn.info.host
        info["postgres"]["local"] = host.startswith("/") or host in {"localhost", "127.0.0.1", "::1"}
    return info


def _pretty(setting: Any, unit: Any) -> str:
    """A setting as people write it: shared_buffers in MB rather than in 8 kB pages."""
    if unit == "8kB":
        return f"{int(setting) * 8 // 1024}MB"
    if unit == "kB" and int(setting) % 1024 == 0:
        return f"{int(setting) // 1024}MB"
    return f"{setting}{unit or ''}"


def _memory_mb() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None
