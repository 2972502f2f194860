"""Fixtures of the scheduler tests: the Schedules API on this test's database, and plain SQL on the side."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from clawnsole.queue import WorkQueue
from clawnsole.schedules.api import Schedules


@pytest.fixture
def schedules(wq: WorkQueue) -> Iterator[Schedules]:
    yield Schedules(wq)


def sql(db_url: str, query: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement on its own connection (committed) and return its rows."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        cur = conn.execute(query, params)
        return cur.fetchall() if cur.description else []
