"""The worker runtime: claim items, run handlers, renew leases, stop gracefully. No CLI code here."""

from __future__ import annotations

from clawnsole.worker.context import Cancelled, Context
from clawnsole.worker.handlers import Handler, HandlerFailed, Registry, handler, load_callable
from clawnsole.worker.runtime import SideTask, Worker, WorkerOptions

__all__ = [
    "Cancelled",
    "Context",
    "Handler",
    "HandlerFailed",
    "Registry",
    "SideTask",
    "Worker",
    "WorkerOptions",
    "handler",
    "load_callable",
]
