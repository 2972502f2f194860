"""The item routes over a real server: the CLI's JSON, its validation and fencing, claims by many clients."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from clawnsole.queue import WorkQueue
from clawnsole.tokens.api import Audit
from clawnsole.web.app import create_app
from tests.conftest import SCHEMA
from tests.web.conftest import Api, TokenMaker, serve_in_thread, stop_server
from tests.worker.helpers import wait_for

Client = Callable[[str], httpx.Client]


def _count(api: Api, query: str, *args: Any) -> int:
    with psycopg.connect(api.db_url) as conn:
        row = conn.execute(query, args).fetchone()
    assert row is not None
    return int(row[0])


def test_enqueue_answers_created_then_the_existing_item_for_its_dedupe_key(
    as_token: Client, token: TokenMaker, queue: str
) -> None:
    http = as_token(token("producer", ["enqueue"]))
    body = {"title": "nightly", "dedupe_key": "n-1", "payload": {"a": 1}, "instructions": "do it", "priority": "high"}
    first = http.post(f"/api/v1/queues/{queue}/items", json=body)
    again = http.post(f"/api/v1/queues/{queue}/items", json=body)
    assert first.status_code == 201 and first.json()["created"] is True
    assert again.status_code == 200 and again.json()["created"] is False
    assert again.json()["id"] == first.json()["id"]
    assert first.json()["payload"] == {"a": 1} and first.json()["priority"] > 50
    assert "instructions" not in first.json()  # an enqueue-only token does not read instructions back


def test_item_json_is_what_the_cli_prints(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str, api: Api
) -> None:
    from tests.conftest import Cli

    item = web_wq.enqueue(queue, "same shape", instructions="secret", metadata={"team": "a"}).item
    shown = as_token(token("cli-compare", ["operate"])).get(f"/api/v1/items/{item.id}").json()
    printed = Cli(api.db_url)("workqueue", "show", str(item.id))
    assert printed.code == 0, printed.stderr
    import json

    assert shown == json.loads(printed.stdout)


def test_read_tokens_see_no_instructions_and_work_tokens_do(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    item = web_wq.enqueue(queue, "sensitive", instructions="the plan").item
    read = as_token(token("just-reads", ["read"])).get(f"/api/v1/items/{item.id}").json()
    work = as_token(token("does-work", ["work"])).get(f"/api/v1/items/{item.id}").json()
    assert "instructions" not in read
    assert work["instructions"] == "the plan"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": ""}, "title"),
        ({"title": "x", "priority": "urgent-ish"}, "priority"),
        ({"title": "x", "payload": "[1]"}, "payload"),
        ({"title": "x", "delay": "soon"}, "delay"),
        ({"title": "x", "run_at": "2026-01-01T00:00:00"}, "run_at"),
        ({"title": "x", "max_attempts": 0}, "max_attempts"),
        ({"title": "x", "cooldown": "1m"}, "cooldown"),
        ({"title": "x", "lease": "0"}, "lease"),
        ({"title": "x", "metadata": "not json"}, "metadata"),
        ({"title": "x", "colour": "blue"}, "colour"),
        ({}, "title"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str, body: dict[str, Any], field: str
) -> None:
    response = as_token(token("bad-input", ["enqueue"])).post(f"/api/v1/queues/{queue}/items", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_input"
    assert response.json()["error"]["field"] == field
    assert web_wq.list(queue) == []


def test_a_bad_queue_name_is_refused_naming_the_queue(as_token: Client, token: TokenMaker) -> None:
    response = as_token(token("bad-queue", ["enqueue"])).post("/api/v1/queues/has%20space/items", json={"title": "x"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "queue"


def test_a_body_over_one_mebibyte_is_refused_with_413(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    http = as_token(token("big-body", ["enqueue"]))
    huge = {"title": "x", "instructions": "a" * (1024 * 1024 + 10)}
    response = http.post(f"/api/v1/queues/{queue}/items", json=huge)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"

    def chunks() -> Any:  # no Content-Length: the limit holds while the body is read
        yield b'{"title": "x", "instructions": "'
        for _ in range(1100):
            yield b"a" * 1024
        yield b'"}'

    streamed = http.post(
        f"/api/v1/queues/{queue}/items", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413
    assert web_wq.list(queue) == []


def test_claim_progress_done_round_trip_with_the_token_as_agent(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    item = web_wq.enqueue(queue, "work me", instructions="steps").item
    http = as_token(token("round-trip", ["work"]))
    claimed = http.post(f"/api/v1/queues/{queue}/claim", json={"lease": "5m"}).json()["items"]
    assert [c["id"] for c in claimed] == [item.id]
    assert claimed[0]["claimed_by"] == "round-trip" and claimed[0]["instructions"] == "steps"
    lease = claimed[0]["lease_token"]
    progressed = http.post(f"/api/v1/items/{item.id}/progress", json={"lease_token": lease, "percent": 40})
    assert progressed.status_code == 200 and progressed.json()["progress_percent"] == 40
    finished = http.post(f"/api/v1/items/{item.id}/done", json={"lease_token": lease, "result": {"ok": True}})
    assert finished.status_code == 200 and finished.json()["status"] == "done"
    assert web_wq.get(item.id).result == {"ok": True}


def test_a_write_with_a_stale_lease_token_is_refused_with_409(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    item = web_wq.enqueue(queue, "contested").item
    http = as_token(token("fenced", ["work"]))
    first = http.post(f"/api/v1/queues/{queue}/claim", json={"lease": "1s"}).json()["items"][0]
    wait_expired = time.monotonic() + 10
    second: list[dict[str, Any]] = []
    while not second and time.monotonic() < wait_expired:  # the 1 s lease runs out; the next claim recovers it
        second = http.post(f"/api/v1/queues/{queue}/claim", json={"lease": "5m", "wait": 1}).json()["items"]
    assert second and second[0]["lease_token"] != first["lease_token"]
    stale = http.post(f"/api/v1/items/{item.id}/done", json={"lease_token": first["lease_token"]})
    assert stale.status_code == 409
    assert stale.json()["error"]["code"] == "lease_lost"
    assert web_wq.get(item.id).status == "claimed"
    assert http.post(f"/api/v1/items/{item.id}/done", json={"lease_token": second[0]["lease_token"]}).status_code == 200


def test_done_without_a_lease_token_names_the_field(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    item = web_wq.enqueue(queue, "needs a token").item
    response = as_token(token("no-lease", ["work"])).post(f"/api/v1/items/{item.id}/done", json={})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "lease_token"


def test_fail_cancel_and_retry_over_http(as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str) -> None:
    item = web_wq.enqueue(queue, "fails", max_attempts=1).item
    worker = as_token(token("failer", ["work"]))
    operator = as_token(token("operator", ["operate"]))
    lease = worker.post(f"/api/v1/queues/{queue}/claim", json={}).json()["items"][0]["lease_token"]
    failed = worker.post(f"/api/v1/items/{item.id}/fail", json={"lease_token": lease, "error": "boom"})
    assert failed.status_code == 200 and failed.json()["status"] == "failed"
    assert operator.post(f"/api/v1/items/{item.id}/retry").json()["status"] == "pending"
    cancelled = operator.post(f"/api/v1/items/{item.id}/cancel", json={"reason": "not needed"})
    assert cancelled.json()["status"] == "cancelled"
    again = operator.post(f"/api/v1/items/{item.id}/cancel")
    assert again.status_code == 409 and again.json()["error"]["code"] == "conflict"


def test_every_mutation_writes_an_audit_row_with_its_outcome(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    http = as_token(token("audited-worker", ["enqueue", "work"]))
    item_id = http.post(f"/api/v1/queues/{queue}/items", json={"title": "audit me"}).json()["id"]
    lease = http.post(f"/api/v1/queues/{queue}/claim", json={}).json()["items"][0]["lease_token"]
    http.post(f"/api/v1/items/{item_id}/progress", json={"lease_token": lease, "note": "half"})
    http.post(f"/api/v1/items/{item_id}/done", json={"lease_token": lease})
    http.post(f"/api/v1/items/{item_id}/done", json={"lease_token": lease})  # refused: already done
    http.post(f"/api/v1/queues/{queue}/claim", json={})  # found nothing: no row
    rows = list(reversed(Audit(web_wq).list(token="audited-worker")))
    assert [(r.action, r.outcome) for r in rows] == [
        ("item.enqueue", "ok"),
        ("item.claim", "ok"),
        ("item.progress", "ok"),
        ("item.done", "ok"),
        ("item.done", "conflict"),
    ]
    assert rows[0].target == f"queue:{queue}" and rows[3].target == f"item:{item_id}"
    assert all(lease not in str(r.detail) for r in rows)


def test_listing_pages_by_cursor_newest_first(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    ids = [web_wq.enqueue(queue, f"n{n}", kind="k" if n % 2 else None).item.id for n in range(7)]
    http = as_token(token("pager", ["read"]))
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"queue": queue, "limit": 3} | ({} if cursor is None else {"cursor": cursor})
        page = http.get("/api/v1/items", params=params).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    kinds = http.get("/api/v1/items", params={"queue": queue, "kind": "k"}).json()["items"]
    assert sorted(i["id"] for i in kinds) == ids[1::2]
    assert http.get("/api/v1/items", params={"status": "bogus"}).json()["error"]["field"] == "status"


def test_a_waiting_claim_is_woken_by_an_enqueue(
    api: Api, as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    http = as_token(token("waiter", ["work"]))
    got: dict[str, Any] = {}

    def claim() -> None:
        started = time.monotonic()
        got["response"] = http.post(f"/api/v1/queues/{queue}/claim", json={"wait": 20})
        got["seconds"] = time.monotonic() - started

    waiter = threading.Thread(target=claim)
    waiter.start()
    # The claim found nothing and waits on the server's LISTEN: only a wake-up can hand it the item.
    wakeups = api.server.config.app.state.wakeups
    wait_for(lambda: wakeups.waiting > 0, timeout=10, what="the claim to start waiting")
    item = web_wq.enqueue(queue, "arrives late").item
    waiter.join(30)
    assert [i["id"] for i in got["response"].json()["items"]] == [item.id]
    assert got["seconds"] < 10
    assert (
        as_token(token("waiter-bad", ["work"]))
        .post(f"/api/v1/queues/{queue}/claim", json={"wait": 31})
        .json()["error"]["field"]
        == "wait"
    )


def test_eight_http_clients_claiming_a_thousand_items_get_each_exactly_once(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str, api: Api
) -> None:
    from clawnsole.models import NewItem

    ids = set(web_wq.enqueue_many([NewItem(queue, f"item {n}") for n in range(1000)]))
    done: list[list[int]] = [[] for _ in range(8)]
    errors: list[str] = []

    def work(n: int) -> None:
        http = as_token(token(f"claimer-{n}", ["work"]))
        while True:
            items = http.post(f"/api/v1/queues/{queue}/claim", json={"limit": 5, "lease": "10m"}).json()["items"]
            if not items:
                return
            for item in items:
                response = http.post(f"/api/v1/items/{item['id']}/done", json={"lease_token": item["lease_token"]})
                if response.status_code != 200:
                    errors.append(response.text)
                done[n].append(item["id"])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == []
    finished = [i for per_client in done for i in per_client]
    assert sorted(finished) == sorted(ids)
    with psycopg.connect(api.db_url) as conn:
        claims = conn.execute(
            "SELECT e.item_id, count(*) FROM clawnsole.item_events e JOIN clawnsole.items i ON i.id = e.item_id"
            " WHERE i.queue = %s AND e.event = 'claimed' GROUP BY e.item_id",
            [queue],
        ).fetchall()
        dones = conn.execute(
            "SELECT count(*) FROM clawnsole.item_events e JOIN clawnsole.items i ON i.id = e.item_id"
            " WHERE i.queue = %s AND e.event = 'done'",
            [queue],
        ).fetchone()
    assert Counter(n for _, n in claims) == Counter({1: 1000})
    assert dones == (1000,)
    assert sum(1 for per_client in done if per_client) >= 2  # the work was really shared


def test_the_database_down_answers_503_json_and_readyz_says_so(token: TokenMaker, api: Api) -> None:
    secret = token("outage", ["read"])
    down = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    server, thread, url = serve_in_thread(create_app(down, SCHEMA))
    try:
        with httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {secret}"}) as http:
            assert http.get("/healthz").status_code == 200
            ready = http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["error"]["code"] == "unavailable"
            listed = http.get("/api/v1/items")
            assert listed.status_code == 503
            assert listed.json()["error"]["code"] == "unavailable"
            assert "Traceback" not in listed.text
    finally:
        stop_server(server, thread)
