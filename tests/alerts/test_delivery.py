"""The outbox sender against real PostgreSQL and real local receivers: retries, outages, isolation between
channels, concurrency, and secrets kept out of what is stored and logged."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from clawnsole.alerts import delivery
from clawnsole.alerts.channels import Channels
from clawnsole.alerts.delivery import Sender
from clawnsole.config import AlertChannelSettings
from clawnsole.queue import WorkQueue
from tests.alerts.receivers import closed_port, http_receiver

SCHEMA = "clawnsole"


def _notice(n: int = 1, **changes: Any) -> dict[str, Any]:
    return {
        "rule": "dlq-jobs",
        "severity": "high",
        "state": "fired",
        "subject": {"type": "queue", "name": f"ops-{n}"},
        "summary": f"{n} items in the dead-letter state",
        "details": {"dlq_size": n},
        "since": "2026-11-21T09:00:00+00:00",
        "item_ids": [n],
        "command": f"clawnsole dlq list --queue ops-{n}",
        "suppressed": 0,
    } | changes


def _write(db_url: str, channel: str, count: int = 1, **columns: Any) -> list[int]:
    """Outbox rows as the evaluation round writes them."""
    with psycopg.connect(db_url) as conn:
        ids = []
        for n in range(count):
            row = conn.execute(
                "INSERT INTO clawnsole.alert_outbox (alert_id, channel, kind, message) VALUES (%s, %s, 'fired', %s) "
                "RETURNING id",
                (n + 1, channel, Jsonb(_notice(n + 1))),
            ).fetchone()
            assert row is not None
            ids.append(row[0])
        if columns:
            sets = ", ".join(f"{k} = {v}" for k, v in columns.items())
            conn.execute(f"UPDATE clawnsole.alert_outbox SET {sets} WHERE id = ANY(%s)", (ids,))
    return ids


def _rows(db_url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql, args).fetchall()


def _due_now(db_url: str) -> None:
    # The next attempt's backoff (15 s and more) is not waited out: the test moves it to now.
    _rows(db_url, "UPDATE clawnsole.alert_outbox SET next_attempt_at = now() WHERE sent_at IS NULL RETURNING id")


@pytest.fixture
def queue(db_url: str) -> Iterator[WorkQueue]:
    with WorkQueue(db_url, schema=SCHEMA, agent="sender-test") as wq:
        yield wq


def _sender(queue: WorkQueue, **env: str) -> Sender:
    # No waiting between the quick retries within a call: what is tested is their number and outcome.
    return Sender(queue, Channels(AlertChannelSettings(**env)), agent="sender-test", sleep=lambda _s: None)


def test_a_due_notice_is_sent_once_and_its_attempt_recorded(db_url: str, queue: WorkQueue) -> None:
    [outbox_id] = _write(db_url, "webhook")
    with http_receiver() as hook:
        sender = _sender(queue, CLAWNSOLE_ALERT_WEBHOOK_URL=hook.url("/hook"))
        report = sender.deliver_due()
        again = sender.deliver_due()
        assert [r.json()["delivery_id"] for r in hook.received()] == [outbox_id]
    assert [o.status for o in report.outcomes] == ["sent"] and again.outcomes == []
    assert _rows(db_url, "SELECT attempts, sent_at IS NOT NULL, given_up_at FROM clawnsole.alert_outbox") == [
        (1, True, None)
    ]
    assert _rows(
        db_url, "SELECT outbox_id, attempt, channel, ok, status_code, error, agent FROM clawnsole.alert_deliveries"
    ) == [(outbox_id, 1, "webhook", True, 200, None, "sender-test")]


def test_a_channel_answering_500_then_200_delivers_on_a_later_attempt_with_every_attempt_recorded(
    db_url: str, queue: WorkQueue
) -> None:
    [outbox_id] = _write(db_url, "slack")
    # Three 500s use up the quick retries of the first attempt; the next attempt gets a 200.
    with http_receiver(statuses=[500, 500, 500]) as slack:
        sender = _sender(queue, SLACK_WEBHOOK_URL=slack.url("/services/T/B/secret"))
        first = sender.deliver_due()
        assert [(o.status, o.status_code) for o in first.outcomes] == [("retrying", 500)]
        assert first.outcomes[0].next_attempt_at is not None
        assert sender.deliver_due().outcomes == []  # not due again yet: the backoff holds
        _due_now(db_url)
        second = sender.deliver_due()
        assert len(slack.received()) == 4
    assert [o.status for o in second.outcomes] == ["sent"]
    assert _rows(db_url, "SELECT attempt, ok, status_code FROM clawnsole.alert_deliveries ORDER BY id") == [
        (1, False, 500),
        (2, True, 200),
    ]
    assert _rows(
        db_url, "SELECT attempts, sent_at IS NOT NULL FROM clawnsole.alert_outbox WHERE id = %s", outbox_id
    ) == [(2, True)]


def test_a_channel_down_for_the_whole_test_keeps_every_notice_and_never_holds_up_another_channel(
    db_url: str, queue: WorkQueue
) -> None:
    slack_ids = _write(db_url, "slack", 3)
    webhook_ids = _write(db_url, "webhook", 2)
    port = closed_port()
    down = f"http://127.0.0.1:{port}/services/T/B/secret"
    with http_receiver() as hook:
        sender = _sender(queue, SLACK_WEBHOOK_URL=down, CLAWNSOLE_ALERT_WEBHOOK_URL=hook.url("/hook"))
        for _ in range(3):
            report = sender.deliver_due()
            _due_now(db_url)
        assert sorted(r.json()["delivery_id"] for r in hook.received()) == webhook_ids
    by_id = {o.id: o.status for o in report.outcomes}
    # The first slack notice is tried; the rest of its batch is handed back untried (the attempt not counted).
    assert by_id == {slack_ids[0]: "retrying", slack_ids[1]: "deferred", slack_ids[2]: "deferred"}
    kept = _rows(
        db_url,
        "SELECT id, attempts, sent_at, given_up_at FROM clawnsole.alert_outbox WHERE channel = 'slack' ORDER BY id",
    )
    assert kept == [(slack_ids[0], 3, None, None), (slack_ids[1], 0, None, None), (slack_ids[2], 0, None, None)]
    errors = _rows(db_url, "SELECT DISTINCT error FROM clawnsole.alert_deliveries WHERE NOT ok")
    assert errors == [(f"slack: cannot reach http://127.0.0.1:{port}: ConnectError: [Errno 111] Connection refused",)]


def test_a_receiver_down_for_a_while_gets_every_notice_afterwards(db_url: str, queue: WorkQueue) -> None:
    ids = _write(db_url, "webhook", 5)
    with http_receiver(statuses=[503] * 3) as hook:
        sender = _sender(queue, CLAWNSOLE_ALERT_WEBHOOK_URL=hook.url("/hook"))
        sender.deliver_all()
        _due_now(db_url)
        sender.deliver_all()
        tried = [r.json()["delivery_id"] for r in hook.received()]
    # The first notice took the three 503s; the others waited untried, and all went out after.
    assert tried == [ids[0]] * 3 + ids
    assert _rows(db_url, "SELECT count(*) FROM clawnsole.alert_outbox WHERE sent_at IS NULL") == [(0,)]


def test_a_channel_not_configured_is_recorded_as_failed_after_the_grace_not_retried(
    db_url: str, queue: WorkQueue
) -> None:
    [fresh] = _write(db_url, "slack")
    sender = _sender(queue)
    # Within the grace, a process that cannot send slack leaves it for one that can.
    assert sender.deliver_due().outcomes == []
    [old] = _write(db_url, "slack", created_at="now() - interval '10 minutes'")
    report = sender.deliver_due()
    assert [(o.id, o.status) for o in report.outcomes] == [(old, "failed")]
    assert _rows(
        db_url, "SELECT last_error, given_up_at IS NOT NULL FROM clawnsole.alert_outbox WHERE id = %s", old
    ) == [("slack is not configured (set SLACK_WEBHOOK_URL or SLACK_BOT_TOKEN)", True)]
    _due_now(db_url)
    assert [o.id for o in sender.deliver_due().outcomes] == []  # given up: never taken again
    assert _rows(db_url, "SELECT given_up_at FROM clawnsole.alert_outbox WHERE id = %s", fresh) == [(None,)]


def test_a_notice_failing_for_a_day_is_given_up_and_says_so(db_url: str, queue: WorkQueue) -> None:
    [outbox_id] = _write(db_url, "webhook", created_at="now() - interval '25 hours'")
    sender = _sender(queue, CLAWNSOLE_ALERT_WEBHOOK_URL=f"http://127.0.0.1:{closed_port()}/hook")
    assert [o.status for o in sender.deliver_due().outcomes] == ["failed"]
    assert [e.status for e in queue.run(delivery.history())] == ["failed"]
    assert _rows(db_url, "SELECT count(*) FROM clawnsole.alert_deliveries WHERE outbox_id = %s", outbox_id) == [(1,)]


def test_a_sender_whose_in_flight_time_ran_out_cannot_record_over_the_sender_that_took_over(
    db_url: str, queue: WorkQueue
) -> None:
    _write(db_url, "webhook")
    [stale] = queue.run(delivery.claim(["webhook"], lease=0.0))
    [fresh] = queue.run(delivery.claim(["webhook"]))
    assert (stale.id, stale.attempt, fresh.attempt) == (fresh.id, 1, 2)
    late = queue.run(delivery.record(stale, agent="stale", sent=delivery.Sent(200)))
    assert late.status == "lost"
    assert queue.run(delivery.record(fresh, agent="fresh", sent=delivery.Sent(200))).status == "sent"
    # Both attempts are in the history; only the fresh one changed the notice.
    assert _rows(db_url, "SELECT attempt, agent FROM clawnsole.alert_deliveries ORDER BY id") == [
        (1, "stale"),
        (2, "fresh"),
    ]


def test_four_senders_at_once_deliver_each_notice_exactly_once(db_url: str) -> None:
    ids = _write(db_url, "webhook", 60)
    with http_receiver() as hook:
        barrier = threading.Barrier(4)

        def send(n: int) -> None:
            with WorkQueue(db_url, schema=SCHEMA, agent=f"racer-{n}") as wq:
                sender = Sender(wq, Channels(AlertChannelSettings(CLAWNSOLE_ALERT_WEBHOOK_URL=hook.url("/hook"))))
                barrier.wait()
                sender.deliver_all(limit=5)

        threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        delivered = [r.json()["delivery_id"] for r in hook.received()]
    assert sorted(delivered) == ids
    assert _rows(
        db_url, "SELECT count(*), count(DISTINCT outbox_id), bool_and(ok) FROM clawnsole.alert_deliveries"
    ) == [(60, 60, True)]
    assert len({a for (a,) in _rows(db_url, "SELECT DISTINCT agent FROM clawnsole.alert_deliveries")}) > 1


def test_secrets_never_reach_the_database_or_the_log(
    db_url: str, queue: WorkQueue, caplog: pytest.LogCaptureFixture
) -> None:
    _write(db_url, "slack")
    _write(db_url, "webhook")
    _write(db_url, "discord")
    secrets = ("T0SECRETXYZ", "B0SECRETXYZ", "hooksecretpath0123456789", "discordtok3n0123456789", "xoxb-not-this")
    with http_receiver(statuses=[500] * 9) as receiver:
        sender = _sender(
            queue,
            SLACK_WEBHOOK_URL=receiver.url("/services/T0SECRETXYZ/B0SECRETXYZ/abc"),
            CLAWNSOLE_ALERT_WEBHOOK_URL=receiver.url("/hooks/hooksecretpath0123456789"),
            CLAWNSOLE_ALERT_WEBHOOK_SECRET="xoxb-not-this",
            DISCORD_WEBHOOK_URL=receiver.url("/api/webhooks/1/discordtok3n0123456789"),
        )
        with caplog.at_level(logging.INFO, logger="clawnsole.alerts"):
            caplog.handler.setLevel(logging.INFO)
            logging.getLogger("clawnsole.alerts").addHandler(caplog.handler)
            try:
                report = sender.deliver_due()
            finally:
                logging.getLogger("clawnsole.alerts").removeHandler(caplog.handler)
    assert [o.status for o in report.outcomes] == ["retrying"] * 3
    stored = str(_rows(db_url, "SELECT * FROM clawnsole.alert_deliveries")) + str(
        _rows(db_url, "SELECT last_error FROM clawnsole.alert_outbox")
    )
    logged = caplog.text
    assert "HTTP 500" in stored and "alert_send_failed" in logged
    for secret in secrets:
        assert secret not in stored and secret not in logged, secret


def test_history_filters_by_severity_rule_and_subject(db_url: str, queue: WorkQueue) -> None:
    _write(db_url, "webhook", 3)
    _rows(
        db_url,
        'UPDATE clawnsole.alert_outbox SET message = message || \'{"severity": "low"}\' WHERE id = 2 RETURNING id',
    )
    assert [e.id for e in queue.run(delivery.history())] == [3, 2, 1]
    assert [e.id for e in queue.run(delivery.history(severity="low"))] == [2]
    assert [e.id for e in queue.run(delivery.history(subject="ops-3"))] == [3]
    assert [e.id for e in queue.run(delivery.history(rule="dlq-jobs", limit=1))] == [3]
    assert {e.status for e in queue.run(delivery.history())} == {"pending"}
