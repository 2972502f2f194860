"""The operations routes over HTTP (queues, workers, leases, dead letters, stats, status): every route refuses
no token (401), a wrong scope (403) and another queue (404); mutations act as the token and are audited, done
or refused; lists show only the token's queues."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from clawnsole.queue import WorkQueue
from clawnsole.queues.api import Queues
from clawnsole.tokens.api import Audit
from tests.web.conftest import TokenMaker

Client = Callable[[str], httpx.Client]

# (method, path, body, the scope it needs); {queue} and {id} are filled in per test.
ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/api/v1/queues", None, "read"),
    ("GET", "/api/v1/queues/{queue}", None, "read"),
    ("POST", "/api/v1/queues/{queue}/pause", None, "operate"),
    ("POST", "/api/v1/queues/{queue}/resume", None, "operate"),
    ("POST", "/api/v1/queues/{queue}/drain", None, "operate"),
    ("PUT", "/api/v1/queues/{queue}/limits", {"concurrency": 2}, "operate"),
    ("GET", "/api/v1/workers", None, "read"),
    ("GET", "/api/v1/leases", None, "read"),
    ("POST", "/api/v1/leases/release", {"id": "{id}"}, "operate"),
    ("GET", "/api/v1/dlq", None, "read"),
    ("GET", "/api/v1/dlq/{id}", None, "read"),
    ("POST", "/api/v1/dlq/replay", {"queue": "{queue}"}, "operate"),
    ("GET", "/api/v1/stats", None, "read"),
    ("GET", "/api/v1/status", None, "read"),
]
IDS = [f"{m} {p}" for m, p, _, _ in ROUTES]
WRONG_SCOPE = {"read": "enqueue", "operate": "work"}
# The routes that name a queue or an item (in the path or the body): another queue's is 404 for them.
QUEUED = [r for r in ROUTES if "{" in r[1] or r[2]]
QUEUED_IDS = [f"{m} {p}" for m, p, _, _ in QUEUED]


def _call(http: httpx.Client, method: str, path: str, body: dict[str, Any] | None, **fill: Any) -> httpx.Response:
    filled = None
    if body is not None:
        filled = {k: (int(v.format(**fill)) if v == "{id}" else v.format(**fill)) if isinstance(v, str) else v
                  for k, v in body.items()}  # fmt: skip
    return http.request(method, path.format(**fill), json=filled)


def _dead_letter(wq: WorkQueue, queue: str, title: str = "broken") -> int:
    item = wq.enqueue(queue, title, max_attempts=1).item
    [claimed] = wq.claim_next(queue, agent="worker-1")
    wq.fail(claimed.id, "boom", agent="worker-1", lease_token=claimed.lease_token, retry=False)
    return item.id


def _audited(wq: WorkQueue, token_name: str, action: str) -> list[str]:
    return [e.outcome for e in Audit(wq).list(token=token_name, limit=1000) if e.action == action]


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES, ids=IDS)
def test_every_ops_route_refuses_a_request_without_a_token(
    client: httpx.Client, web_wq: WorkQueue, queue: str, method: str, path: str, body: Any, scope: str
) -> None:
    item_id = _dead_letter(web_wq, queue)
    response = _call(client, method, path, body, queue=queue, id=item_id)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES, ids=IDS)
def test_every_ops_route_refuses_a_token_without_its_scope(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str, method: str, path: str, body: Any, scope: str
) -> None:
    item_id = _dead_letter(web_wq, queue)
    response = _call(as_token(token("ops-wrong", [WRONG_SCOPE[scope]])), method, path, body, queue=queue, id=item_id)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(("method", "path", "body", "scope"), QUEUED, ids=QUEUED_IDS)
def test_every_ops_route_answers_404_for_another_queue(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str, method: str, path: str, body: Any, scope: str
) -> None:
    item_id = _dead_letter(web_wq, queue)
    http = as_token(token("ops-elsewhere", ["operate"], queues=["somewhere-else"]))
    if path == "/api/v1/leases/release":
        [claimed] = web_wq.claim_next(web_wq.enqueue(queue, "held").item.queue, agent="worker-2")
        item_id = claimed.id
    response = _call(http, method, path, body, queue=queue, id=item_id)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"
    assert web_wq.get(item_id).status in ("failed", "claimed")  # nothing was touched


def test_queue_lists_show_only_the_tokens_queues(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    other = f"{queue}-other"
    web_wq.enqueue(queue, "mine")
    web_wq.enqueue(other, "not mine")
    http = as_token(token("ops-one-queue", ["read"], queues=[queue]))
    names = [q["name"] for q in http.get("/api/v1/queues").json()["queues"]]
    assert names == [queue]
    assert {c["queue"] for c in http.get("/api/v1/status").json()["status"]} == {queue}
    assert http.get(f"/api/v1/status?queue={other}").status_code == 404


def test_pause_resume_drain_and_limits_change_the_queue_as_the_token_and_are_audited(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    http = as_token(token("ops-operator", ["operate"], queues=[queue]))
    paused = http.post(f"/api/v1/queues/{queue}/pause")
    assert paused.status_code == 200
    assert paused.json()["state"] == "paused"
    assert paused.json()["state_by"].startswith("ops-operator")
    assert Queues(web_wq).get(queue).state == "paused"
    assert http.post(f"/api/v1/queues/{queue}/drain").json()["state"] == "draining"
    assert http.post(f"/api/v1/queues/{queue}/resume").json()["state"] == "active"
    limits = http.put(f"/api/v1/queues/{queue}/limits", json={"concurrency": 3, "rate": "600/m"})
    assert limits.status_code == 200
    assert (limits.json()["concurrency_limit"], limits.json()["rate"]) == (3, "600/m")
    control = Queues(web_wq).get(queue)
    assert (control.concurrency_limit, str(control.rate)) == (3, "600/m")
    name = paused.json()["state_by"]
    for action in ("queue.pause", "queue.drain", "queue.resume", "queue.limit"):
        assert _audited(web_wq, name, action) == ["ok"], action


def test_a_bad_limit_is_refused_naming_its_field_and_the_refusal_is_audited(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    secret = token("ops-bad-limit", ["operate"])
    http = as_token(secret)
    response = http.put(f"/api/v1/queues/{queue}/limits", json={"rate": "fast"})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "rate"
    assert Queues(web_wq).get(queue).rate is None
    name = next(e.token_name for e in Audit(web_wq).list(limit=50) if e.action == "queue.limit" and e.target == queue)
    assert name is not None
    assert _audited(web_wq, name, "queue.limit") == ["invalid_input"]


def test_a_refusal_for_another_queue_is_audited_as_not_found(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    http = as_token(token("ops-audit-404", ["operate"], queues=["only-this"]))
    assert http.post(f"/api/v1/queues/{queue}/pause").status_code == 404
    entries = [e for e in Audit(web_wq).list(limit=100) if e.action == "queue.pause" and e.target == queue]
    assert [e.outcome for e in entries] == ["not_found"]
    assert Queues(web_wq).get(queue).state == "active"


def test_leases_are_listed_and_one_is_released_back_to_pending(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    web_wq.enqueue(queue, "long job")
    [claimed] = web_wq.claim_next(queue, agent="worker-lost")
    name = f"ops-leases-{queue}"
    http = as_token(token(name, ["operate"], queues=[queue]))
    leases = http.get(f"/api/v1/leases?queue={queue}").json()["leases"]
    assert [(lease["id"], lease["agent"]) for lease in leases] == [(claimed.id, "worker-lost")]
    released = http.post("/api/v1/leases/release", json={"id": claimed.id, "reason": "host lost"})
    assert released.status_code == 200
    assert [r["id"] for r in released.json()["released"]] == [claimed.id]
    assert web_wq.get(claimed.id).status == "pending"
    again = http.post("/api/v1/leases/release", json={"id": claimed.id})
    assert again.status_code == 404
    assert _audited(web_wq, name, "lease.release") == ["not_found", "ok"]  # newest first


def test_an_agents_leases_are_released_only_in_the_tokens_queues(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    other = f"{queue}-other"
    web_wq.enqueue(queue, "mine")
    web_wq.enqueue(other, "not mine")
    [mine] = web_wq.claim_next(queue, agent=f"agent-{queue}")
    [theirs] = web_wq.claim_next(other, agent=f"agent-{queue}")
    http = as_token(token("ops-agent-release", ["operate"], queues=[queue]))
    released = http.post("/api/v1/leases/release", json={"agent": f"agent-{queue}"})
    assert [r["id"] for r in released.json()["released"]] == [mine.id]
    assert (web_wq.get(mine.id).status, web_wq.get(theirs.id).status) == ("pending", "claimed")


def test_dead_letters_are_listed_shown_and_replayed_with_a_dry_run_first(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    ids = sorted(_dead_letter(web_wq, queue, f"broken {n}") for n in range(3))
    _dead_letter(web_wq, f"{queue}-other")
    name = f"ops-dlq-{queue}"
    http = as_token(token(name, ["operate"], queues=[queue]))
    listed = http.get("/api/v1/dlq").json()["dead_letters"]
    assert sorted(i["id"] for i in listed) == ids
    assert all("instructions" not in i for i in listed)
    shown = http.get(f"/api/v1/dlq/{ids[0]}").json()
    assert shown["last_error"] == "boom"
    assert [e["event"] for e in shown["history"]][-1] == "failed"
    dry = http.post("/api/v1/dlq/replay", json={"dry_run": True}).json()
    assert (dry["dry_run"], dry["matched"], dry["replayed"]) == (True, 3, 0)
    assert {web_wq.get(i).status for i in ids} == {"failed"}
    done = http.post("/api/v1/dlq/replay", json={"ids": ids[:2]}).json()
    assert (done["replayed"], sorted(done["ids"])) == (2, ids[:2])
    assert [web_wq.get(i).status for i in ids] == ["pending", "pending", "failed"]
    requeued = [e for e in web_wq.history(ids[0]) if e.event == "requeued"]
    assert requeued and requeued[-1].agent == name
    assert _audited(web_wq, name, "dlq.replay") == ["ok", "ok"]


def test_a_token_over_several_queues_must_name_the_queue_it_replays(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    item_id = _dead_letter(web_wq, queue)
    http = as_token(token("ops-dlq-two", ["operate"], queues=[queue, f"{queue}-b"]))
    response = http.post("/api/v1/dlq/replay", json={})
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "queue"
    assert web_wq.get(item_id).status == "failed"


def test_stats_show_the_tokens_queues_over_the_history(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    web_wq.enqueue(queue, "quick", kind="k")
    [claimed] = web_wq.claim_next(queue, agent="w")
    web_wq.done(claimed.id, agent="w", lease_token=claimed.lease_token)
    _dead_letter(web_wq, f"{queue}-other")
    http = as_token(token("ops-stats", ["read"], queues=[queue]))
    rows = http.get("/api/v1/stats", params={"since": "1h"}).json()["stats"]
    assert [(r["queue"], r["kind"], r["done"]) for r in rows] == [(queue, "k", 1)]
    bad = http.get("/api/v1/stats", params={"since": "soon"})
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "since")


def test_workers_are_listed_for_a_read_token(as_token: Client, token: TokenMaker) -> None:
    response = as_token(token("ops-workers", ["read"])).get("/api/v1/workers", params={"all": True})
    assert response.status_code == 200
    assert isinstance(response.json()["workers"], list)


# --- alerts ---------------------------------------------------------------------------------------------------


def test_alert_config_and_history_answer_under_both_prefixes(
    client: httpx.Client, as_token: Client, token: TokenMaker
) -> None:
    http = as_token(token("alerts-reader", ["read"]))
    enqueuer = as_token(token("alerts-enqueuer", ["enqueue"]))
    for prefix in ("/api/alerts", "/api/v1/alerts"):
        for path in ("config", "history"):
            assert client.get(f"{prefix}/{path}").status_code == 401
            assert enqueuer.get(f"{prefix}/{path}").status_code == 403
        config = http.get(f"{prefix}/config")
        assert config.status_code == 200
        assert set(config.json()) == {"settings", "rules"}
        history = http.get(f"{prefix}/history", params={"limit": 50, "severity": "high", "jobId": "nightly"})
        assert history.status_code == 200
        assert isinstance(history.json()["history"], list)
    bad = http.get("/api/alerts/history", params={"severity": "severe"})
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "severity")


def test_alert_rules_are_created_changed_and_deleted_by_an_operator_and_audited(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    http = as_token(token("alerts-operator", ["operate"]))
    name = f"dlq-{queue}"
    created = http.post("/api/v1/alerts/rules", json={"name": name, "conditions": {"dlqSize": 5}, "severity": "high"})
    assert created.status_code == 201, created.text
    assert (created.json()["group"], created.json()["conditions"]) == ("queueHealth", {"dlqSize": 5})
    taken = http.post("/api/v1/alerts/rules", json={"name": name, "conditions": {"dlqSize": 5}})
    assert (taken.status_code, taken.json()["error"]["field"]) == (400, "name")  # as `alert add` (exit 2)
    changed = http.patch(f"/api/v1/alerts/rules/{name}", json={"severity": "low", "enabled": False})
    assert (changed.json()["severity"], changed.json()["enabled"]) == ("low", False)
    listed = http.get("/api/alerts/config").json()["rules"]
    assert [r["severity"] for r in listed if r["name"] == name] == ["low"]
    assert http.delete(f"/api/v1/alerts/rules/{name}").status_code == 200
    assert http.get(f"/api/v1/alerts/rules/{name}").status_code == 404
    bad = http.post("/api/v1/alerts/rules", json={"name": name, "conditions": {"noSuchCondition": 1}})
    assert bad.status_code == 400
    outcomes = [(e.action, e.outcome) for e in Audit(web_wq).list(limit=200) if e.target == name]
    assert sorted(outcomes) == sorted(
        [
            ("alert.rule.create", "ok"),
            ("alert.rule.create", "invalid_input"),
            ("alert.rule.update", "ok"),
            ("alert.rule.delete", "ok"),
            ("alert.rule.create", "invalid_input"),
        ]
    )


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/alerts/rules", {"name": "x", "conditions": {"dlqSize": 1}}),
        ("PATCH", "/api/v1/alerts/rules/x", {"severity": "low"}),
        ("DELETE", "/api/v1/alerts/rules/x", None),
        ("POST", "/api/v1/alerts/test", {"channels": ["webhook"]}),
    ],
    ids=["create", "update", "delete", "test"],
)
def test_alert_changes_refuse_no_token_a_reader_and_a_queue_limited_operator(
    client: httpx.Client, as_token: Client, token: TokenMaker, method: str, path: str, body: Any
) -> None:
    assert client.request(method, path, json=body).status_code == 401
    assert as_token(token("alerts-read-only", ["read"])).request(method, path, json=body).status_code == 403
    limited = as_token(token("alerts-limited", ["operate"], queues=["ops"])).request(method, path, json=body)
    assert (limited.status_code, limited.json()["error"]["code"]) == (403, "forbidden")


def test_an_operator_enables_and_disables_an_alert_channel(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue
) -> None:
    from clawnsole.alerts.api import Alerts

    http = as_token(token("alerts-channels", ["operate"]))
    enabled = http.post("/api/v1/alerts/channels/discord/enable")
    assert enabled.status_code == 200, enabled.text
    assert "discord" in enabled.json()["settings"]["channels"]
    assert "discord" in Alerts(web_wq).settings().channels
    disabled = http.post("/api/v1/alerts/channels/discord/disable")
    assert "discord" not in disabled.json()["settings"]["channels"]
    bad = http.post("/api/v1/alerts/channels/pager/enable")
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "channel")
    reader = as_token(token("alerts-channels-reader", ["read"]))
    assert reader.post("/api/v1/alerts/channels/discord/enable").status_code == 403
    outcomes = [(e.action, e.outcome) for e in Audit(web_wq).list(limit=200) if e.target == "discord"]
    assert sorted(outcomes) == [("alert.channel.disable", "ok"), ("alert.channel.enable", "ok")]


def test_alert_test_sends_a_notice_through_the_servers_webhook_channel(
    as_token: Client, token: TokenMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.alerts.receivers import http_receiver

    http = as_token(token("alerts-tester", ["operate"]))
    with http_receiver() as hook:
        monkeypatch.setenv("CLAWNSOLE_ALERT_WEBHOOK_URL", hook.url("/hook"))
        response = http.post("/api/v1/alerts/test", json={"channels": ["webhook"], "severity": "high"})
        assert response.status_code == 200, response.text
        [result] = response.json()["results"]
        assert (result["channel"], result["ok"], result["status"]) == ("webhook", True, "sent")
        assert len(hook.received("/hook")) == 1
    history = http.get("/api/v1/alerts/history", params={"severity": "high"}).json()["history"]
    assert history[0]["id"] == result["outbox_id"]
    bad = http.post("/api/v1/alerts/test", json={"channels": ["pager"]})
    assert (bad.status_code, bad.json()["error"]["field"]) == (400, "channel")
