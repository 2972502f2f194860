"""Frozen result objects of the incident tools: workers, leases, releases, the doctor's checks, a claim plan."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from clawnsole.models import jsonable

OK = "OK"
WARN = "WARN"
FAIL = "FAIL"
_RANK = {OK: 0, WARN: 1, FAIL: 2}


@dataclass(frozen=True)
class WorkerInfo:
    """One row of the workers registry, with whether the worker is alive or gone (and why)."""

    agent: str
    host: str | None
    pid: int | None
    queues: list[str]
    version: str | None
    concurrency: int | None
    heartbeat_seconds: float | None
    started_at: datetime
    last_seen_at: datetime
    stopped_at: datetime | None
    in_flight: int
    done_count: int
    failed_count: int
    # None while alive; "stopped" after a clean stop; "silent" when not seen for 3 heartbeat intervals.
    gone: str | None
    last_seen_seconds: float

    @property
    def state(self) -> str:
        """Alive or gone."""
        return "alive" if self.gone is None else "gone"

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> WorkerInfo:
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    def to_json(self) -> dict[str, Any]:
        return jsonable(asdict(self)) | {"state": self.state}  # type: ignore[no-any-return]


@dataclass(frozen=True)
class HeldLease:
    """A claimed item seen from the lease side: who holds it, since when, how long is left, last progress."""

    id: int
    queue: str
    kind: str | None
    title: str
    agent: str | None
    attempts: int
    max_attempts: int
    claimed_at: datetime | None
    lease_expires_at: datetime
    # Negative once the lease has expired (claim-next recovers it on its next pass over the queue).
    lease_left_seconds: float
    progress_note: str | None
    progress_percent: int | None
    progress_at: datetime | None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> HeldLease:
        return cls(**{f.name: row[f.name] for f in fields(cls)})

    def to_json(self) -> dict[str, Any]:
        return jsonable(asdict(self))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Released:
    """An item an operator took back: now pending, with its attempt count after the release."""

    id: int
    queue: str
    attempts: int
    holder: str | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Check:
    """One doctor check: OK, WARN or FAIL, what was found, and what to do about it."""

    name: str
    status: str
    detail: str
    hint: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return jsonable(asdict(self))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class DoctorReport:
    """Every check of one doctor run; `status` is the worst of them."""

    checks: list[Check]

    @property
    def status(self) -> str:
        return max((c.status for c in self.checks), key=_RANK.__getitem__, default=OK)

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "checks": [c.to_json() for c in self.checks]}


@dataclass(frozen=True)
class ClaimPlan:
    """The plan of the live claim statement for these queues, from an EXPLAIN run in a rolled-back
    transaction: nothing was claimed. `plan` is PostgreSQL's text, or its JSON document."""

    queues: list[str]
    limit: int
    analyzed: bool
    plan: Any
    uses_claimable_index: bool

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"rolled_back": True}
