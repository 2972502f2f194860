"""`clawnsole alert test|history|run` as users run them: real subprocesses, real local receivers, exit codes."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import signal
import subprocess
import sys
import threading
from typing import Any

import psycopg

from clawnsole.alerts.api import Alerts
from clawnsole.queue import WorkQueue
from tests.alerts.receivers import closed_port, http_receiver, smtp_receiver
from tests.conftest import Cli
from tests.worker.helpers import wait_for


def _rows(db_url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(sql).fetchall()


def test_alert_test_sends_a_signed_webhook_through_the_outbox_and_exits_0(cli: Cli, db_url: str) -> None:
    with http_receiver() as hook:
        env = {
            "CLAWNSOLE_ALERT_WEBHOOK_URL": hook.url("/hook/s3cretpath0123456789"),
            "CLAWNSOLE_ALERT_WEBHOOK_SECRET": "k3y",
        }
        result = cli("alert", "test", "--channel", "webhook", "--severity", "high", "--json", **env)
        [request] = hook.received()
    assert result.code == 0, result.stderr
    [row] = json.loads(result.stdout)
    assert row["status"] == "sent" and row["status_code"] == 200 and row["ok"] is True
    assert (
        request.headers["X-Clawnsole-Signature"]
        == "sha256=" + hmac.new(b"k3y", request.body, hashlib.sha256).hexdigest()
    )
    body = request.json()
    assert body["state"] == "test" and body["severity"] == "high" and body["delivery_id"] == row["outbox_id"]
    assert _rows(db_url, "SELECT kind, sent_at IS NOT NULL, attempts FROM clawnsole.alert_outbox") == [
        ("test", True, 1)
    ]


def test_alert_test_on_a_channel_not_configured_exits_1_naming_the_variable(cli: Cli) -> None:
    result = cli("alert", "test", "--channel", "slack")
    assert result.code == 1
    assert result.stderr.strip() == (
        "clawnsole: error: slack is not configured (set SLACK_WEBHOOK_URL or SLACK_BOT_TOKEN)"
    )
    assert "failed" in result.stdout  # the table: the notice is recorded as failed


def test_alert_test_on_a_channel_that_is_down_exits_1_with_the_reason_and_no_secret(cli: Cli) -> None:
    with http_receiver(statuses=[500] * 3) as discord:
        url = discord.url("/api/webhooks/123/T0KEN-secret-0123456789")
        result = cli("alert", "test", "--channel", "discord", DISCORD_WEBHOOK_URL=url)
    assert result.code == 1
    assert "discord: HTTP 500 from http://127.0.0.1" in result.stderr
    assert "T0KEN" not in result.stdout + result.stderr


def test_alert_test_sends_an_email_to_a_real_smtp_server(cli: Cli) -> None:
    with smtp_receiver() as mailbox:
        result = cli(
            "alert", "test", "--channel", "email",
            CLAWNSOLE_SMTP_URL=f"smtp://127.0.0.1:{mailbox.port}",
            CLAWNSOLE_ALERT_EMAIL_FROM="clawnsole@example.test",
            CLAWNSOLE_ALERT_EMAIL_TO="ops@example.test",
        )  # fmt: skip
        assert result.code == 0, result.stderr
        [(_sender, recipients, raw)] = mailbox.mails
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert recipients == ["ops@example.test"] and mail["Subject"] == "[TEST] Clawnsole alert test (low)"
    assert "email channel works" in mail.get_content()


def test_alert_test_refuses_an_unknown_channel_or_severity_with_exit_2_and_writes_nothing(
    cli: Cli, db_url: str
) -> None:
    bad_channel = cli("alert", "test", "--channel", "pager")
    bad_severity = cli("alert", "test", "--channel", "slack", "--severity", "urgent")
    bad_variable = cli("alert", "test", NOTIFY_EMAIL_ENABLED="perhaps")
    assert [r.code for r in (bad_channel, bad_severity, bad_variable)] == [2, 2, 2]
    assert bad_channel.stderr.startswith("clawnsole: error: channel: 'pager' is not a channel")
    assert "NOTIFY_EMAIL_ENABLED" in bad_variable.stderr
    assert _rows(db_url, "SELECT count(*) FROM clawnsole.alert_outbox") == [(0,)]


def test_alert_history_lists_notices_newest_first_and_filters(cli: Cli) -> None:
    with http_receiver() as hook:
        env = {"CLAWNSOLE_ALERT_WEBHOOK_URL": hook.url("/hook")}
        assert cli("alert", "test", "--channel", "webhook", "--severity", "high", **env).code == 0
        assert cli("alert", "test", "--channel", "webhook", **env).code == 0
    listed = json.loads(cli("alert", "history", "--json").stdout)
    assert [(e["severity"], e["status"]) for e in listed] == [("low", "sent"), ("high", "sent")]
    high = json.loads(cli("alert", "history", "--severity", "high", "--json").stdout)
    assert [e["id"] for e in high] == [listed[1]["id"]]
    table = cli("alert", "history", "--limit", "1")
    assert table.code == 0 and table.stdout.splitlines()[0].split()[:4] == ["ID", "AT", "RULE", "SEVERITY"]
    assert len(table.stdout.splitlines()) == 2
    assert cli("alert", "history", "--severity", "severe").code == 2


def test_alert_run_fires_on_a_failure_at_once_delivers_it_and_stops_on_sigterm(cli: Cli, db_url: str) -> None:
    with WorkQueue(db_url, agent="test") as wq:
        alerts = Alerts(wq)
        alerts.update_settings(channels=["webhook"])
        alerts.add("repeated-failures", conditions={"consecutiveFailures": 1}, severity="high", channels=["webhook"])
    with http_receiver() as hook:
        env = cli.env(CLAWNSOLE_ALERT_WEBHOOK_URL=hook.url("/hook"), CLAWNSOLE_ALERT_WEBHOOK_SECRET="k")
        # A one-hour interval: the notice can only come from the prompt path (a failure), not from a round.
        proc = subprocess.Popen(
            [sys.executable, "-m", "clawnsole", "alert", "run", "--interval", "1h"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        lines: list[str] = []
        started = threading.Event()

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if '"alert_round"' in line:
                    started.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            assert started.wait(30), "".join(lines)  # the first round is done: what follows is the prompt path
            with WorkQueue(db_url, agent="worker") as wq:
                wq.enqueue("ops", "nightly report", kind="nightly-report")
                [item] = wq.claim_next("ops")
                wq.fail(item.id, lease_token=str(item.lease_token), error="exit 1", retry=False)
            [request] = wait_for(hook.received, timeout=20, what="the webhook notice")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, "".join(lines)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(5)
    body = request.json()
    assert (body["rule"], body["state"], body["subject"]) == (
        "repeated-failures",
        "fired",
        {"type": "job", "name": "nightly-report"},
    )
    assert item.id in body["item_ids"]
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert {"alerts_started", "alert_sent", "alerts_stopped"} <= {e.get("event") for e in events}
    assert any(e.get("event") == "alert_round" and e.get("reason") == "failure" for e in events)


def test_alert_run_refuses_a_bad_interval_and_waits_out_a_database_outage_logging_each_retry(cli: Cli) -> None:
    assert cli("alert", "run", "--interval", "soon").stderr.startswith("clawnsole: error: interval:")
    down = f"postgresql://app:pw0rd@127.0.0.1:{closed_port()}/queue"
    proc = subprocess.Popen(
        [sys.executable, "-m", "clawnsole", "alert", "run"], env=cli.env(CLAWNSOLE_DATABASE_URL=down),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        lines.extend(proc.stderr)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: sum('"alerts_db_unavailable"' in line for line in lines) >= 4, what="retries logged")
        assert proc.poll() is None  # still running: an outage is waited out, never a reason to exit
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    assert "pw0rd" not in "".join(lines)
    assert all(json.loads(line)["event"].startswith("alerts_") for line in lines if line.strip())


def test_the_notes_release_gate_a_job_fails_an_alert_is_sent_and_it_moves_to_the_dlq(cli: Cli, db_url: str) -> None:
    # worker-app-status.md, release gate: "Job fails → alert sent, moves to DLQ" — one real worker process
    # runs the job (`false`, which exits 1) and, with --with-alerts, evaluates the rules and delivers.
    with WorkQueue(db_url, agent="test") as wq:
        alerts = Alerts(wq)
        alerts.update_settings(channels=["webhook"])
        alerts.add("job-failed", conditions={"consecutiveFailures": 1}, severity="critical", channels=["webhook"])
    enqueued = cli("workqueue", "enqueue", "--queue", "ops", "--title", "nightly", "--kind", "nightly-report",
                   "--max-attempts", "1")  # fmt: skip
    assert enqueued.code == 0, enqueued.stderr
    item_id = json.loads(enqueued.stdout)["id"]
    with http_receiver() as hook:
        env = cli.env(CLAWNSOLE_ALERT_WEBHOOK_URL=hook.url("/hook"), CLAWNSOLE_ALERT_WEBHOOK_SECRET="gate")
        worker = subprocess.Popen(
            [sys.executable, "-m", "clawnsole", "workqueue", "worker-loop", "--queue", "ops", "--agent", "gate",
             "--exec", "false", "--with-alerts", "--log-format", "json"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        try:
            [request] = wait_for(hook.received, timeout=40, what="the alert for the failed job")
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(30) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    signature = hmac.new(b"gate", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Clawnsole-Signature"] == f"sha256={signature}"
    body = request.json()
    assert (body["rule"], body["severity"], body["state"]) == ("job-failed", "critical", "fired")
    assert item_id in body["item_ids"]
    dead = json.loads(cli("dlq", "list", "--queue", "ops", "--json").stdout)
    assert [d["id"] for d in dead] == [item_id]


def test_alert_status_says_which_channels_are_configured_and_the_notes_colon_spellings_work(cli: Cli) -> None:
    with http_receiver() as hook:
        env = {"CLAWNSOLE_ALERT_WEBHOOK_URL": hook.url("/secret-path")}
        status = cli("alert:status", "--json", **env)
        assert status.code == 0, status.stderr
        shown = json.loads(status.stdout)
        assert shown["channels"]["webhook"]["how"].startswith("http://127.0.0.1")
        assert "secret-path" not in status.stdout  # a webhook URL is a secret: only its origin is shown
        assert "not configured" in shown["channels"]["slack"]["how"]
        assert cli("alert:history", "--limit", "50").code == 0
        assert cli("alert", "status").stdout.startswith("alerting on")
