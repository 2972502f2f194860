"""The audit page: the actions just made on the dashboard and the API, newest first, outcome coloured,
filtered by token, older rows by keyset; it needs what `GET /api/v1/audit` needs (admin over every queue)."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import expect

from clawnsole.queue import WorkQueue
from clawnsole.tokens.api import Audit
from tests.web.conftest import Api, TokenMaker
from tests.web.dashboard.conftest import SignIn
from tests.web.dashboard.helpers import dead, hold, signed_in_client


def test_the_audit_page_lists_the_actions_just_made_newest_first(
    sign_in: SignIn, token: TokenMaker, as_token: Any, web_wq: WorkQueue, queue: str, shot: Any
) -> None:
    [letter] = dead(web_wq, queue, "report.render", "TimeoutError: renderer did not answer", 1)
    held, _ = hold(web_wq, queue, "invoice batch", "render-host-3:4121")
    admin = token("audit-admin", ["admin"])
    page = sign_in(admin)
    page.goto(f"/dead-letters?queue={queue}")
    page.locator(f"#dl-{letter} button:has-text('Replay')").click()
    expect(page.locator(".flash")).to_contain_text("replayed 1 failed item")
    page.goto("/leases")
    page.locator(f"#lease-{held} button:has-text('Force release')").click()
    expect(page.locator(".flash")).to_contain_text(f"took the lease on item {held}")
    again = as_token(admin).post("/api/v1/leases/release", json={"id": held})
    assert again.status_code == 404
    refused = as_token(token("audit-reader", ["read"])).post(f"/api/v1/queues/{queue}/pause")
    assert refused.status_code == 403

    page.goto("/audit")
    rows = page.locator("table.audit tbody tr")
    expect(rows.nth(0)).to_contain_text("audit-reader")
    expect(rows.nth(0).locator(".status")).to_have_text("forbidden")
    expect(rows.nth(0).locator(".status")).to_have_class("status status-forbidden")
    expect(rows.nth(1)).to_contain_text("lease.release")
    expect(rows.nth(1).locator(".status")).to_have_text("not_found")
    expect(rows.nth(1).locator(".status")).to_have_class("status status-other")
    expect(rows.nth(2)).to_contain_text("lease.release")
    expect(rows.nth(2)).to_contain_text(f"item {held}")
    expect(rows.nth(2).locator(".status")).to_have_class("status status-ok")
    expect(rows.nth(3)).to_contain_text("dlq.replay")
    expect(rows.nth(3)).to_contain_text(queue)
    expect(rows.nth(4)).to_contain_text("dashboard.sign_in")
    shot(page, "audit")

    page.fill("input[name=token]", "audit-reader")
    page.click("button:has-text('Filter')")
    expect(rows).to_have_count(1)
    expect(rows.nth(0)).to_contain_text("audit-reader")


def test_older_rows_come_a_page_at_a_time_by_keyset(sign_in: SignIn, token: TokenMaker, web_wq: WorkQueue) -> None:
    audit = Audit(web_wq)
    written = [audit.write("audit-bulk", "queue.pause", f"queue-{n}", "ok").id for n in range(60)]
    page = sign_in(token("audit-pager", ["admin"]))
    page.goto("/audit?token=audit-bulk")
    rows = page.locator("table.audit tbody tr")
    expect(rows).to_have_count(50)
    expect(rows.nth(0)).to_have_attribute("id", f"audit-{written[-1]}")
    page.click("a:has-text('Older')")
    expect(rows).to_have_count(10)
    expect(rows.nth(0)).to_have_attribute("id", f"audit-{written[9]}")
    expect(rows.nth(9)).to_have_attribute("id", f"audit-{written[0]}")
    expect(page.locator("a:has-text('Older')")).to_have_count(0)
    expect(page.locator("a:has-text('Newest')")).to_have_attribute("href", "/audit?token=audit-bulk")


def test_reading_the_audit_needs_an_admin_token_over_every_queue(
    api: Api, token: TokenMaker, as_token: Any, queue: str
) -> None:
    with signed_in_client(api, token("audit-operator", ["operate"])) as (http, _):
        page = http.get("/audit")
    assert page.status_code == 403 and "reading the audit log needs the &#39;admin&#39; scope" in page.text
    with signed_in_client(api, token("audit-live", ["admin"])) as (http, _):
        live = http.get("/audit", headers={"HX-Request": "true", "HX-Target": "live"})
    assert live.status_code == 200 and "dashboard.sign_in" in live.text and "<html" not in live.text
    assert as_token(token("audit-op-api", ["operate"])).get("/api/v1/audit").status_code == 403
    limited = as_token(token("audit-limited", ["admin"], queues=[queue])).get("/api/v1/audit")
    assert limited.status_code == 403 and "every queue" in limited.json()["error"]["message"]
    admin = as_token(token("audit-api", ["admin"]))
    first = admin.get("/api/v1/audit", params={"limit": 2})
    assert first.status_code == 200, first.text
    body = first.json()
    assert len(body["audit"]) == 2 and body["next_before"] == body["audit"][-1]["id"]
    older = admin.get("/api/v1/audit", params={"limit": 2, "before": body["next_before"]}).json()
    assert all(r["id"] < body["next_before"] for r in older["audit"])
    assert admin.get("/api/v1/audit", params={"since": "soon"}).json()["error"]["field"] == "since"


def test_only_an_admin_over_every_queue_gets_the_audit_link(api: Api, token: TokenMaker) -> None:
    for scopes, linked in ((["admin"], True), (["operate"], False), (["read"], False)):
        with signed_in_client(api, token(f"audit-link-{scopes[0]}", scopes)) as (http, _):
            assert ('href="/audit"' in http.get("/").text) is linked, scopes
