"""The scheduler daemon in-process: LISTEN wakes it, it survives a lost database, stop ends it promptly."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from clawnsole import WorkQueue
from clawnsole.listen import Listener
from clawnsole.schedules.api import Schedules
from clawnsole.schedules.runtime import APPLICATION_NAME, run_scheduler
from tests.scheduler.conftest import sql


class _Watch(logging.Handler):
    """Sets an event when the scheduler logs a message containing some text."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, threading.Event] = {}

    def expect(self, text: str) -> threading.Event:
        return self.seen.setdefault(text, threading.Event())

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        for text, event in list(self.seen.items()):
            if text in message:
                event.set()


@pytest.fixture
def watch() -> Iterator[_Watch]:
    handler = _Watch()
    logger = logging.getLogger("clawnsole.scheduler")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


def test_the_daemon_wakes_on_a_schedule_change_reconnects_after_an_outage_and_stops_promptly(
    db_url: str, wq: WorkQueue, watch: _Watch
) -> None:
    started = watch.expect("started")
    lost = watch.expect("lost the database")
    stop = threading.Event()
    # A 60 s backstop: anything faster than that below was woken by NOTIFY or by the next due time.
    daemon = threading.Thread(target=run_scheduler, args=(db_url, "clawnsole", stop), kwargs={"max_sleep": 60.0})
    daemon.start()
    try:
        assert started.wait(15)
        schedules = Schedules(wq)
        with Listener.for_queues(db_url, "clawnsole", ["first"]) as items:
            begun = time.monotonic()
            schedules.add("tick-tock", queue="first", title="t", every="1s")
            assert items.wait(10), "the daemon did not fire the new schedule"
            assert time.monotonic() - begun < 10
        schedules.pause("tick-tock")

        started.clear()
        sql(
            db_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = %s",
            [APPLICATION_NAME],
        )
        assert lost.wait(15) and started.wait(15), "the daemon did not reconnect"
        with Listener.for_queues(db_url, "clawnsole", ["second"]) as items:
            schedules.add("after-outage", queue="second", title="t", every="1s")
            assert items.wait(10), "the reconnected daemon did not fire"
    finally:
        stopped_at = time.monotonic()
        stop.set()
        daemon.join(10)
    assert not daemon.is_alive()
    assert time.monotonic() - stopped_at < 2


def test_the_daemon_raises_when_the_schema_is_missing(empty_db_url: str) -> None:
    from clawnsole.errors import SchemaMissing

    with pytest.raises(SchemaMissing):
        run_scheduler(empty_db_url, "clawnsole", threading.Event())
