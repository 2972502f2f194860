"""The overview of a working installation, in a database of this module's own: four queues with a day of
history, a worker running, a paused queue, dead letters and an alert firing. What it shows is checked
against the library; its screenshot is the one README shows."""

from __future__ import annotations

from typing import Any

import psycopg
from playwright.sync_api import expect

from clawnsole.alerts.api import Alerts
from clawnsole.queue import WorkQueue
from clawnsole.queues.api import Queues
from clawnsole.stats.api import Stats
from tests.conftest import SCHEMA
from tests.web.conftest import Api, TokenMaker
from tests.web.dashboard.conftest import SignIn
from tests.web.dashboard.helpers import worker_loop
from tests.worker.helpers import wait_for

# (queue, kind, items done, attempts failed for good, items left pending)
SCENE = [
    ("builds", "ci.build", 180, 4, 3),
    ("reports", "report.render", 90, 9, 12),
    ("mail", "mail.send", 240, 2, 0),
    ("index", "search.reindex", 40, 0, 25),
]


def _history(wq: WorkQueue, db_url: str) -> None:
    """Each queue's items run through the library, then their events spread over the last day (the
    database's own history, moved back in time), so the charts have a day to show."""
    for queue, kind, done, failed, _ in SCENE:
        for n in range(done + failed):
            wq.enqueue(queue, f"{kind} #{n + 1}", kind=kind, max_attempts=1)
        to_fail = failed
        while claimed := wq.claim_next([queue], lease="60", limit=32):
            for item in claimed:
                if to_fail:
                    to_fail -= 1
                    wq.fail(item.id, "exit status 1: the runner lost its network", lease_token=item.lease_token)
                else:
                    wq.done(item.id, lease_token=item.lease_token)
    with psycopg.connect(db_url, autocommit=True) as conn:
        # Two thirds of the work over the last day, a third in the last hour, each item's events together.
        conn.execute(
            f"""UPDATE {SCHEMA}.item_events e
                   SET at = e.at - CASE WHEN e.item_id % 3 = 0
                                        THEN make_interval(mins => ((e.item_id * 7) % 58 + 1)::int)
                                        ELSE make_interval(mins => ((e.item_id * 37) % 1380 + 60)::int) END"""
        )


def test_the_overview_of_a_working_installation(
    api: Api, web_wq: WorkQueue, token: TokenMaker, sign_in: SignIn, shot: Any
) -> None:
    _history(web_wq, api.db_url)
    for queue, kind, _, _, pending in SCENE:
        for n in range(pending):
            web_wq.enqueue(queue, f"{kind} backlog #{n + 1}", kind=kind)
    Queues(web_wq).pause("index", by="ops-lead")
    Alerts(web_wq).add("reports-dead-letters", conditions={"dlqSize": 5}, severity="high")
    Alerts(web_wq).evaluate()
    expected = {row.queue: row for row in Stats(web_wq).overview()}
    assert expected["reports"].failed == 9 and expected["index"].state == "paused"

    with worker_loop(api.db_url, "builds", "builder-1"):
        wait_for(lambda: Stats(web_wq).overview()[0].pending == 0, timeout=30, what="the worker to drain builds")
        page = sign_in(token("ops-lead", ["operate"]))
        for queue, *_ in SCENE:
            row = page.locator("table.queues tr", has=page.locator(f"a:text-is('{queue}')"))
            expect(row.locator("td").nth(4)).to_have_text(str(expected[queue].failed))
        expect(page.locator("table.queues tr", has_text="index")).to_contain_text("paused")
        expect(page.locator("text=reports-dead-letters")).to_be_visible()
        expect(page.locator("text=builder-1")).to_be_visible()
        shot(page, "overview")
