"""A real `clawnsole serve` app per test module: uvicorn on 127.0.0.1 and a free port, in a thread, against a
database of the module's own (cloned from the session's migrated template).

Fixtures: `api` (the running server: `.url`, `.db_url`), `token(name, scopes, queues=None, expires=None)`
(creates a token through the library and returns its secret; a name already taken in this module gets a
`-2`, `-3`, … suffix), `client` (an httpx.Client on the server, no token), `as_token(secret)` (a client
sending that bearer token), `web_wq` (a sync WorkQueue on the module's database), and `queue` (a queue name
unique to the test, so tests of one module never see each other's items).
"""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import uvicorn
from psycopg import sql

from clawnsole.errors import Conflict
from clawnsole.queue import WorkQueue
from clawnsole.tokens.api import Tokens
from clawnsole.web.app import create_app
from tests.conftest import SCHEMA
from tests.worker.helpers import wait_for

# The browser flows and the OpenAPI fuzz exercise the HTTP and page layers, which behave the same on every
# PostgreSQL version: .ci/run runs them on its first pass only (CLAWNSOLE_SKIP_BROWSER=1 on the second).
_ONCE = ("dashboard", "test_openapi.py")


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if os.environ.get("CLAWNSOLE_SKIP_BROWSER") and collection_path.name in _ONCE:
        return True
    return None


@dataclass(frozen=True)
class Api:
    """A running server: its base URL and the URL of the database it serves."""

    url: str
    db_url: str
    server: uvicorn.Server


def _clone(server_url: str, template: str) -> tuple[str, str]:
    name = f"clawnsole_w_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template)))
    return name, psycopg.conninfo.make_conninfo(server_url, dbname=name)


def serve_in_thread(app: object) -> tuple[uvicorn.Server, threading.Thread, str]:
    """Start uvicorn for `app` on a free loopback port (the socket bound here, so no port race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)  # type: ignore[arg-type]
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="uvicorn")
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), timeout=30, what="the server to start")
    assert server.started, "the server did not start"
    return server, thread, f"http://127.0.0.1:{port}"


def stop_server(server: uvicorn.Server, thread: threading.Thread) -> None:
    """Ask uvicorn to exit and wait for its thread."""
    server.should_exit = True
    thread.join(timeout=30)


@pytest.fixture(scope="module")
def api(server_url: str, template_db: str) -> Iterator[Api]:
    """The module's server and database."""
    name, url = _clone(server_url, template_db)
    server, thread, base = serve_in_thread(create_app(url, SCHEMA))
    try:
        yield Api(base, url, server)
    finally:
        stop_server(server, thread)
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def web_wq(api: Api) -> Iterator[WorkQueue]:
    """A sync WorkQueue on the module's database (to set up and check state beside the API)."""
    with WorkQueue(api.db_url, schema=SCHEMA, agent="web-test") as queue:
        yield queue


TokenMaker = Callable[..., str]


@pytest.fixture(scope="module")
def token(web_wq: WorkQueue) -> TokenMaker:
    """`token(name, scopes, queues=None, expires=None) -> secret`, created through the library."""
    tokens = Tokens(web_wq)

    def make(name: str, scopes: Sequence[str], queues: Sequence[str] | None = None, expires: str | None = None) -> str:
        for n in range(1, 1000):
            try:
                return tokens.create(name if n == 1 else f"{name}-{n}", scopes, queues=queues, expires=expires).secret
            except Conflict:
                continue
        raise AssertionError(f"no free token name like {name!r}")

    return make


@pytest.fixture
def client(api: Api) -> Iterator[httpx.Client]:
    """An httpx client on the server, sending no token."""
    with httpx.Client(base_url=api.url, timeout=30) as http:
        yield http


@pytest.fixture
def as_token(api: Api) -> Iterator[Callable[[str], httpx.Client]]:
    """`as_token(secret)`: an httpx client on the server sending that bearer token (closed after the test)."""
    made: list[httpx.Client] = []

    def make(secret: str) -> httpx.Client:
        http = httpx.Client(base_url=api.url, timeout=60, headers={"Authorization": f"Bearer {secret}"})
        made.append(http)
        return http

    yield make
    for http in made:
        http.close()


@pytest.fixture
def queue() -> str:
    """A queue name of this test's own."""
    return f"q-{uuid.uuid4().hex[:10]}"
