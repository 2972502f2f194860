"""A minimal sd_notify client: datagrams to $NOTIFY_SOCKET, so `Type=notify` units see READY, STATUS,
STOPPING and WATCHDOG. Written here rather than depending on libsystemd: the protocol is one datagram."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Mapping

# Variables systemd hands the service itself; a handler child must not inherit them, or its own messages
# (or its own sd_notify library) would speak for the worker.
SYSTEMD_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def socket_address(value: str) -> str:
    """The address to send to: a leading '@' names a Linux abstract socket (a leading NUL byte)."""
    return "\0" + value[1:] if value.startswith("@") else value


class Notifier:
    """Sends state changes to the service manager; every method is a no-op when not run by one."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self._address = socket_address(address) if address else None
        self._watchdog_usec = watchdog_usec
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier systemd asked for in the environment (NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID)."""
        env = os.environ if environ is None else environ
        watchdog: int | None = None
        pid = env.get("WATCHDOG_PID")
        # WATCHDOG_PID names the process the watchdog is meant for; a forked helper must not ping for it.
        if env.get("WATCHDOG_USEC", "").isdigit() and (not pid or pid == str(os.getpid())):
            watchdog = int(env["WATCHDOG_USEC"]) or None
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog)

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds within which systemd expects WATCHDOG=1, or None when no watchdog is configured."""
        return None if self._watchdog_usec is None or not self.enabled else self._watchdog_usec / 1_000_000

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=value` lines in one datagram; False when not supervised or the send failed."""
        if self._address is None:
            return False
        message = "\n".join(assignments).encode()
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.sendto(message, self._address)
                return True
            except OSError:
                # The manager went away or the socket is not ours to write: notifications are advisory.
                return False

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def stopping(self, status: str) -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1") if self.watchdog_interval is not None else False

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None
