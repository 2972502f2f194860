"""`GET /api/v1/events`: SSE of item events, fast on an enqueue, resumable with Last-Event-ID, limited to the
token's queues."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from clawnsole.queue import WorkQueue
from clawnsole.web.routes import events as events_route
from tests.web.conftest import Api, TokenMaker
from tests.web.sse import stream

Client = Callable[[str], httpx.Client]


def test_an_enqueue_reaches_an_open_stream_at_once(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The stream's fallback poll is pushed past the client's 10 s read timeout: the event can only arrive in
    # time through the enqueue's notification (LISTEN), so a missed wake-up fails instead of passing slowly.
    monkeypatch.setattr(events_route, "_POLL", 60.0)
    secret = token("sse-reader", ["read"], queues=[queue])
    with stream(api, secret) as events:
        item = web_wq.enqueue(queue, "announced", instructions="never in the stream").item
        event = events.next()
    assert event["event"] == "enqueued"
    assert event["data"]["item_id"] == item.id and event["data"]["queue"] == queue
    assert "never in the stream" not in json.dumps(event)


def test_a_stream_resumed_with_last_event_id_gets_what_it_missed_in_order(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    secret = token("sse-resumer", ["read"], queues=[queue])
    with stream(api, secret) as events:
        item = web_wq.enqueue(queue, "first").item
        seen = events.next()
    # While no stream is open: a claim, a completion and another enqueue.
    claimed = web_wq.claim_next(queue, agent="offline")[0]
    web_wq.done(item.id, agent="offline", lease_token=str(claimed.lease_token))
    second = web_wq.enqueue(queue, "second").item
    with stream(api, secret, last_event_id=seen["id"]) as events:
        missed = [events.next() for _ in range(3)]
    assert [(e["event"], e["data"]["item_id"]) for e in missed] == [
        ("claimed", item.id),
        ("done", item.id),
        ("enqueued", second.id),
    ]
    ids = [int(e["id"]) for e in missed]
    assert ids == sorted(ids) and ids[0] > int(seen["id"])


def test_a_stream_shows_only_the_tokens_queues(api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str) -> None:
    secret = token("sse-bound", ["read"], queues=[queue])
    with stream(api, secret) as events:
        web_wq.enqueue(queue + "-hidden", "not for this token")
        mine = web_wq.enqueue(queue, "for this token").item
        event = events.next()
    assert event["data"]["item_id"] == mine.id


def test_a_bad_last_event_id_is_refused_naming_it(as_token: Client, token: TokenMaker) -> None:
    response = as_token(token("sse-bad", ["read"])).get("/api/v1/events", headers={"Last-Event-ID": "yesterday"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "Last-Event-ID"
