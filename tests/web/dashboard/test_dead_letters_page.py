"""The dead-letter page: groups by queue, kind and error, replay of one item (done afterwards by a real
`clawnsole workqueue worker-loop`), bulk replays shown first and run only when confirmed, and forged or
CSRF-less replays refused with nothing changed."""

from __future__ import annotations

from typing import Any

import psycopg
from playwright.sync_api import expect

from clawnsole.db.sql import statement
from clawnsole.queue import WorkQueue
from clawnsole.tokens.api import Audit
from tests.conftest import SCHEMA
from tests.web.conftest import Api, TokenMaker
from tests.web.dashboard.conftest import SignIn
from tests.web.dashboard.helpers import dead, signed_in_client, worker_loop
from tests.worker.helpers import wait_for


def statuses(wq: WorkQueue, ids: list[int]) -> list[str]:
    return [wq.get(i).status for i in ids]


def test_a_dead_letter_replayed_from_the_page_is_done_by_a_worker(
    api: Api, sign_in: SignIn, token: TokenMaker, web_wq: WorkQueue, queue: str, shot: Any
) -> None:
    reports, mail = f"reports-{queue[2:6]}", f"mail-{queue[2:6]}"
    [first, *_] = dead(web_wq, reports, "report.render", "TimeoutError: renderer did not answer in 30 s", 3, "report")
    dead(web_wq, reports, "report.render", "KeyError: 'customer_id'\nTraceback (most recent call last): ...", 2)
    dead(web_wq, mail, "mail.send", "SMTPRecipientsRefused: 550 mailbox unavailable", 4, "welcome mail")
    page = sign_in(token("dlq-operator", ["operate"]))
    page.goto("/dead-letters")
    groups = page.locator("table.dl-groups tbody tr")
    expect(groups.filter(has_text="TimeoutError: renderer did not answer")).to_contain_text("3")
    expect(groups.filter(has_text="KeyError: 'customer_id'")).not_to_contain_text("Traceback")
    expect(groups.filter(has_text="SMTPRecipientsRefused")).to_contain_text(mail)
    shot(page, "dead-letters")

    with worker_loop(api.db_url, reports, "dlq-page-worker"):
        page.locator(f"#dl-{first} button:has-text('Replay')").click()
        expect(page.locator(".flash")).to_have_text(f"replayed 1 failed item in {reports}")
        wait_for(lambda: web_wq.get(first).status == "done", timeout=30, what="the worker to finish the replayed item")
    page.reload()
    expect(page.locator(f"#dl-{first}")).to_have_count(0)
    expect(groups.filter(has_text="TimeoutError: renderer did not answer")).to_contain_text("2")
    replayed = [e for e in web_wq.history(first) if e.event == "requeued"]
    assert [e.detail for e in replayed] == [{"by": "dlq-operator", "replay": True}]


def test_a_bulk_replay_shows_what_it_will_touch_and_runs_only_when_confirmed(
    sign_in: SignIn, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    group = dead(web_wq, queue, "sync.pull", "ConnectionResetError: peer reset", 3)
    picked = dead(web_wq, queue, "sync.push", "ValueError: bad cursor", 3)
    page = sign_in(token("dlq-bulk", ["operate"]))
    page.goto(f"/dead-letters?queue={queue}")
    page.locator("table.dl-groups tr", has_text="ConnectionResetError").locator("button").click()
    expect(page.locator("h1")).to_have_text(f"Confirm: replay 3 failed items in {queue}")
    assert statuses(web_wq, group) == ["failed"] * 3, "showing the plan changes nothing"
    page.click("a:has-text('Cancel')")
    expect(page.locator("table.dl-groups")).to_contain_text("ConnectionResetError")
    assert statuses(web_wq, group) == ["failed"] * 3

    page.locator("table.dl-groups tr", has_text="ConnectionResetError").locator("button").click()
    page.click("button:has-text('Replay 3 items')")
    expect(page.locator(".flash")).to_have_text(f"replayed 3 failed items in {queue}")
    assert statuses(web_wq, group) == ["pending"] * 3
    assert statuses(web_wq, picked) == ["failed"] * 3, "only the group was replayed"

    # A selection of two: shown first too, then only those two.
    for item_id in picked[:2]:
        page.check(f"#dl-{item_id} input[type=checkbox]")
    page.click("button:has-text('Replay selected')")
    expect(page.locator("h1")).to_have_text(f"Confirm: replay 2 failed items in {queue}")
    assert statuses(web_wq, picked) == ["failed"] * 3
    page.click("button:has-text('Replay 2 items')")
    expect(page.locator(".flash")).to_have_text(f"replayed 2 failed items in {queue}")
    assert statuses(web_wq, picked) == ["pending", "pending", "failed"]


def test_a_read_only_token_sees_no_replay_buttons_and_its_forged_replay_is_refused(
    api: Api, sign_in: SignIn, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    ids = dead(web_wq, queue, "nightly", "boom", 2)
    secret = token("dlq-reader", ["read"])
    page = sign_in(secret)
    page.goto(f"/dead-letters?queue={queue}")
    expect(page.locator(f"#dl-{ids[0]}")).to_be_visible()
    expect(page.locator("button:has-text('Replay')")).to_have_count(0)

    with signed_in_client(api, secret) as (http, csrf):
        live = http.get(f"/dead-letters?queue={queue}", headers={"HX-Request": "true", "HX-Target": "live"})
        forged = http.post(
            "/dead-letters/replay", data={"csrf": csrf, "what": "filter", "queue": queue, "confirm": "1"}
        )
    assert live.status_code == 200 and f'id="dl-{ids[0]}"' in live.text, "the live region refreshes by itself"
    assert "<html" not in live.text and "Replay" not in live.text
    assert forged.status_code == 403 and "lacks the &#39;operate&#39; scope" in forged.text
    assert statuses(web_wq, ids) == ["failed", "failed"]
    [row] = [r for r in Audit(web_wq).list(token="dlq-reader") if r.action == "dlq.replay"]
    assert (row.outcome, row.detail) == ("forbidden", {"needs": "operate"})


def test_a_replay_without_the_csrf_token_is_refused_and_changes_nothing(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    ids = dead(web_wq, queue, "nightly", "boom", 1)
    with signed_in_client(api, token("dlq-no-csrf", ["operate"])) as (http, _):
        refused = http.post("/dead-letters/replay", data={"what": "one", "ids": str(ids[0]), "queue": queue})
    assert refused.status_code == 403 and "CSRF" in refused.text
    assert statuses(web_wq, ids) == ["failed"]


def test_an_empty_queue_says_where_dead_letters_come_from_and_bad_filters_name_the_field(
    api: Api, token: TokenMaker, queue: str
) -> None:
    with signed_in_client(api, token("dlq-empty", ["read"], queues=[queue])) as (http, _):
        empty = http.get("/dead-letters")
        bad = http.get("/dead-letters", params={"since": "yesterday"})
    assert empty.status_code == 200
    assert "No dead letters — items that exhaust their attempts land here." in empty.text
    assert bad.status_code == 200 and "since: &#39;yesterday&#39; is not a duration" in bad.text


def test_the_api_counts_dead_letters_by_group_through_the_trouble_index(
    api: Api, as_token: Any, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    dead(web_wq, queue, "a", "E1: one\nline two", 2)
    dead(web_wq, queue, None, "E2", 1)
    answer = as_token(token("dlq-api", ["read"])).get("/api/v1/dlq/groups", params={"queue": queue})
    assert answer.status_code == 200, answer.text
    counted = {(g["queue"], g["kind"], g["error"]): g["items"] for g in answer.json()["groups"]}
    assert counted == {(queue, "a", "E1: one"): 2, (queue, None, "E2"): 1}
    assert as_token(token("dlq-producer", ["enqueue"])).get("/api/v1/dlq/groups").status_code == 403
    elsewhere = as_token(token("dlq-other", ["read"], queues=["elsewhere"])).get("/api/v1/dlq/groups")
    assert elsewhere.json() == {"groups": []}, "a token sees only its own queues' groups"
    base = {"kind": None, "exclude_kinds": [], "since": None, "cutoff": None, "error": None, "ids": None}
    with psycopg.connect(api.db_url) as conn:
        plan = "\n".join(
            str(r[0])
            for r in conn.execute(
                "EXPLAIN " + statement(SCHEMA, "deadletter_groups"),
                base | {"queue": queue, "max_replays": None, "limit": 100},
            )
        )
    assert "items_trouble_idx" in plan and "Seq Scan on items" not in plan, plan
