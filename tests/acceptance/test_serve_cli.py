"""`clawnsole token …`, `clawnsole audit` and `clawnsole serve` as real subprocesses."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import httpx
import psycopg

from tests.conftest import Cli
from tests.worker.helpers import wait_for


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_refuses_a_public_address_without_tls_or_a_proxy(cli: Cli) -> None:
    refused = cli("serve", "--host", "0.0.0.0", timeout=30)
    assert refused.code == 2
    assert refused.stderr.count("\n") == 1 and "host: 0.0.0.0 is not a loopback address" in refused.stderr
    half_tls = cli("serve", "--host", "0.0.0.0", "--tls-cert", "cert.pem", timeout=30)
    assert half_tls.code == 2 and "tls_key" in half_tls.stderr


def test_token_create_prints_the_secret_once_and_stores_only_its_hash(cli: Cli, db_url: str) -> None:
    made = cli("token", "create", "ci-bot", "--scope", "enqueue", "--queue", "builds", "--expires", "90d", "--json")
    assert made.code == 0, made.stderr
    secret = json.loads(made.stdout)["secret"]
    assert secret.startswith("cln_")
    assert json.loads(made.stdout)["queues"] == ["builds"]
    listed = cli("token", "list", "--json")
    assert secret not in listed.stdout and json.loads(listed.stdout)[0]["name"] == "ci-bot"
    with psycopg.connect(db_url) as conn:
        dump = json.dumps(conn.execute("SELECT row_to_json(t) FROM clawnsole.api_tokens t").fetchall())
    assert secret not in dump
    table = cli("token", "create", "human", "--scope", "read")
    assert table.code == 0 and table.stdout.count("cln_") == 1 and "only time" in table.stderr


def test_token_commands_refuse_bad_input_and_report_a_missing_token(cli: Cli) -> None:
    bad_scope = cli("token", "create", "x", "--scope", "root")
    assert bad_scope.code == 2 and "scope" in bad_scope.stderr
    bad_expiry = cli("token", "create", "x", "--scope", "read", "--expires", "soon")
    assert bad_expiry.code == 2 and "expires" in bad_expiry.stderr
    missing = cli("token", "revoke", "nobody")
    assert missing.code == 4
    bad_since = cli("audit", "--since", "yesterday")
    assert bad_since.code == 2 and "since" in bad_since.stderr
    assert cli("audit", "--since", "2026-01-01T00:00:00Z", "--json").stdout.strip() == "[]"
    assert cli("token", "list", "--json").stdout.strip() == "[]"


def test_serve_answers_then_stops_gracefully_on_sigterm_and_never_logs_the_token(cli: Cli, db_url: str) -> None:
    secret = json.loads(cli("token", "create", "agent-1", "--scope", "enqueue", "--json").stdout)["secret"]
    watcher = json.loads(cli("token", "create", "watcher", "--scope", "read", "--json").stdout)["secret"]
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "clawnsole", "serve", "--port", str(port)],
        env=cli.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return server.poll() is not None

        wait_for(ready, timeout=60, what="the server to answer")
        assert server.poll() is None
        made = httpx.post(
            f"{url}/api/v1/queues/builds/items",
            json={"title": "build 1", "instructions": "top secret"},
            headers={"Authorization": f"Bearer {secret}"},
            timeout=10,
        )
        assert made.status_code == 201
        # An open event stream must not hold the shutdown up.
        reader = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {watcher}"})
        events = reader.stream("GET", "/api/v1/events").__enter__()
        assert events.status_code == 200
        server.send_signal(signal.SIGTERM)
        started = time.monotonic()
        output, _ = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert server.returncode == 0, output
    assert time.monotonic() - started < 15
    reader.close()
    assert secret not in output and "top secret" not in output
    audit = cli("audit", "--token", "agent-1", "--json")
    assert [(r["action"], r["outcome"], r["target"]) for r in json.loads(audit.stdout)] == [
        ("item.enqueue", "ok", "queue:builds")
    ]
    assert "item.enqueue" in cli("audit", "--since", "1h").stdout
