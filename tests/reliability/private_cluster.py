"""A private PostgreSQL cluster a test may stop, restart and starve of connections.

The shared test server is never touched: stopping it would break every other test running at once. Each
cluster lives in its own 0755 temp directory (as root, the server runs as an unprivileged user who must
reach it) and is reached only through its Unix socket. The worker processes come from harness.py.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from psycopg import sql

from clawnsole.db.migrate import migrate
from clawnsole.embedded import PORT, EmbeddedPostgres, find_bindir
from tests.conftest import SCHEMA
from tests.reliability.harness import WorkerProcess, connect, status_counts

# A throwaway cluster on a machine shared with other tests: no fsync, so its checkpoints (at every shutdown
# the scenarios cause) cost no disk flushes. A fast shutdown still writes everything out, so a restart
# keeps every committed row; only an operating-system crash could lose data here.
SPEED_OVER_DURABILITY = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def binaries_missing() -> str | None:
    """Why no private cluster can be made here (no PostgreSQL binaries), or None when one can."""
    try:
        find_bindir()
    except Exception as error:  # EmbeddedUnavailable, or a CLAWNSOLE_PG_BINDIR naming nothing
        return str(error)
    return None


class PrivateCluster:
    """One throwaway cluster; `url()` is the superuser's, `url(user=...)` another role's."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.server = EmbeddedPostgres(data_dir=base / "pg")

    def url(self, dbname: str = "postgres", user: str = "postgres") -> str:
        host = quote(str(self.server.data_dir), safe="")
        return f"postgresql://{user}@/{dbname}?host={host}&port={PORT}"

    def stop(self) -> None:
        """A fast shutdown, as `systemctl stop postgresql` does: open sessions are cut."""
        self.server.stop()

    def start(self) -> None:
        self.server.start()

    def configure(self, settings: Mapping[str, str]) -> None:
        """ALTER SYSTEM each setting; reload, or restart when one only applies at server start."""
        with connect(self.url()) as conn:
            for name, value in settings.items():
                conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(sql.Identifier(name), sql.Literal(value)))
            row = conn.execute(
                "SELECT count(*) FROM pg_settings WHERE name = ANY(%s) AND context = 'postmaster'", [list(settings)]
            ).fetchone()
            conn.execute("SELECT pg_reload_conf()")
        if row is not None and row[0] > 0:
            self.stop()
            self.start()

    def create_database(self, name: str, owner: str | None = None) -> str:
        """A new database (owned by `owner`, a login role created here), migrated as that owner; its URL."""
        with connect(self.url()) as conn:
            if owner is not None:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(owner)))
            conn.execute(
                sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner or "postgres"))
            )
        url = self.url(dbname=name, user=owner or "postgres")
        migrate(url, SCHEMA)
        return url

    def server_started_at(self, dbname: str = "postgres") -> datetime:
        """When the running server started, on the database's clock (what the event history is stamped by)."""
        with connect(self.url(dbname)) as conn:
            row = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
        assert row is not None
        return row[0]  # type: ignore[no-any-return]


@contextmanager
def private_cluster(settings: Mapping[str, str] | None = None) -> Iterator[PrivateCluster]:
    """A running private cluster (with `settings` applied), destroyed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="clawnsole-fault-"))
    base.chmod(0o755)  # mkdtemp makes it 0700: the server user must be able to traverse it
    cluster = PrivateCluster(base)
    try:
        cluster.server.ensure_running()
        cluster.configure({**SPEED_OVER_DURABILITY, **(settings or {})})
        yield cluster
    finally:
        try:
            cluster.server.destroy()
        finally:
            shutil.rmtree(base, ignore_errors=True)


def require_alive(running: Iterable[WorkerProcess]) -> bool:
    """True; or fail at once, with the end of its log, when a worker has exited: no point waiting on."""
    for worker in running:
        if not worker.alive():
            tail = worker.log.read_text(errors="replace")[-2000:]
            raise AssertionError(f"worker {worker.agent} exited with {worker.process.returncode}:\n{tail}")
    return True


def done_count(url: str, queue: str) -> int:
    return status_counts(url, queue).get("done", 0)


def connections_by_worker(url: str) -> dict[str, int]:
    """Open connections per worker agent (from the application name each worker sets)."""
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE application_name LIKE 'clawnsole-worker:%' GROUP BY 1"
        ).fetchall()
    return {str(name).removeprefix("clawnsole-worker:"): int(count) for name, count in rows}


def reconnected_since(url: str, since: datetime) -> dict[str, datetime]:
    """Per worker agent, when its oldest connection opened after `since` was opened (the database's clock)."""
    with connect(url) as conn:
        rows = conn.execute(
            "SELECT application_name, min(backend_start) FROM pg_stat_activity "
            "WHERE application_name LIKE 'clawnsole-worker:%%' AND backend_start >= %s GROUP BY 1",
            [since],
        ).fetchall()
    return {str(name).removeprefix("clawnsole-worker:"): at for name, at in rows}
