"""Applies the numbered SQL files in `clawnsole/migrations/` in order, once each, under an advisory lock.

Each file runs in its own transaction with `search_path` set to the Clawnsole schema, and is recorded in
the `schema_migrations` ledger with a checksum, so running migrate twice, or from two processes at once,
is safe.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

from clawnsole.db.connect import connect
from clawnsole.errors import ClawnsoleError

_LEDGER = """
CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationState:
    """A migration and whether (and when) this schema has it."""

    version: str
    name: str
    applied_at: str | None


def available() -> list[Migration]:
    """The migrations this version of Clawnsole ships, oldest first."""
    found = []
    for entry in resources.files("clawnsole").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append(Migration(version, rest.removesuffix(".sql"), entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def latest_version() -> str:
    """The version a schema must be at for this library to use it."""
    return available()[-1].version


def _lock_key(schema: str) -> int:
    # A stable 63-bit key per schema, so two schemas in one database migrate independently.
    return int.from_bytes(hashlib.sha256(f"clawnsole-migrate:{schema}".encode()).digest()[:8], "big") >> 1


def _applied(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> dict[str, tuple[str, str]]:
    exists = conn.execute("SELECT to_regclass(%s)", [f"{sql.Identifier(schema).as_string(None)}.schema_migrations"])
    row = exists.fetchone()
    if row is None or row[0] is None:
        return {}
    query = sql.SQL("SELECT version, checksum, applied_at::text FROM {}.schema_migrations").format(
        sql.Identifier(schema)
    )
    return {str(v): (str(c), str(a)) for v, c, a in conn.execute(query)}


def status(conninfo: str, schema: str) -> list[MigrationState]:
    """Every shipped migration with its applied time (None while pending)."""
    with connect(conninfo) as conn:
        applied = _applied(conn, schema)
    return [MigrationState(m.version, m.name, applied.get(m.version, (None, None))[1]) for m in available()]


def migrate(conninfo: str, schema: str) -> list[str]:
    """Apply every pending migration; returns the versions applied by this call."""
    done: list[str] = []
    with connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [_lock_key(schema)])
        try:
            with conn.transaction():
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
                conn.execute(sql.SQL(_LEDGER).format(schema=sql.Identifier(schema)))
            applied = _applied(conn, schema)
            for migration in available():
                if migration.version in applied:
                    if applied[migration.version][0] != migration.checksum:
                        raise ClawnsoleError(
                            f"migration {migration.version}_{migration.name} changed after it was applied"
                        )
                    continue
                with conn.transaction():
                    conn.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
                    conn.execute(migration.sql.encode())
                    conn.execute(
                        sql.SQL(
                            "INSERT INTO {}.schema_migrations (version, name, checksum) VALUES (%s, %s, %s)"
                        ).format(sql.Identifier(schema)),
                        [migration.version, migration.name, migration.checksum],
                    )
                done.append(migration.version)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [_lock_key(schema)])
    return done
