"""`GET /api/v1/events`: SSE of item events, fast on an enqueue, resumable with Last-Event-ID, limited to the
token's queues."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from clawnsole.queue import WorkQueue
from tests.web.conftest import Api, TokenMaker

Client = Callable[[str], httpx.Client]


class Stream:
    """The events of one open SSE response, parsed as they arrive."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.iter_lines()

    def next(self) -> dict[str, Any]:
        """The next event (comments and pings skipped): its id, event name and decoded data."""
        fields: dict[str, str] = {}
        for line in self._lines:
            if line.startswith(":"):
                continue
            if line == "":
                if "data" in fields:
                    return {"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])}
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise AssertionError("the stream ended")


@contextmanager
def stream(api: Api, secret: str, last_event_id: int | None = None) -> Iterator[Stream]:
    headers = {"Authorization": f"Bearer {secret}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    # The read timeout bounds every wait for an event: a missing one fails the test instead of hanging it.
    with (
        httpx.Client(base_url=api.url, timeout=httpx.Timeout(10, read=10)) as http,
        http.stream("GET", "/api/v1/events", headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Stream(response)


def test_an_enqueue_reaches_an_open_stream_at_once(api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str) -> None:
    secret = token("sse-reader", ["read"], queues=[queue])
    with stream(api, secret) as events:
        started = time.monotonic()
        item = web_wq.enqueue(queue, "announced", instructions="never in the stream").item
        event = events.next()
        elapsed = time.monotonic() - started
    assert event["event"] == "enqueued"
    assert event["data"]["item_id"] == item.id and event["data"]["queue"] == queue
    assert "never in the stream" not in json.dumps(event)
    # The budget is 100 ms; a shared CI machine gets some slack, the wake-up is by LISTEN either way.
    assert elapsed < 0.5, f"{elapsed * 1000:.0f} ms"


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
    assert [e["id"] for e in missed] == sorted(e["id"] for e in missed) and missed[0]["id"] > seen["id"]


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
