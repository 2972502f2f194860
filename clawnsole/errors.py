"""The small hierarchy of errors Clawnsole raises instead of raw driver errors."""

from __future__ import annotations


class ClawnsoleError(Exception):
    """Base of every error Clawnsole raises on purpose."""

    exit_code = 1


class InvalidInput(ClawnsoleError):
    """A value given by the caller is not acceptable; nothing was written."""

    exit_code = 2

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Conflict(ClawnsoleError):
    """The item is not in a state that allows the operation (e.g. finishing a finished item)."""

    exit_code = 3


class LeaseLost(Conflict):
    """The caller no longer holds the item's lease: another worker claimed it, or it was recovered."""


class QueueDraining(Conflict):
    """The queue is draining (`clawnsole queue drain`): enqueues are refused until it is resumed; nothing was
    written."""

    def __init__(self, queue: str) -> None:
        super().__init__(f"queue {queue} is draining: enqueues are refused until `clawnsole queue resume {queue}`")
        self.queue = queue


class NotFound(ClawnsoleError):
    """No item (or schedule) has that id or name."""

    exit_code = 4


class Unauthorized(ClawnsoleError):
    """The HTTP API refused the token: none given, unknown, expired or revoked (401), or it lacks the scope
    the operation needs (403). A code of its own, 6, so a script can tell "fix the token" from "retry"."""

    exit_code = 6


class DatabaseError(ClawnsoleError):
    """The database refused a statement for a reason other than bad input or a lost connection (a
    statement timeout, a read-only server, a disk full, ...). Nothing of the statement was kept."""

    exit_code = 5


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached, or the connection to it was lost.

    `lost` is True when the connection broke while a statement was in flight: that statement may have
    committed before the reply was lost (see README, "Guarantees").
    """

    def __init__(self, message: str, *, lost: bool = False) -> None:
        super().__init__(message)
        self.lost = lost


class SchemaMissing(DatabaseUnavailable):
    """The Clawnsole schema is absent or older than this version: run `clawnsole migrate`."""
