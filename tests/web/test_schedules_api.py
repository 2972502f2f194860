"""Schedules over HTTP with the plan's routes (Phase 4): a round trip through every route, `{id}` as the id
or the name; 401/403/404 on each; a schedule's queue must be one of the token's; changes are audited."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from clawnsole.errors import NotFound
from clawnsole.queue import WorkQueue
from clawnsole.schedules.api import Schedules
from clawnsole.tokens.api import Audit
from tests.web.conftest import TokenMaker

Client = Callable[[str], httpx.Client]
BASE = "/api/v1/schedules"

ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", f"{BASE}/", None, "read"),
    ("POST", f"{BASE}/", {"name": "{name}-new", "queue": "{queue}", "title": "t", "every": "1h"}, "operate"),
    ("GET", f"{BASE}/{{name}}/", None, "read"),
    ("GET", f"{BASE}/{{name}}/runs/", None, "read"),
    ("PATCH", f"{BASE}/{{name}}/", {"title": "changed"}, "operate"),
    ("DELETE", f"{BASE}/{{name}}/", None, "operate"),
    ("POST", f"{BASE}/{{name}}/pause/", None, "operate"),
    ("POST", f"{BASE}/{{name}}/resume/", None, "operate"),
    ("POST", f"{BASE}/{{name}}/run-now/", None, "operate"),
]
IDS = [f"{m} {p}" for m, p, _, _ in ROUTES]
WRONG_SCOPE = {"read": "enqueue", "operate": "work"}


def _call(http: httpx.Client, method: str, path: str, body: dict[str, Any] | None, **fill: Any) -> httpx.Response:
    filled = None if body is None else {k: v.format(**fill) if isinstance(v, str) else v for k, v in body.items()}
    return http.request(method, path.format(**fill), json=filled)


def _schedule(wq: WorkQueue, queue: str) -> str:
    name = f"sched-{queue}"
    Schedules(wq).add(name, queue=queue, title="Review open PRs", cron="0 * * * *", instructions="secret plan")
    return name


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES, ids=IDS)
def test_every_schedule_route_refuses_no_token_and_a_wrong_scope(
    client: httpx.Client,
    as_token: Client,
    token: TokenMaker,
    web_wq: WorkQueue,
    queue: str,
    method: str,
    path: str,
    body: Any,
    scope: str,
) -> None:
    name = _schedule(web_wq, queue)
    assert _call(client, method, path, body, name=name, queue=queue).status_code == 401
    wrong = _call(as_token(token("sched-wrong", [WRONG_SCOPE[scope]])), method, path, body, name=name, queue=queue)
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (403, "forbidden")
    assert Schedules(web_wq).get(name).title == "Review open PRs"


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES[1:], ids=IDS[1:])
def test_every_schedule_route_answers_404_for_a_schedule_of_another_queue(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str, method: str, path: str, body: Any, scope: str
) -> None:
    name = _schedule(web_wq, queue)
    http = as_token(token("sched-elsewhere", ["operate"], queues=["somewhere-else"]))
    response = _call(http, method, path, body, name=name, queue=queue)
    assert (response.status_code, response.json()["error"]["code"]) == (404, "not_found")
    assert [s.name for s in Schedules(web_wq).list() if s.queue == queue] == [name]


def test_the_plans_routes_round_trip_a_schedule_by_name_and_by_id(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    http = as_token(token("sched-operator", ["operate"], queues=[queue]))
    name = f"hourly-{queue}"
    created = http.post(
        f"{BASE}/", json={"name": name, "queue": queue, "title": "Review open PRs", "cron": "0 * * * *"}
    )
    assert created.status_code == 201, created.text
    schedule_id = created.json()["id"]
    assert (created.json()["status"], created.json()["cron"]) == ("active", "0 * * * *")
    assert http.get(f"{BASE}/{schedule_id}/").json()["name"] == name
    assert http.get(f"{BASE}/{name}/").json()["id"] == schedule_id
    assert [s["name"] for s in http.get(f"{BASE}/", params={"status": "active"}).json()["schedules"]] == [name]
    changed = http.patch(f"{BASE}/{schedule_id}/", json={"every": "15m", "title": "Review PRs"})
    assert changed.status_code == 200
    assert (changed.json()["cron"], changed.json()["every"], changed.json()["title"]) == (None, "15m", "Review PRs")
    assert http.post(f"{BASE}/{name}/pause/").json()["status"] == "paused"
    assert http.get(f"{BASE}/", params={"status": "active"}).json()["schedules"] == []
    assert http.post(f"{BASE}/{name}/resume/").json()["status"] == "active"
    ran = http.post(f"{BASE}/{schedule_id}/run-now/")
    assert ran.status_code == 200
    assert (ran.json()["queue"], ran.json()["title"], ran.json()["created"]) == (queue, "Review PRs", True)
    assert web_wq.get(ran.json()["id"]).status == "pending"
    removed = http.delete(f"{BASE}/{name}/")
    assert (removed.status_code, removed.json()["name"]) == (200, name)
    assert http.get(f"{BASE}/{name}/").status_code == 404
    with pytest.raises(NotFound):
        Schedules(web_wq).get(name)
    token_name = next(e.token_name for e in Audit(web_wq).list(limit=200) if e.target == name)
    actions = [(e.action, e.outcome) for e in reversed(Audit(web_wq).list(token=token_name, limit=200))]
    assert actions == [
        ("schedule.create", "ok"),
        ("schedule.update", "ok"),
        ("schedule.pause", "ok"),
        ("schedule.resume", "ok"),
        ("schedule.run_now", "ok"),
        ("schedule.remove", "ok"),
    ]


def test_a_schedule_cannot_be_created_or_moved_into_another_queue(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    http = as_token(token("sched-confined", ["operate"], queues=[queue]))
    refused = http.post(f"{BASE}/", json={"name": f"x-{queue}", "queue": "elsewhere", "title": "t", "every": "1h"})
    assert refused.status_code == 404
    with pytest.raises(NotFound):
        Schedules(web_wq).get(f"x-{queue}")
    name = _schedule(web_wq, queue)
    moved = http.patch(f"{BASE}/{name}/", json={"queue": "elsewhere"})
    assert moved.status_code == 404
    assert Schedules(web_wq).get(name).queue == queue


def test_bad_schedule_input_names_its_field_and_writes_nothing(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    http = as_token(token("sched-bad", ["operate"]))
    cases = [
        ({"name": f"a-{queue}", "queue": queue, "title": "t", "cron": "every day"}, "cron"),
        ({"name": f"b-{queue}", "queue": queue, "title": "t"}, "schedule"),
        ({"name": f"c-{queue}", "title": "t", "every": "1h"}, "queue"),
        ({"name": f"d-{queue}", "queue": queue, "title": "t", "every": "1h", "colour": "red"}, "colour"),
    ]
    for body, field in cases:
        response = http.post(f"{BASE}/", json=body)
        assert response.status_code == 400, body
        assert response.json()["error"]["field"] == field, response.json()
    assert [s for s in Schedules(web_wq).list() if s.queue == queue] == []


def test_a_reader_sees_schedules_without_their_instructions(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    name = _schedule(web_wq, queue)
    shown = as_token(token("sched-reader", ["read"])).get(f"{BASE}/{name}/").json()
    assert "instructions" not in shown
    assert as_token(token("sched-worker", ["work"])).get(f"{BASE}/{name}/").json()["instructions"] == "secret plan"
