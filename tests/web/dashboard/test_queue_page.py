"""The queue page: pause a queue under a real `clawnsole workqueue worker-loop` and watch it stop claiming, then
resume it and watch it claim again; set the limits (a bad one is refused naming its field); a read-only token
sees no controls and its forged controls are refused 403 with nothing changed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx
from playwright.sync_api import expect

from clawnsole.queue import WorkQueue
from clawnsole.queues.api import Queues
from clawnsole.tokens.api import Audit
from tests.web.conftest import Api, TokenMaker
from tests.web.dashboard.conftest import TIMEOUT_MS, SignIn
from tests.web.dashboard.helpers import signed_in_client, worker_loop
from tests.worker.helpers import wait_for


def row(page: Any, item_id: int) -> Any:
    """The status badge of an item's row in the page's items table."""
    return page.locator(f"table.items tr:has(a[href='/items/{item_id}']) .status")


def test_pausing_a_queue_stops_a_running_worker_claiming_and_resuming_lets_it_claim_again(
    api: Api, sign_in: SignIn, token: TokenMaker, web_wq: WorkQueue, shot: Any
) -> None:
    queue, side = "media-resize", "media-side"  # this module's database is its own
    page = sign_in(token("dash-operator", ["operate"]))
    # One slot, two queues: each claim takes the single best due item of both, by priority.
    with worker_loop(api.db_url, queue, "dash-worker", "--queue", side, "--concurrency", "1"):
        first = web_wq.enqueue(queue, "Resize the March uploads", kind="resize").item
        page.goto(f"/queues/{queue}")
        expect(row(page, first.id)).to_have_text(
            "done", timeout=TIMEOUT_MS
        )  # live: claimed and done by the worker meanwhile

        page.click("button:has-text('Pause')")
        expect(page.locator(".flash")).to_contain_text(f"paused {queue}")
        expect(page.locator(".queue-state .state")).to_have_text("paused")
        held = web_wq.enqueue(queue, "Resize the April uploads", kind="resize", priority=100).item
        probe = web_wq.enqueue(side, "Side job", priority=0).item
        # The worker claimed the low-priority side job after the high-priority item was enqueued: it would
        # have taken that one first had the queue not been paused.
        wait_for(lambda: web_wq.get(probe.id).status == "done", timeout=30, what="the worker to claim the side job")
        assert web_wq.get(held.id).status == "pending"
        expect(row(page, held.id)).to_have_text("pending")

        page.click("summary:has-text('Set limits')")
        page.fill("input[name=concurrency]", "lots")
        page.click("button:has-text('Set limits')")
        expect(page.locator(".flash.error")).to_contain_text("concurrency: 'lots' is not a whole number")
        assert Queues(web_wq).get(queue).concurrency_limit is None
        page.click("summary:has-text('Set limits')")
        page.fill("input[name=concurrency]", "4")
        page.fill("input[name=rate]", "600/m")
        page.click("button:has-text('Set limits')")
        expect(page.locator(".flash")).to_contain_text("at most 4 at once, at most 600/m")
        expect(page.locator(".queue-limits")).to_contain_text("of 600")
        shot(page, "queue")

        page.click("button:has-text('Resume')")
        expect(page.locator(".queue-state .state")).to_have_text("active")
        expect(row(page, held.id)).to_have_text("done", timeout=TIMEOUT_MS)
    control = Queues(web_wq).get(queue)
    assert (control.state, control.concurrency_limit, str(control.rate)) == ("active", 4, "600/m")
    name = control.state_by
    actions = [(e.action, e.outcome) for e in Audit(web_wq).list(token=name, limit=50) if e.target == queue]
    assert ("queue.pause", "ok") in actions and ("queue.resume", "ok") in actions
    assert ("queue.limit", "invalid_input") in actions and ("queue.limit", "ok") in actions


def test_a_read_only_token_sees_no_queue_controls_and_its_forged_ones_are_refused(
    api: Api, sign_in: SignIn, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    web_wq.enqueue(queue, "Nightly report")
    secret = token("dash-queue-reader", ["read"])
    page = sign_in(secret)
    page.goto(f"/queues/{queue}")
    expect(page.locator(".queue-state .state")).to_have_text("active")
    expect(row(page, web_wq.list(queue)[0].id)).to_have_text("pending")
    assert page.locator("main button").count() == 0
    assert page.locator("summary:has-text('Set limits')").count() == 0

    with signed_in_client(api, secret) as (http, csrf):
        forged = http.post(f"/queues/{queue}/pause", data={"csrf": csrf})
        assert forged.status_code == 403
        assert "lacks the &#39;operate&#39; scope" in forged.text
        no_csrf = http.post(f"/queues/{queue}/limits", data={"concurrency": "1"})
        assert no_csrf.status_code == 403
    control = Queues(web_wq).get(queue)
    assert (control.state, control.concurrency_limit) == ("active", None)
    refused = [(e.action, e.outcome) for e in Audit(web_wq).list(limit=50) if e.target == queue]
    assert ("queue.pause", "forbidden") in refused and ("queue.limit", "forbidden") in refused


def test_the_api_says_how_much_of_the_rate_window_is_used(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token('rate-reader', ['read'])}"}) as http:
        assert http.get(f"/api/v1/queues/{queue}/rate").json() == {"rate": None}
        Queues(web_wq).limit(queue, rate="100/h", by="test")
        web_wq.enqueue(queue, "counted")
        assert web_wq.claim_next(queue, agent="w")
        usage = http.get(f"/api/v1/queues/{queue}/rate").json()
        assert (usage["rate"], usage["limit"], usage["used"]) == ("100/h", 100, 1)
        claimed_at = web_wq.list(queue)[0].claimed_at
        assert claimed_at is not None and datetime.fromisoformat(usage["window_ends"]) > claimed_at
    limited = token("rate-elsewhere", ["read"], queues=["elsewhere"])
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {limited}"}) as http:
        assert http.get(f"/api/v1/queues/{queue}/rate").status_code == 404
