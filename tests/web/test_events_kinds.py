"""`GET /api/v1/events` beyond item events: queue control changes, schedules and their runs, alerts firing and
resolving — each limited to the token's queues, narrowed by `?kinds=`, and resumed exactly by Last-Event-ID
(every source from where the stream was), on the module's real server."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from clawnsole.alerts.api import Alerts
from clawnsole.queue import WorkQueue
from clawnsole.queues.api import Queues
from clawnsole.schedules.api import Schedules
from tests.web.conftest import Api, TokenMaker
from tests.web.sse import stream


def _names(events: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for e in events]


def test_queue_control_changes_stream_as_they_happen_with_who_and_what(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    secret = token("sse-queues", ["read"], queues=[queue])
    queues = Queues(web_wq)
    with stream(api, secret) as events:
        queues.pause(queue + "-hidden", by="ops")  # another queue's: not this token's to see
        queues.pause(queue, by="ops")
        paused = events.next()
        queues.drain(queue, by="ops")
        draining = events.next()
        queues.limit(queue, concurrency=3, rate="10/s", by="capacity")
        limits = events.next()
        queues.resume(queue, by="ops")
        resumed = events.next()
    assert _names([paused, draining, limits, resumed]) == [
        "queue.paused",
        "queue.draining",
        "queue.limits",
        "queue.resumed",
    ]
    assert {e["data"]["queue"] for e in (paused, draining, limits, resumed)} == {queue}
    assert (paused["data"]["state"], paused["data"]["state_by"]) == ("paused", "ops")
    assert (limits["data"]["concurrency_limit"], limits["data"]["rate"], limits["data"]["limits_by"]) == (
        3,
        "10/s",
        "capacity",
    )
    assert resumed["data"]["state"] == "active"
    # Ids now carry every source's position, each later than the one before.
    assert all(e["id"].startswith("i") for e in (paused, resumed))
    assert paused["id"] != draining["id"] != limits["id"] != resumed["id"]


def test_schedule_changes_and_runs_stream_without_instructions(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    secret = token("sse-schedules", ["read"], queues=[queue])
    schedules = Schedules(web_wq)
    name = f"nightly-{queue}"
    with stream(api, secret, kinds="schedule") as events:
        schedules.add(f"elsewhere-{queue}", queue=queue + "-hidden", title="not yours", every="1h")
        schedules.add(name, queue=queue, title="nightly report", every="1h", instructions="the secret recipe")
        created = events.next()
        schedules.pause(name)
        paused = events.next()
        schedules.run_now(name)
        ran = events.next()
    assert (created["event"], created["data"]["schedule"], created["data"]["status"]) == (
        "schedule.created",
        name,
        "active",
    )
    assert (paused["event"], paused["data"]["status"]) == ("schedule.updated", "paused")
    assert (ran["event"], ran["data"]["schedule"], ran["data"]["queue"]) == ("schedule.run_now", name, queue)
    assert ran["data"]["item_id"] == web_wq.list(queue)[0].id
    assert "the secret recipe" not in json.dumps([created, paused, ran])


def test_alerts_firing_and_resolving_stream_for_the_tokens_queues(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    secret = token("sse-alerts", ["read"], queues=[queue])
    alerts = Alerts(web_wq)
    alerts.add(f"backlog-{queue}", conditions={"pendingJobs": 2, "queuePattern": f"^{queue}"}, severity="high")
    items = [web_wq.enqueue(queue, f"backlog {n}").item for n in range(2)]
    web_wq.enqueue(queue + "-hidden", "hidden 1")
    web_wq.enqueue(queue + "-hidden", "hidden 2")
    with stream(api, secret, kinds="alert") as events:
        alerts.evaluate()
        fired = events.next()
        for item in items:
            web_wq.cancel(item.id)
        alerts.evaluate()
        resolved = events.next()
    assert (fired["event"], fired["data"]["rule"], fired["data"]["severity"]) == (
        "alert.fired",
        f"backlog-{queue}",
        "high",
    )
    assert (fired["data"]["subject_type"], fired["data"]["subject"], fired["data"]["queue"]) == (
        "queue",
        queue,
        queue,
    )
    assert (resolved["event"], resolved["data"]["state"]) == ("alert.resolved", "resolved")
    assert resolved["data"]["subject"] == queue  # the hidden queue's alert fired too, unseen here


def test_a_stream_resumed_with_last_event_id_gets_exactly_what_it_missed_of_every_kind(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    secret = token("sse-resume-all", ["read"], queues=[queue])
    queues, schedules = Queues(web_wq), Schedules(web_wq)
    name = f"resumed-{queue}"
    with stream(api, secret) as events:
        queues.pause(queue, by="ops")
        seen = events.next()
    assert seen["event"] == "queue.paused"
    # While no stream is open: one change or more of each source.
    item = web_wq.enqueue(queue, "while away").item
    queues.resume(queue, by="ops")
    schedules.add(name, queue=queue, title="report", every="1h")
    schedules.run_now(name)
    with stream(api, secret, last_event_id=seen["id"]) as events:
        missed = events.take(5)
        # Nothing before the resume point came back; what happens now still streams after the replay.
        queues.drain(queue, by="ops")
        after = events.next()
    got = sorted(
        (e["event"], e["data"].get("item_id") or e["data"].get("schedule") or e["data"]["queue"]) for e in missed
    )
    run_item = web_wq.list(queue)[0].id
    assert got == sorted(
        [
            ("enqueued", item.id),
            ("queue.resumed", queue),
            ("schedule.created", name),
            ("schedule.run_now", run_item),
            ("enqueued", run_item),
        ]
    )
    assert after["event"] == "queue.draining"
    # Resuming from the last id gets nothing again but what came after it.
    with stream(api, secret, last_event_id=missed[-1]["id"]) as events:
        assert _names([events.next()]) == ["queue.draining"]


def test_a_bare_item_event_id_resumes_the_other_sources_from_that_events_time(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    secret = token("sse-resume-bare", ["read"], queues=[queue])
    queues = Queues(web_wq)
    queues.pause(queue, by="before")  # before the resume point: not sent again
    with stream(api, secret) as events:
        web_wq.enqueue(queue, "first")
        first = events.next()
    assert first["event"] == "enqueued" and first["id"].isdigit()  # only item events sent: a bare id
    queues.resume(queue, by="after")
    second = web_wq.enqueue(queue, "second").item
    with stream(api, secret, last_event_id=first["id"]) as events:
        missed = events.take(2)
    assert sorted(_names(missed)) == ["enqueued", "queue.resumed"]
    assert [e["data"]["item_id"] for e in missed if e["event"] == "enqueued"] == [second.id]


def test_kinds_narrows_a_stream_and_an_unknown_kind_is_refused_naming_the_field(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    secret = token("sse-kinds", ["read"], queues=[queue])
    with stream(api, secret, kinds="queue") as events:
        web_wq.enqueue(queue, "not a queue event")
        Queues(web_wq).pause(queue, by="ops")
        only = events.next()
    assert only["event"] == "queue.paused"
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {secret}"}) as http:
        refused = http.get("/api/v1/events", params={"kinds": "item,weather"})
        assert refused.status_code == 400 and refused.json()["error"]["field"] == "kinds"
        for bad in ("i1.q2", "i1.q2.s3.r4.a99999999999999999999", "x1"):
            response = http.get("/api/v1/events", headers={"Last-Event-ID": bad})
            assert response.status_code == 400, bad
            assert response.json()["error"]["field"] == "Last-Event-ID"


@pytest.mark.parametrize("kind", ["queue", "schedule", "alert"])
def test_a_token_limited_to_other_queues_sees_none_of_their_control_events(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str, kind: str
) -> None:
    secret = token("sse-blind", ["read"], queues=[queue])
    other = queue + "-other"
    with stream(api, secret, kinds=f"{kind},item") as events:
        if kind == "queue":
            Queues(web_wq).pause(other, by="ops")
        elif kind == "schedule":
            Schedules(web_wq).add(f"blind-{queue}", queue=other, title="x", every="1h")
        else:
            Alerts(web_wq).add(f"blind-{queue}", conditions={"pendingJobs": 1, "queuePattern": f"^{other}$"})
            web_wq.enqueue(other, "fires an alert about the other queue")
            Alerts(web_wq).evaluate()
        # A marker in the token's own queue: the first event this stream sends must be it.
        marker = web_wq.enqueue(queue, "marker").item
        first = events.next()
    assert (first["event"], first["data"]["item_id"]) == ("enqueued", marker.id)
