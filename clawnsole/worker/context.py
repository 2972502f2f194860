"""What a handler receives besides its item: progress reporting and the signal to stop."""

from __future__ import annotations

import threading
from collections.abc import Callable

from clawnsole.models import Item

ProgressFn = Callable[["Context", "str | None", "int | None"], bool]


class Cancelled(Exception):
    """The handler was told to stop (lease lost, timeout or shutdown); its outcome is not recorded."""


class Context:
    """Per-item handle given to a handler as its second argument.

    `cancelled` is set when the worker no longer wants the outcome: the lease was lost or the worker is
    shutting down. Python threads cannot be killed, so long handlers should check it (or wait on it instead
    of sleeping); `--exec` children are terminated for them.
    """

    __slots__ = ("_progress", "agent", "cancel_reason", "cancelled", "item", "kill_now", "lease_token")

    def __init__(self, item: Item, lease_token: str, agent: str, progress: ProgressFn) -> None:
        self.item = item
        self.lease_token = lease_token
        self.agent = agent
        self.cancelled = threading.Event()
        self.cancel_reason: str | None = None
        # True when the worker cannot wait for a polite SIGTERM (a second Ctrl-C): children get SIGKILL.
        self.kill_now = False
        self._progress = progress

    def progress(self, note: str | None = None, percent: int | None = None) -> bool:
        """Record a progress note/percent and renew the lease; False when the database is unreachable.

        Raises LeaseLost when the item is no longer ours (then stop: the outcome will not be recorded).
        """
        return self._progress(self, note, percent)

    def raise_if_cancelled(self) -> None:
        """Raise Cancelled when the worker has asked this handler to stop."""
        if self.cancelled.is_set():
            raise Cancelled(self.cancel_reason or "cancelled")

    def cancel(self, reason: str, *, kill_now: bool = False) -> None:
        """Ask the handler to stop (the first reason given wins)."""
        if self.cancel_reason is None:
            self.cancel_reason = reason
        self.kill_now = self.kill_now or kill_now
        self.cancelled.set()
