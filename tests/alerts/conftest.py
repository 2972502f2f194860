"""Fixtures of the alert tests: the Alerts API on this test's database, the database's clock, and items and
their events written with explicit times (so each condition is checked against a known history)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from clawnsole.alerts.api import Alerts
from clawnsole.queue import WorkQueue
from tests.scheduler.conftest import sql

__all__ = ["History", "sql"]


@pytest.fixture
def alerts(wq: WorkQueue) -> Iterator[Alerts]:
    yield Alerts(wq)


class History:
    """Writes items and events straight into the tables, at times relative to `now`."""

    def __init__(self, db_url: str) -> None:
        self.db_url = db_url
        self.now: datetime = sql(db_url, "SELECT date_trunc('second', now())")[0][0]

    def at(self, seconds_ago: float) -> datetime:
        return self.now - timedelta(seconds=seconds_ago)

    def item(self, queue: str = "ops", kind: str | None = None, status: str = "pending", **columns: Any) -> int:
        # Due a second before `now` (the tests' clock, truncated to the second: behind the server's).
        columns = {"queue": queue, "kind": kind, "title": "t", "status": status, "run_at": self.at(1)} | columns
        if status == "claimed":
            columns.setdefault("lease_expires_at", self.now + timedelta(minutes=5))
            columns.setdefault("claimed_at", self.now)
        if status in ("done", "failed", "cancelled"):
            columns.setdefault("finished_at", self.now)
        names = ", ".join(columns)
        marks = ", ".join(f"%({k})s" for k in columns)
        return int(
            sql(self.db_url, f"INSERT INTO clawnsole.items ({names}) VALUES ({marks}) RETURNING id", columns)[0][0]
        )

    def event(self, item_id: int, event: str, seconds_ago: float, detail: dict[str, Any] | None = None) -> None:
        sql(
            self.db_url,
            "INSERT INTO clawnsole.item_events (item_id, event, at, detail) VALUES (%s, %s, %s, %s)",
            [item_id, event, self.at(seconds_ago), None if detail is None else Jsonb(detail)],
        )

    def attempt(self, job: str, ok: bool, seconds_ago: float, runtime: float = 1.0, error: str = "boom") -> int:
        """One finished attempt of a job (a kind in queue `ops`): its claim, then done or failed."""
        item = self.item("ops", job, "done" if ok else "failed")
        self.event(item, "claimed", seconds_ago + runtime)
        self.event(item, "done" if ok else "failed", seconds_ago, None if ok else {"error": error})
        return item


@pytest.fixture
def history(db_url: str) -> History:
    return History(db_url)


def outbox(db_url: str) -> list[tuple[Any, ...]]:
    """The outbox rows: (alert_id, channel, kind, message), in id order."""
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT alert_id, channel, kind, message FROM clawnsole.alert_outbox ORDER BY id"
        ).fetchall()
