"""Counts of what a worker has done, for its STATUS= line and its final log line."""

from __future__ import annotations

import threading


class Tally:
    """Thread-safe counters: claimed, done, failed attempts, released, lease lost."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.claimed = 0
        self.done = 0
        self.failed = 0
        self.released = 0
        self.lost = 0

    def add(self, *, claimed: int = 0, done: int = 0, failed: int = 0, released: int = 0, lost: int = 0) -> None:
        with self._lock:
            self.claimed += claimed
            self.done += done
            self.failed += failed
            self.released += released
            self.lost += lost

    def summary(self, in_flight: int) -> str:
        with self._lock:
            return (
                f"{in_flight} in flight, {self.done} done, {self.failed} failed, "
                f"{self.released} released, {self.lost} lease lost"
            )

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {
                "claimed": self.claimed,
                "done": self.done,
                "failed": self.failed,
                "released": self.released,
                "lease_lost": self.lost,
            }
