"""Each channel against a real local receiver: what it sends, how it is signed, and that no secret leaks."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import shutil
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from clawnsole.alerts.channels import ChannelError, Channels, NotConfigured, SlackIdentity
from clawnsole.alerts.messages import AlertMessage, plain_text, span
from clawnsole.config import AlertChannelSettings
from tests.alerts.receivers import closed_port, http_receiver, self_signed, smtp_receiver

NOW = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


def _message(**changes: Any) -> AlertMessage:
    raw: dict[str, Any] = {
        "rule": "repeated-failures",
        "severity": "high",
        "state": "fired",
        "subject": {"type": "job", "name": "nightly-report"},
        "summary": "nightly-report failed 3 times in a row <!channel> @everyone",
        "details": {"consecutive_failures": 3},
        "since": (NOW - timedelta(minutes=12)).isoformat(),
        "item_ids": list(range(101, 115)),
        "command": "clawnsole dlq list --queue ops",
        "suppressed": 4,
    } | changes
    return AlertMessage.from_json(raw, NOW)


def _channels(**env: str) -> Channels:
    return Channels(AlertChannelSettings(**env), SlackIdentity("#worker-alerts", "Worker Bot", ":gear:"))


def test_a_slack_webhook_gets_block_kit_with_the_settings_identity_and_escaped_text() -> None:
    with http_receiver() as slack:
        channels = _channels(SLACK_WEBHOOK_URL=slack.url("/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"))
        sent = channels.get("slack").send(_message(), delivery_id=7)
        [request] = slack.received()
    payload = request.json()
    assert sent.status == 200 and request.path == "/services/T000/B000/XXXXXXXXXXXXXXXXXXXXXXXX"
    assert (payload["channel"], payload["username"], payload["icon_emoji"]) == (
        "#worker-alerts",
        "Worker Bot",
        ":gear:",
    )
    assert payload["blocks"][0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "[HIGH] repeated-failures: job nightly-report"},
    }
    text = str(payload["blocks"])
    # What, where, since when, how bad, the ids, the command, the suppressed count — and no live @channel ping.
    for expected in ("*Severity*\\nhigh", "job nightly-report", "12m", "101, 102", "and 4 more",
                     "clawnsole dlq list --queue ops", "4 similar alerts suppressed"):  # fmt: skip
        assert expected in text, expected
    assert "<!channel>" not in str(payload) and "&lt;!channel&gt;" in text


def test_a_slack_bot_token_posts_to_chat_post_message_and_a_refusal_is_not_retried_in_the_call() -> None:
    with http_receiver(reply=b'{"ok": true}') as api:
        channels = _channels(SLACK_BOT_TOKEN="xoxb-secret-token-1234", CLAWNSOLE_SLACK_API_URL=api.url("/api"))
        channels.get("slack").send(_message(), delivery_id=1)
        [request] = api.received()
    assert request.path == "/api/chat.postMessage"
    assert request.headers["Authorization"] == "Bearer xoxb-secret-token-1234"
    assert request.json()["channel"] == "#worker-alerts"
    with http_receiver(reply=b'{"ok": false, "error": "channel_not_found"}') as api:
        channels = _channels(SLACK_BOT_TOKEN="xoxb-secret-token-1234", CLAWNSOLE_SLACK_API_URL=api.url("/api"))
        with pytest.raises(ChannelError) as refused:
            channels.get("slack").send(_message(), delivery_id=1)
    assert "channel_not_found" in refused.value.message and not refused.value.retry


def test_a_discord_embed_is_coloured_by_severity_green_when_resolved_and_pings_no_one() -> None:
    with http_receiver() as discord:
        channels = _channels(DISCORD_WEBHOOK_URL=discord.url("/api/webhooks/1/abcdefghijklmnopqrstuvwxyz"))
        channels.get("discord").send(_message(), delivery_id=1)
        channels.get("discord").send(_message(severity="critical"), delivery_id=2)
        channels.get("discord").send(_message(state="resolved"), delivery_id=3)
        fired, critical, resolved = (r.json() for r in discord.received())
    assert fired["allowed_mentions"] == {"parse": []}
    assert [p["embeds"][0]["color"] for p in (fired, critical, resolved)] == [0xF5732B, 0xD0021B, 0x2EB67D]
    assert resolved["embeds"][0]["title"] == "[RESOLVED] repeated-failures: job nightly-report after 12m"
    names = [f["name"] for f in fired["embeds"][0]["fields"]]
    assert {"Severity", "Subject", "Since", "Items", "Look", "Suppressed"} <= set(names)


def test_a_webhook_body_is_the_message_plus_version_signed_over_its_exact_bytes() -> None:
    with http_receiver() as hook:
        channels = _channels(CLAWNSOLE_ALERT_WEBHOOK_URL=hook.url("/hook"), CLAWNSOLE_ALERT_WEBHOOK_SECRET="s3cret-key")
        channels.get("webhook").send(_message(), delivery_id=42)
        [request] = hook.received()
    expected = "sha256=" + hmac.new(b"s3cret-key", request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Clawnsole-Signature"] == expected
    body = request.json()
    assert body["version"] == 1 and body["delivery_id"] == 42 and body["rule"] == "repeated-failures"
    assert body["subject"] == {"type": "job", "name": "nightly-report"} and body["suppressed"] == 4
    with http_receiver() as hook:
        _channels(CLAWNSOLE_ALERT_WEBHOOK_URL=hook.url("/hook")).get("webhook").send(_message(), delivery_id=1)
        assert "X-Clawnsole-Signature" not in hook.received()[0].headers


def test_email_by_smtp_arrives_as_plain_text_saying_what_where_and_what_to_run() -> None:
    with smtp_receiver() as mailbox:
        channels = _channels(
            CLAWNSOLE_SMTP_URL=f"smtp://127.0.0.1:{mailbox.port}",
            CLAWNSOLE_ALERT_EMAIL_FROM="alerts@example.test",
            CLAWNSOLE_ALERT_EMAIL_TO="ops@example.test, oncall@example.test",
        )
        channels.get("email").send(_message(), delivery_id=5)
        [(sender, recipients, raw)] = mailbox.mails
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert sender == "alerts@example.test" and recipients == ["ops@example.test", "oncall@example.test"]
    assert mail["Subject"].startswith("[HIGH] repeated-failures: job nightly-report - nightly-report failed")
    assert mail.get_content_type() == "text/plain"
    body = mail.get_content()
    for expected in ("Items: 101, 102", "Look: clawnsole dlq list --queue ops", "4 similar alerts suppressed"):
        assert expected in body


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command for a test certificate")
def test_email_by_smtps_speaks_tls_and_verifies_the_server_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    env = {"CLAWNSOLE_ALERT_EMAIL_FROM": "alerts@example.test", "CLAWNSOLE_ALERT_EMAIL_TO": "ops@example.test"}
    with smtp_receiver(tls_context=context) as mailbox:
        url = f"smtps://127.0.0.1:{mailbox.port}"
        # Not trusted: refused (and retried later), nothing delivered.
        with pytest.raises(ChannelError, match="CERTIFICATE_VERIFY_FAILED"):
            _channels(CLAWNSOLE_SMTP_URL=url, **env).get("email").send(_message(), delivery_id=1)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        _channels(CLAWNSOLE_SMTP_URL=url, **env).get("email").send(_message(), delivery_id=2)
        assert len(mailbox.mails) == 1


def test_an_smtp_password_is_never_sent_over_a_connection_without_starttls() -> None:
    with smtp_receiver() as mailbox:
        channels = _channels(
            CLAWNSOLE_SMTP_URL=f"smtp://mailer:hunter2pass@127.0.0.1:{mailbox.port}",
            CLAWNSOLE_ALERT_EMAIL_FROM="alerts@example.test",
            CLAWNSOLE_ALERT_EMAIL_TO="ops@example.test",
        )
        with pytest.raises(ChannelError) as refused:
            channels.get("email").send(_message(), delivery_id=1)
    assert "STARTTLS" in refused.value.message and "hunter2pass" not in refused.value.message
    assert not refused.value.retry and mailbox.mails == []


def test_email_by_sendgrid_when_there_is_no_smtp_url() -> None:
    with http_receiver() as sendgrid:
        sendgrid.default = 202
        channels = _channels(
            SENDGRID_API_KEY="SG.secret-key-value",
            CLAWNSOLE_SENDGRID_API_URL=sendgrid.url(),
            CLAWNSOLE_ALERT_EMAIL_FROM="alerts@example.test",
            CLAWNSOLE_ALERT_EMAIL_TO="ops@example.test",
        )
        assert channels.get("email").send(_message(), delivery_id=9).status == 202
        [request] = sendgrid.received()
    body = request.json()
    assert request.path == "/v3/mail/send" and request.headers["Authorization"] == "Bearer SG.secret-key-value"
    assert body["personalizations"] == [{"to": [{"email": "ops@example.test"}]}]
    assert body["content"][0]["type"] == "text/plain" and "Items: 101" in body["content"][0]["value"]


def test_a_channel_without_credentials_or_disabled_names_the_variable_to_set() -> None:
    channels = _channels()
    with pytest.raises(NotConfigured, match=r"slack is not configured \(set SLACK_WEBHOOK_URL or SLACK_BOT_TOKEN\)"):
        channels.get("slack")
    assert channels.configured() == []
    assert "DISCORD_WEBHOOK_URL" in (channels.problem("discord") or "")
    assert "CLAWNSOLE_ALERT_EMAIL_FROM" in (_channels(CLAWNSOLE_SMTP_URL="smtp://h:25").problem("email") or "")
    disabled = _channels(SLACK_WEBHOOK_URL="https://hooks.example/x", NOTIFY_SLACK_ENABLED="false")
    assert disabled.problem("slack") == "slack is disabled (NOTIFY_SLACK_ENABLED=false)"


def test_errors_never_show_a_webhook_url_token_or_password() -> None:
    secret_path = "/services/T0SECRET/B0SECRET/abcdefghijklmnopqrstuvwx"
    with http_receiver(statuses=[500]) as slack:
        # The receiver's error body echoes the path, as real proxies do.
        channels = _channels(SLACK_WEBHOOK_URL=slack.url(secret_path))
        with pytest.raises(ChannelError) as failed:
            channels.get("slack").send(_message(), delivery_id=1)
    assert failed.value.status == 500 and failed.value.retry
    assert "T0SECRET" not in failed.value.message and "abcdefghijklmnopqrstuvwx" not in failed.value.message
    down = _channels(DISCORD_WEBHOOK_URL=f"http://127.0.0.1:{closed_port()}/api/webhooks/1/tok3n-tok3n-tok3n-tok3n")
    with pytest.raises(ChannelError) as unreachable:
        down.get("discord").send(_message(), delivery_id=1)
    assert "cannot reach http://127.0.0.1" in unreachable.value.message and "tok3n" not in unreachable.value.message
    assert "hunter2" not in channels.redact("smtp://u:hunter2@h:25 failed")
    assert "SecretStr" in repr(AlertChannelSettings(SLACK_BOT_TOKEN="xoxb-1234")) and "xoxb-1234" not in repr(
        AlertChannelSettings(SLACK_BOT_TOKEN="xoxb-1234")
    )


def test_a_resolved_notice_says_how_long_it_fired_and_plain_text_lists_the_facts() -> None:
    resolved = _message(state="resolved", suppressed=0)
    text = plain_text(resolved)
    assert text.startswith("[RESOLVED] repeated-failures: job nightly-report after 12m\n")
    assert "for 12m" in text and "suppressed" not in text
    assert [span(s) for s in (45, 723, 4 * 3600 + 600, 2 * 86400 + 3 * 3600)] == ["45s", "12m 3s", "4h 10m", "2d 3h"]
    odd = AlertMessage.from_json({"subject": "not a mapping", "item_ids": "x", "suppressed": "many"}, NOW)
    assert odd.where == "job ?" and odd.item_ids == () and odd.suppressed == 0
