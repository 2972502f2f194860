"""Frozen result objects of the stats operations."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from clawnsole.models import Event


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class KindStats:
    """How the items of one queue and kind ran over a window of time (seconds for the times).

    `claimed`: attempts started; `done`; `failed`: dead letters; `retried`: attempts that ended in a retry
    (a failure with attempts left, or an expired lease); `success_rate`: done / (done + failed), None when
    neither happened. Run time is claim → outcome of the same attempt; wait time is enqueue → first claim.
    """

    queue: str
    kind: str | None
    claimed: int
    done: int
    failed: int
    retried: int
    success_rate: float | None
    run_p50: float | None
    run_p95: float | None
    wait_p50: float | None
    wait_p95: float | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> KindStats:
        done, failed = int(row["done"]), int(row["failed"])
        return cls(
            queue=row["queue"],
            kind=row["kind"],
            claimed=int(row["claimed"]),
            done=done,
            failed=failed,
            retried=int(row["retried"]),
            success_rate=None if done + failed == 0 else done / (done + failed),
            run_p50=_seconds(row["run_p50"]),
            run_p95=_seconds(row["run_p95"]),
            wait_p50=_seconds(row["wait_p50"]),
            wait_p95=_seconds(row["wait_p95"]),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StepStats:
    """Time a handler spent in one named step, for the items of one queue and kind (seconds)."""

    queue: str
    kind: str | None
    step: str
    count: int
    total_seconds: float
    p50: float
    p95: float

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> StepStats:
        return cls(
            queue=row["queue"],
            kind=row["kind"],
            step=str(row["step"]),
            count=int(row["count"]),
            total_seconds=float(row["total_seconds"] or 0.0),
            p50=float(row["p50"] or 0.0),
            p95=float(row["p95"] or 0.0),
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TailEvent(Event):
    """One event of the history as `tail` shows it: the event, with its item's queue and kind."""

    queue: str | None
    kind: str | None

    def line(self) -> str:
        """One readable line: time, event, item, queue/kind, agent, detail (JSON, so it stays on one line)."""
        where = self.queue or "?"
        if self.kind:
            where += f"/{self.kind}"
        parts = [self.at.isoformat(timespec="milliseconds"), f"{self.event:<15}", f"#{self.item_id}", where]
        if self.agent:
            parts.append(f"by {self.agent}")
        if self.detail:
            parts.append(json.dumps(self.detail, ensure_ascii=False, default=str))
        # json.dumps escapes control characters; an agent name is checked text but may still hold some.
        return "  ".join(parts).replace("\n", "\\n").replace("\r", "\\r")
