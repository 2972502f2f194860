"""Real local receivers for alert notices: an HTTP server standing in for Slack, Discord and webhooks, and an
SMTP server (aiosmtpd) receiving email. Both listen on 127.0.0.1 and record what they were sent."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Request:
    """One request the HTTP receiver took."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class HttpReceiver:
    """Answers POSTs with the next status of `statuses` (then `default`), recording each request."""

    statuses: list[int] = field(default_factory=list)
    default: int = 200
    reply: bytes = b"ok"
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def received(self, path: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def _answer(self, request: Request) -> int:
        with self._lock:
            self.requests.append(request)
            return self.statuses.pop(0) if self.statuses else self.default


@contextmanager
def http_receiver(statuses: list[int] | None = None, *, reply: bytes = b"ok") -> Iterator[HttpReceiver]:
    """A running HTTP receiver on 127.0.0.1 (port 0: the kernel picks a free one)."""
    receiver = HttpReceiver(statuses=list(statuses or []), reply=reply)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = receiver._answer(Request(self.path, dict(self.headers.items()), body))
            payload = receiver.reply if status < 300 else b"upstream exploded at " + self.path.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (a receiver that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Mailbox:
    """What the SMTP receiver took: one (envelope sender, recipients, raw message) per mail."""

    mails: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    port: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


@contextmanager
def smtp_receiver(*, tls_context: ssl.SSLContext | None = None) -> Iterator[Mailbox]:
    """A running SMTP server on 127.0.0.1 (TLS from the first byte when given a context: smtps)."""
    mailbox = Mailbox()
    port = closed_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port, ssl_context=tls_context)
    controller.start()
    mailbox.port = port
    try:
        yield mailbox
    finally:
        controller.stop()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost and its key, made with the openssl command."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key
