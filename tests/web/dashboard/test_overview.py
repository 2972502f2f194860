"""The overview page: per-queue counts and throughput from the library's index-backed reads, live."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

from playwright.sync_api import expect

from clawnsole.queue import WorkQueue
from clawnsole.stats.api import Stats
from tests.conftest import SCHEMA
from tests.web.conftest import Api, TokenMaker
from tests.web.dashboard.conftest import SignIn


def _work(wq: WorkQueue, queue: str, done: int, failed: int) -> None:
    for n in range(done + failed):
        wq.enqueue(queue, f"job {n}", max_attempts=1)
    for n in range(done + failed):
        item = wq.claim_next([queue], lease="60")[0]
        if n < done:
            wq.done(item.id, lease_token=item.lease_token)
        else:
            wq.fail(item.id, "boom", lease_token=item.lease_token)


def test_overview_counts_match_the_library_and_the_api(
    web_wq: WorkQueue, queue: str, token: TokenMaker, as_token: Any, sign_in: SignIn, shot: Any
) -> None:
    _work(web_wq, queue, done=5, failed=2)
    for n in range(3):
        web_wq.enqueue(queue, f"waiting {n}")
    row = next(q for q in Stats(web_wq).overview() if q.queue == queue)
    assert (row.pending, row.failed, row.done_1h, row.failed_1h) == (3, 2, 5, 2)
    hour = Stats(web_wq).throughput("1h", "1m", queue=queue)
    assert sum(b.done for b in hour) == 5 and sum(b.failed for b in hour) == 2
    assert 60 <= len(hour) <= 61

    secret = token("overview-reader", ["read"], queues=[queue])
    api_rows = as_token(secret).get("/api/v1/overview").json()["queues"]
    assert [r["queue"] for r in api_rows] == [queue], "a token sees only its queues"
    assert api_rows[0]["pending"] == 3

    page = sign_in(secret)
    table_row = page.locator("table.queues tr", has=page.locator(f"a:text-is('{queue}')"))
    expect(table_row).to_contain_text("active")
    cells = table_row.locator("td")
    expect(cells.nth(2)).to_have_text("3")
    expect(cells.nth(4)).to_have_text("2")
    expect(cells.nth(5)).to_have_text("5")
    expect(page.locator("svg.chart").first).to_be_visible()
    assert page.locator("table.queues a", has_text=re.compile("^q-")).count() == 1
    shot(page, "overview-one-queue")


def test_overview_updates_live_when_the_cli_enqueues(
    api: Api, queue: str, token: TokenMaker, sign_in: SignIn, web_wq: WorkQueue
) -> None:
    web_wq.enqueue(queue, "first")
    page = sign_in(token("overview-live", ["read"], queues=[queue]))
    cell = page.locator("table.queues tr", has=page.locator(f"a:text-is('{queue}')")).locator("td").nth(2)
    expect(cell).to_have_text("1")
    subprocess.run(
        [sys.executable, "-m", "clawnsole", "workqueue", "enqueue", "--queue", queue, "--title", "from the CLI"],
        env={"CLAWNSOLE_DATABASE_URL": api.db_url, "CLAWNSOLE_SCHEMA": SCHEMA, "PATH": "/usr/bin:/bin"},
        check=True,
        capture_output=True,
    )
    # No reload: the live region refreshes on the SSE `changed` event.
    expect(cell).to_have_text("2")


def test_an_empty_overview_says_what_to_do(sign_in: SignIn, token: TokenMaker) -> None:
    page = sign_in(token("overview-empty", ["read"], queues=["nothing-here-yet"]))
    expect(page.locator(".empty")).to_contain_text("clawnsole workqueue enqueue")
