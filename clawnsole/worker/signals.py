"""SIGTERM/SIGINT: the first asks the worker to stop gracefully, any later one to stop at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType


def install(stop: Callable[[bool], None]) -> Callable[[], None]:
    """Route SIGTERM and SIGINT to `stop(immediate)`; returns a function restoring the previous handlers.

    The handler only starts a thread: a Python signal handler runs in the main thread between two bytecodes,
    possibly while that thread holds one of the worker's locks, so it must not take any of them itself.
    """
    received = 0

    def handle(signum: int, frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        threading.Thread(target=stop, args=(received > 1,), name="clawnsole-stop", daemon=True).start()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
