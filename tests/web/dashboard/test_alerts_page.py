"""The alerts page: rules added, edited, switched and deleted from the browser, channels switched, a test
alert that arrives at a real local webhook receiver, and the server refusing what the page hides."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from clawnsole.alerts.api import Alerts
from clawnsole.alerts.channels import Channels
from clawnsole.alerts.delivery import Sender
from clawnsole.alerts.rules import CONDITIONS
from clawnsole.errors import NotFound
from clawnsole.queue import WorkQueue
from clawnsole.tokens.api import Audit
from clawnsole.web.dashboard.pages.alerts import CONDITION_TEXT
from tests.alerts.receivers import HttpReceiver, http_receiver
from tests.web.conftest import Api, TokenMaker
from tests.web.dashboard.conftest import SignIn
from tests.worker.helpers import wait_for


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpReceiver]:
    """A real HTTP receiver on 127.0.0.1, configured as the server's webhook channel (the server runs in
    this process, and reads its channels from the environment on each use)."""
    with http_receiver() as receiver:
        monkeypatch.setenv("CLAWNSOLE_ALERT_WEBHOOK_URL", receiver.url("/hook"))
        yield receiver


def _dead_letter(wq: WorkQueue, queue: str) -> int:
    """One failed item in `queue`: enqueued, claimed and failed for good."""
    wq.enqueue(queue, "nightly report")
    [item] = wq.claim_next(queue, agent="alerts-test")
    wq.fail(item.id, "boom", agent="alerts-test", lease_token=str(item.lease_token), retry=False)
    return item.id


def _audited(wq: WorkQueue, target: str) -> list[tuple[str, str]]:
    return sorted((e.action, e.outcome) for e in Audit(wq).list(limit=500) if e.target == target)


def test_every_condition_has_words_on_the_page() -> None:
    assert set(CONDITION_TEXT) == set(CONDITIONS)


def test_a_rule_added_on_the_page_fires_and_a_test_alert_arrives_at_the_webhook(
    sign_in: SignIn, token: TokenMaker, shot: Any, web_wq: WorkQueue, queue: str, hook: HttpReceiver
) -> None:
    name = f"dlq-{queue}"
    alerts = Alerts(web_wq)
    page = sign_in(token("alerts-operator", ["operate"]))
    page.goto("/alerts")
    expect(page.locator("h1")).to_have_text("Alerts")

    webhook = page.locator("tr[data-channel=webhook]")
    expect(webhook).to_contain_text("configured")
    expect(webhook).to_contain_text("disabled")
    webhook.locator("button:has-text('Enable')").click()
    expect(page.locator(".flash")).to_contain_text("Channel webhook enabled")
    expect(page.locator("tr[data-channel=webhook]")).to_contain_text("enabled")

    page.click("a:has-text('New rule')")
    expect(page.locator("h1")).to_have_text("New alert rule")
    # Another condition brings its own fields (htmx swaps them in), and back.
    page.select_option("select[name=condition]", "successRate")
    expect(page.locator("input[name=minRuns]")).to_be_visible()
    page.select_option("select[name=condition]", "dlqSize")
    expect(page.locator("input[name=minRuns]")).to_have_count(0)
    expect(page.locator("label:has-text('Queues (regular expression')")).to_be_visible()

    page.fill("input[name=name]", name)
    page.fill("input[name=threshold]", "lots")
    page.fill("input[name=pattern]", f"^{queue}$")
    page.select_option("select[name=severity]", "high")
    page.check("input[name=channels][value=webhook]")
    page.click("button:has-text('Add rule')")
    error = page.locator("label:has(input[name=threshold]) .field-error")
    expect(error).to_contain_text("must be an integer")
    assert name not in [r.name for r in alerts.list()], "a refused form saves nothing"
    expect(page.locator("input[name=pattern]")).to_have_value(f"^{queue}$")  # what was typed stays
    shot(page, "alert-rule-form")

    page.fill("input[name=threshold]", "1")
    page.click("button:has-text('Add rule')")
    expect(page.locator(".flash")).to_contain_text(f"Rule {name} added")
    row = page.locator(f"tr[data-rule='{name}']")
    expect(row).to_contain_text("Dead letters")
    expect(row).to_contain_text("≥ 1")
    expect(row).to_contain_text("high")
    rule = alerts.get(name).definition
    assert (rule.conditions, rule.severity, rule.channels) == (
        {"dlqSize": 1, "queuePattern": f"^{queue}$"},
        "high",
        ("webhook",),
    )

    # The alert daemon's round and its sender (in this process): the rule fires, the notice goes out.
    _dead_letter(web_wq, queue)
    alerts.evaluate()
    Sender(web_wq, Channels.from_environment(), agent="alerts-test").deliver_all()
    fired = wait_for(
        lambda: [r for r in hook.received("/hook") if r.json().get("rule") == name], what="the fired notice"
    )
    assert fired[0].json()["state"] == "fired"
    page.reload()
    expect(row).to_contain_text("firing")
    expect(page.locator("table.alert-history")).to_contain_text(queue)

    page.select_option("form.alerts-test select[name=channel]", "webhook")
    page.click("button:has-text('Send test alert')")
    expect(page.locator(".flash")).to_contain_text("Test alert: webhook: sent (HTTP 200)")
    tests = wait_for(lambda: [r for r in hook.received("/hook") if r.json().get("state") == "test"], what="the test")
    assert len(tests) == 1
    newest = page.locator("table.alert-notices tbody tr").first
    expect(newest).to_contain_text("test")
    expect(newest).to_contain_text("sent")
    shot(page, "alerts")
    assert _audited(web_wq, name) == [("alert.rule.create", "invalid_input"), ("alert.rule.create", "ok")]
    assert ("alert.channel.enable", "ok") in _audited(web_wq, "webhook")
    assert ("alert.test", "ok") in _audited(web_wq, "webhook")


def test_a_rule_is_switched_edited_and_deleted_after_a_confirmation(
    sign_in: SignIn, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    name = f"backlog-{queue}"
    alerts = Alerts(web_wq)
    alerts.add(name, conditions={"pendingJobs": 100, "queuePattern": f"^{queue}$"}, severity="medium")
    page = sign_in(token("alerts-editor", ["operate"]))
    page.goto("/alerts")
    row = page.locator(f"tr[data-rule='{name}']")
    expect(row).to_contain_text("≥ 100")

    row.locator("button:has-text('Disable')").click()
    expect(row).to_contain_text("disabled")
    assert alerts.get(name).definition.enabled is False
    row.locator("button:has-text('Enable')").click()
    expect(row.locator(".status")).to_have_text("enabled")
    assert alerts.get(name).definition.enabled is True

    row.locator("a:has-text('Edit')").click()
    expect(page.locator("input[name=name]")).to_have_value(name)
    expect(page.locator("input[name=threshold]")).to_have_value("100")
    page.fill("input[name=threshold]", "250")
    page.fill("textarea[name=description]", "Scale the workers up.")
    page.click("button:has-text('Save')")
    expect(page.locator(".flash")).to_contain_text(f"Rule {name} saved")
    expect(row).to_contain_text("≥ 250")
    assert alerts.get(name).definition.conditions == {"pendingJobs": 250, "queuePattern": f"^{queue}$"}

    email = page.locator("tr[data-channel=email]")
    email.locator("button:has-text('Enable')").click()
    expect(email.locator(".status").first).to_have_text("enabled")
    expect(email).to_contain_text("not configured")  # enabled, and this server says what it lacks
    assert "email" in alerts.settings().channels
    email.locator("button:has-text('Disable')").click()
    expect(email.locator(".status").first).to_have_text("disabled")
    assert "email" not in alerts.settings().channels

    row.locator("button:has-text('Delete')").click()
    expect(page.locator("h1")).to_contain_text(f"Delete the rule {name}?")
    assert alerts.get(name).name == name, "nothing is deleted before the confirmation"
    page.click(f"button:has-text('Delete {name}')")
    expect(page.locator(".flash")).to_contain_text(f"Rule {name} deleted")
    expect(page.locator(f"tr[data-rule='{name}']")).to_have_count(0)
    with pytest.raises(NotFound):
        alerts.get(name)
    assert _audited(web_wq, name) == [
        ("alert.rule.delete", "ok"),
        ("alert.rule.update", "ok"),
        ("alert.rule.update", "ok"),
        ("alert.rule.update", "ok"),
    ]


def test_a_read_only_token_sees_the_rules_and_no_buttons(
    sign_in: SignIn, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    name = f"ro-{queue}"
    Alerts(web_wq).add(name, conditions={"dlqSize": 3}, severity="low")
    page = sign_in(token("alerts-viewer", ["read"]))
    page.goto("/alerts")
    expect(page.locator(f"tr[data-rule='{name}']")).to_contain_text("≥ 3")
    expect(page.locator("tr[data-channel=webhook]")).to_be_visible()
    expect(page.locator("main button")).to_have_count(0)
    expect(page.locator("main a:has-text('New rule')")).to_have_count(0)
    page.goto("/alerts/rules/new")
    expect(page.locator("h1")).to_contain_text("Not allowed")


def _signed_in(api: Api, secret: str) -> tuple[httpx.Client, str]:
    """An httpx client signed in to the dashboard (its session cookie), and the session's CSRF token."""
    http = httpx.Client(base_url=api.url, timeout=30)
    response = http.post("/sign-in", data={"token": secret, "next": "/alerts"})
    assert response.status_code == 303, response.text
    page = http.get("/alerts")
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, "the page carries the session's CSRF token"
    return http, match.group(1)


def test_a_forged_post_of_a_read_only_token_is_refused_and_changes_nothing(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    name = f"forged-{queue}"
    alerts = Alerts(web_wq)
    alerts.add(name, conditions={"dlqSize": 3})
    channels = alerts.settings().channels
    http, csrf = _signed_in(api, token("alerts-forger", ["read"]))
    try:
        assert http.post(f"/alerts/rules/{name}/disable", data={"csrf": csrf}).status_code == 403
        assert http.post(f"/alerts/rules/{name}/delete", data={"csrf": csrf, "confirm": "1"}).status_code == 403
        assert http.post("/alerts/channels/slack/enable", data={"csrf": csrf}).status_code == 403
        created = http.post(
            "/alerts/rules", data={"csrf": csrf, "name": f"{name}-2", "condition": "dlqSize", "threshold": "1"}
        )
        assert created.status_code == 403
        assert "lacks the &#39;operate&#39; scope" in created.text
    finally:
        http.close()
    assert alerts.get(name).definition.enabled is True
    assert alerts.settings().channels == channels
    assert f"{name}-2" not in [r.name for r in alerts.list()]
    assert _audited(web_wq, name) == [("alert.rule.delete", "forbidden"), ("alert.rule.update", "forbidden")]


def test_a_post_without_the_csrf_token_or_of_a_queue_limited_operator_is_refused(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    name = f"nocsrf-{queue}"
    alerts = Alerts(web_wq)
    alerts.add(name, conditions={"dlqSize": 3})
    http, _csrf = _signed_in(api, token("alerts-no-csrf", ["operate"]))
    limited, csrf = _signed_in(api, token("alerts-limited", ["operate"], queues=[queue]))
    try:
        assert http.post(f"/alerts/rules/{name}/disable", data={}).status_code == 403
        assert http.post(f"/alerts/rules/{name}/delete", data={"confirm": "1"}).status_code == 403
        refused = limited.post(f"/alerts/rules/{name}/disable", data={"csrf": csrf})
        assert refused.status_code == 403
        assert "limited to some queues" in refused.text
        assert 'action="/alerts/rules' not in limited.get("/alerts").text, "no buttons for it either"
    finally:
        http.close()
        limited.close()
    assert alerts.get(name).definition.enabled is True
    assert ("alert.rule.update", "forbidden") in _audited(web_wq, name)
