"""Two operators changing different alert settings at the same moment both count: a change waits for the
other's lock on the settings row and then reads what it committed (stepped with a lock held from a second
connection, no sleeping)."""

from __future__ import annotations

import threading

import psycopg

from clawnsole.alerts.api import Alerts
from clawnsole.queue import WorkQueue
from tests.conftest import SCHEMA
from tests.worker.helpers import wait_for


def _waiting_on_a_lock(db_url: str) -> bool:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ).fetchone()
    return bool(row and row[0])


def test_a_settings_change_made_meanwhile_is_not_written_over(wq: WorkQueue, db_url: str) -> None:
    alerts = Alerts(wq)
    alerts.update_settings(min_interval_seconds=300, slack_channel="#ops")
    done: list[object] = []
    with psycopg.connect(db_url) as holder:
        # The other operator's change, not committed yet: its transaction holds the row.
        holder.execute(f"UPDATE {SCHEMA}.alert_settings SET slack_channel = '#incidents'")
        worker = threading.Thread(target=lambda: done.append(alerts.update_settings(min_interval_seconds=60)))
        worker.start()
        wait_for(lambda: _waiting_on_a_lock(db_url), timeout=10, what="the change to wait for the row")
        holder.commit()
    worker.join(timeout=10)
    settings = alerts.settings()
    assert (settings.min_interval_seconds, settings.slack_channel) == (60, "#incidents")
