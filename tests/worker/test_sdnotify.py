"""The sd_notify client against real unix datagram sockets, as systemd would listen on them."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from clawnsole.worker.sdnotify import Notifier


def _receive(sock: socket.socket) -> set[str]:
    sock.settimeout(5)
    return set(sock.recv(4096).decode().split("\n"))


@pytest.fixture
def path_socket() -> Iterator[tuple[str, socket.socket]]:
    # A short directory: unix socket paths are limited to about 100 bytes.
    directory = tempfile.mkdtemp(prefix="sdn-", dir="/tmp")
    path = str(Path(directory) / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield path, sock
    sock.close()
    shutil.rmtree(directory)


def test_ready_status_stopping_and_watchdog_reach_a_path_socket(path_socket: tuple[str, socket.socket]) -> None:
    path, sock = path_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000"})
    assert notifier.enabled and notifier.watchdog_interval == 3.0
    assert notifier.ready("0 in flight")
    assert _receive(sock) == {"READY=1", "STATUS=0 in flight", f"MAINPID={os.getpid()}"}
    assert notifier.status("2 in flight, 5 done")
    assert _receive(sock) == {"STATUS=2 in flight, 5 done"}
    assert notifier.watchdog()
    assert _receive(sock) == {"WATCHDOG=1"}
    assert notifier.stopping("draining")
    assert _receive(sock) == {"STOPPING=1", "STATUS=draining"}
    notifier.close()


def test_an_abstract_socket_name_starting_with_at_is_supported() -> None:
    name = f"clawnsole-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    try:
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready("up")
        assert "READY=1" in _receive(sock)
    finally:
        sock.close()


def test_without_notify_socket_everything_is_a_quiet_no_op() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert not notifier.ready("x") and not notifier.watchdog() and not notifier.stopping("y")


def test_watchdog_meant_for_another_process_is_ignored(path_socket: tuple[str, socket.socket]) -> None:
    path, _ = path_socket
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert notifier.watchdog_interval is None
    assert not notifier.watchdog()


def test_a_vanished_manager_does_not_raise() -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": f"@clawnsole-nobody-{uuid.uuid4().hex}"})
    assert notifier.ready("x") is False
