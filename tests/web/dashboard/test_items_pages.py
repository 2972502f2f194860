"""The items and item pages: the list updates live when the CLI enqueues; bulk cancel by filter and retry by
selection show what they touch and run only when confirmed; the item page shows the whole item and reveals
its instructions on click for a work token only; a read-only token sees no buttons and its forged actions
are refused 403 with nothing changed; the title and time filters (the page's and the API's), their bounded
search, and a bad filter named by its field."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from clawnsole import feed
from clawnsole.models import Item
from clawnsole.queue import WorkQueue
from clawnsole.tokens.api import Audit
from tests.conftest import Cli
from tests.web.conftest import Api, TokenMaker
from tests.web.dashboard.conftest import TIMEOUT_MS, SignIn
from tests.web.dashboard.helpers import signed_in_client

SECRET = "use the staging key from vault path ops/billing"


def status_of(page: Any, item_id: int) -> Any:
    """The status badge of an item's row in the page's items table."""
    return page.locator(f"table.items tr:has(a[href='/items/{item_id}']) .status")


def claimed(wq: WorkQueue, queue: str, title: str, **options: Any) -> Item:
    """An item enqueued and claimed by a worker (the lease token is on the returned item)."""
    item = wq.enqueue(queue, title, **options).item
    [held] = wq.claim_next(queue, agent="worker-7")
    assert held.id == item.id
    return held


def failed(wq: WorkQueue, queue: str, title: str, error: str) -> Item:
    held = claimed(wq, queue, title, max_attempts=1)
    return wq.fail(held.id, error, agent="worker-7", lease_token=str(held.lease_token), retry=False)


def test_the_items_page_shows_an_item_enqueued_from_the_cli_without_a_reload(
    api: Api, sign_in: SignIn, token: TokenMaker, web_wq: WorkQueue, shot: Any
) -> None:
    queue = "billing"  # this module's database is its own
    done = claimed(web_wq, queue, "Send invoice #1041", kind="invoice", payload={"order": 1041})
    web_wq.done(done.id, agent="worker-7", lease_token=str(done.lease_token), result={"sent": True})
    failed(web_wq, queue, "Charge card for order 88812", "card declined: insufficient funds (code 51)")
    export = claimed(web_wq, queue, "Export the March ledger", kind="export")
    web_wq.progress(export.id, agent="worker-7", lease_token=str(export.lease_token), percent=40, note="12 of 30")
    web_wq.enqueue(queue, "Email the March ledger to accounting", kind="email", after=[export.id])
    web_wq.enqueue(queue, "Send invoice #1042", kind="invoice")

    page = sign_in(token("dash-items-operator", ["operate"]))
    page.goto(f"/items?queue={queue}")
    expect(page.locator("table.items tbody tr")).to_have_count(5)
    page.evaluate("window.notReloaded = true")
    enqueued = Cli(api.db_url)("workqueue", "enqueue", "--queue", queue, "--title", "Refund order 88812")
    assert enqueued.code == 0, enqueued.stderr
    row = page.locator("table.items tbody tr").first
    expect(row).to_contain_text("Refund order 88812", timeout=TIMEOUT_MS)
    expect(row.locator(".status")).to_have_text("pending")
    assert page.evaluate("window.notReloaded") is True, "the row came by the live region, not a reload"
    expect(page.locator("table.items tbody tr")).to_have_count(6)
    shot(page, "items")


def test_bulk_cancel_by_filter_and_retry_by_selection_show_what_they_touch_and_run_when_confirmed(
    sign_in: SignIn, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    broken = [failed(web_wq, queue, f"Resize photo {n}", "exit status 1").id for n in range(2)]
    pending = [web_wq.enqueue(queue, f"Sync account {n}").item.id for n in range(3)]
    elsewhere = web_wq.enqueue(f"{queue}-other", "Sync account elsewhere").item.id
    page = sign_in(token("dash-bulk", ["operate"]))

    page.goto(f"/items?queue={queue}&status=pending")
    page.click("button:has-text('Cancel all matching')")
    expect(page.locator("h1")).to_have_text(f"Confirm: cancel 3 pending items in {queue}")
    assert [web_wq.get(i).status for i in pending] == ["pending"] * 3, "nothing changes before the confirmation"
    page.click("button:has-text('Cancel 3 items')")
    expect(page.locator(".flash")).to_have_text("cancelled 3 items")
    assert [web_wq.get(i).status for i in pending] == ["cancelled"] * 3
    assert web_wq.get(elsewhere).status == "pending"

    page.goto(f"/items?queue={queue}&status=failed")
    page.check(f"input[name=ids][value='{broken[0]}']")
    page.click("button:has-text('Retry selected')")
    expect(page.locator("h1")).to_have_text(f"Confirm: retry 1 failed item in {queue}")
    page.click("button:has-text('Retry 1 item')")
    expect(page.locator(".flash")).to_have_text("requeued 1 item")
    assert [web_wq.get(i).status for i in broken] == ["pending", "failed"]
    expect(status_of(page, broken[1])).to_have_text("failed")

    name = page.locator("header .who span").inner_text()
    audited = [(e.action, e.outcome, e.detail) for e in Audit(web_wq).list(token=name, limit=20)]
    assert ("item.cancel", "ok", {"bulk": "filter", "dry_run": True, "matched": 3}) in audited
    assert ("item.cancel", "ok", {"bulk": "filter", "dry_run": False, "items": pending[::-1], "left": []}) in audited
    assert ("item.retry", "ok", {"bulk": "selection", "dry_run": False, "items": broken[:1], "left": []}) in audited


def test_the_item_page_reveals_instructions_on_click_for_a_work_token_and_not_for_a_read_token(
    api: Api, sign_in: SignIn, token: TokenMaker, web_wq: WorkQueue, shot: Any
) -> None:
    queue = "reports"
    first = web_wq.enqueue(queue, "Collect the March figures", kind="collect").item
    [held] = web_wq.claim_next(queue, agent="worker-3")
    web_wq.done(held.id, agent="worker-3", lease_token=str(held.lease_token), result={"rows": 1289})
    item = web_wq.enqueue(
        queue,
        "Build the March report",
        kind="report",
        instructions=SECRET,
        payload={"month": "2026-03", "format": "pdf", "recipients": ["cfo@example.com"]},
        after=[first.id],
        metadata={"team": "finance"},
    ).item
    web_wq.enqueue(queue, "Mail the March report", kind="mail", after=[item.id])
    [running] = web_wq.claim_next(queue, agent="worker-3")
    assert running.id == item.id
    web_wq.progress(item.id, agent="worker-3", lease_token=str(running.lease_token), percent=60, note="charts done")

    page = sign_in(token("dash-item-worker", ["work"]))
    page.goto(f"/items/{item.id}")
    expect(page.locator(".item-state .status")).to_have_text("claimed")
    expect(page.locator(".item-progress progress")).to_have_attribute("value", "60")
    expect(page.locator("main")).to_contain_text('"recipients": [')
    expect(page.locator(".timeline li")).to_have_count(3)  # enqueued, claimed, progress
    assert SECRET not in page.content(), "instructions stay hidden until asked for"
    assert page.locator("button:has-text('Force-release')").count() == 0, "a work token cannot operate"
    page.click("button:has-text('Show instructions')")
    expect(page.locator("#instructions pre")).to_have_text(SECRET)
    shot(page, "item")

    secret = token("dash-item-reader", ["read"])
    reader = sign_in(secret)
    reader.goto(f"/items/{item.id}")
    expect(reader.locator(".item-state .status")).to_have_text("claimed")
    assert reader.locator("main button").count() == 0, "no reveal and no actions for a read token"
    assert SECRET not in reader.content()
    with signed_in_client(api, secret) as (http, _):
        asked = http.get(f"/items/{item.id}/instructions")
        assert asked.status_code == 403 and SECRET not in asked.text

    operator = sign_in(token("dash-item-operator", ["operate"]))
    operator.goto(f"/items/{item.id}")
    operator.click("button:has-text('Force-release')")
    expect(operator.locator(".flash")).to_contain_text(f"took the lease on item {item.id} from worker-3 back")
    expect(operator.locator(".item-state .status")).to_have_text("pending")
    assert web_wq.get(item.id).attempts == 0, "the attempt is not charged"


def test_a_read_only_tokens_forged_item_actions_are_refused_and_change_nothing(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    broken = failed(web_wq, queue, "Resize photo", "exit status 1").id
    waiting = web_wq.enqueue(queue, "Sync account").item.id
    with signed_in_client(api, token("dash-forger", ["read"])) as (http, csrf):
        assert http.post(f"/items/{broken}/retry", data={"csrf": csrf}).status_code == 403
        assert http.post(f"/items/{waiting}/cancel", data={"csrf": csrf}).status_code == 403
        bulk = {"csrf": csrf, "action": "retry", "what": "selection", "ids": str(broken), "confirm": "1"}
        assert http.post("/items/bulk", data=bulk).status_code == 403
    with signed_in_client(api, token("dash-no-csrf", ["operate"])) as (http, _):
        assert http.post(f"/items/{broken}/retry").status_code == 403
        assert http.post(f"/items/{broken}/retry", data={"csrf": "forged"}).status_code == 403
    with signed_in_client(api, token("dash-elsewhere", ["operate"], queues=["elsewhere"])) as (http, csrf):
        assert http.get(f"/items/{broken}").status_code == 404
        assert http.get(f"/queues/{queue}").status_code == 404
        assert http.post(f"/items/{broken}/retry", data={"csrf": csrf}).status_code == 303  # back with the error
        assert f"item {broken}" not in http.get("/items").text
    assert (web_wq.get(broken).status, web_wq.get(waiting).status) == ("failed", "pending")
    refused = [
        e for e in Audit(web_wq).list(limit=50) if (e.token_name or "").startswith(("dash-forger", "dash-no-csrf"))
    ]
    assert sorted((e.action, e.target, e.outcome) for e in refused if e.action != "dashboard.sign_in") == [
        ("item.cancel", f"item:{waiting}", "forbidden"),
        *[("item.retry", f"item:{broken}", "forbidden")] * 3,
        ("item.retry", "items", "forbidden"),
    ]


def test_titles_and_times_filter_the_page_and_the_api_and_a_bad_filter_names_its_field(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    invoice = web_wq.enqueue(queue, "Send INVOICE #7", kind="invoice").item
    web_wq.enqueue(queue, "Sync account 7", kind="sync")
    secret = token("dash-search", ["read"])
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {secret}"}) as http:
        found = http.get("/api/v1/items", params={"queue": queue, "text": "invoice"}).json()
        assert [i["id"] for i in found["items"]] == [invoice.id] and found["next_cursor"] is None
        assert found["searched_to"] == 1, "a title is searched: this small table whole"
        since = (invoice.created_at - timedelta(minutes=1)).isoformat()
        assert len(http.get("/api/v1/items", params={"queue": queue, "created_since": since}).json()["items"]) == 2
        later = (invoice.created_at + timedelta(days=1)).isoformat()
        assert http.get("/api/v1/items", params={"queue": queue, "created_since": later}).json()["items"] == []
        bad = http.get("/api/v1/items", params={"created_before": "yesterday"})
        assert bad.status_code == 400 and bad.json()["error"]["field"] == "created_before"
    with signed_in_client(api, secret) as (http, _):
        listed = http.get("/items", params={"queue": queue, "text": "Invoice", "since": "1h"})
        assert listed.status_code == 200 and f'href="/items/{invoice.id}"' in listed.text
        assert "Sync account 7" not in listed.text
        wrong = http.get("/items", params={"since": "last tuesday"})
        assert wrong.status_code == 200 and "since: &#39;last tuesday&#39; is neither" in wrong.text


def test_a_filtered_page_searches_a_bounded_stretch_and_goes_on_below_it(
    web_wq: WorkQueue, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = [web_wq.enqueue(queue, f"report {n}").item.id for n in range(5)]
    monkeypatch.setattr(feed, "SEARCH_SCAN", 2)  # a stretch of two items instead of 10,000
    pages = []
    cursor = None
    while True:
        found = web_wq.run_steps(feed.item_page(queue=queue, text="REPORT", limit=10, cursor=cursor))
        pages.append(found)
        if found.next_cursor is None:
            break
        cursor = found.next_cursor
    # Newest first, two items looked at a page; the pages below reach the other tests' (older) items.
    assert [[i.id for i in p.items] for p in pages[:2]] == [ids[4:2:-1], ids[2:0:-1]]
    assert [p.searched_to for p in pages[:2]] == [ids[3], ids[1]]
    assert [i.id for p in pages for i in p.items] == ids[::-1]
    assert all(len(p.items) <= 2 for p in pages) and pages[-1].searched_to == 1
    # A status with an index of its own reads that index whole: no stretch.
    whole = web_wq.run_steps(feed.item_page(queue=queue, status="pending", text="report", limit=10))
    assert ([i.id for i in whole.items], whole.searched_to) == (ids[::-1], None)
    tomorrow = web_wq.get(ids[4]).created_at + timedelta(days=1)
    newer = web_wq.run_steps(feed.item_page(queue=queue, created_since=tomorrow))
    assert (newer.items, newer.next_cursor) == ([], None), "ids follow creation: nothing further back can match"
