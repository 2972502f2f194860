"""Tokens over HTTP: every item route refuses no token (401), a wrong scope (403) and another queue's item
(404); expired and revoked tokens fail; the secret is stored only as its hash; refusals are audited."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from clawnsole.queue import WorkQueue
from clawnsole.tokens.api import Audit, Tokens
from clawnsole.tokens.models import secret_hash
from tests.web.conftest import Api, TokenMaker

Client = Callable[[str], httpx.Client]

# (method, path template, body, the scope the route needs); {queue} and {id} are filled in per test.
ROUTES: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("POST", "/api/v1/queues/{queue}/items", {"title": "t"}, "enqueue"),
    ("GET", "/api/v1/items?queue={queue}", None, "read"),
    ("GET", "/api/v1/items/{id}", None, "read"),
    ("POST", "/api/v1/queues/{queue}/claim", {}, "work"),
    ("POST", "/api/v1/items/{id}/progress", {"lease_token": "00000000-0000-0000-0000-000000000000"}, "work"),
    ("POST", "/api/v1/items/{id}/done", {"lease_token": "00000000-0000-0000-0000-000000000000"}, "work"),
    ("POST", "/api/v1/items/{id}/fail", {"lease_token": "00000000-0000-0000-0000-000000000000", "error": "x"}, "work"),
    ("POST", "/api/v1/items/{id}/cancel", None, "operate"),
    ("POST", "/api/v1/items/{id}/retry", None, "operate"),
    ("GET", "/api/v1/events", None, "read"),
]
IDS = [f"{m} {p.split('?')[0]}" for m, p, _, _ in ROUTES]

# A scope that does not grant what each route needs.
WRONG_SCOPE = {"enqueue": "read", "read": "enqueue", "work": "enqueue", "operate": "work"}


def _call(http: httpx.Client, method: str, path: str, body: dict[str, Any] | None, **fill: Any) -> httpx.Response:
    return http.request(method, path.format(**fill), json=body)


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES, ids=IDS)
def test_every_item_route_refuses_a_request_without_a_token(
    client: httpx.Client, web_wq: WorkQueue, queue: str, method: str, path: str, body: Any, scope: str
) -> None:
    item = web_wq.enqueue(queue, "guarded").item
    response = _call(client, method, path, body, queue=queue, id=item.id)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES, ids=IDS)
def test_every_item_route_refuses_a_token_without_its_scope(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str, method: str, path: str, body: Any, scope: str
) -> None:
    item = web_wq.enqueue(queue, "guarded").item
    http = as_token(token("wrong-scope", [WRONG_SCOPE[scope]]))
    response = _call(http, method, path, body, queue=queue, id=item.id)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    assert web_wq.get(item.id).status == "pending"


@pytest.mark.parametrize(
    ("method", "path", "body", "scope"), [r for r in ROUTES if "{id}" in r[1] or "{queue}/" in r[1]], ids=lambda v: v
)
def test_every_item_route_answers_not_found_for_another_queues_item(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str, method: str, path: str, body: Any, scope: str
) -> None:
    item = web_wq.enqueue(queue, "not yours", instructions="secret plan").item
    http = as_token(token("elsewhere", ["admin"], queues=["some-other-queue"]))
    response = _call(http, method, path, body, queue=queue, id=item.id)
    assert response.status_code == 404, response.text
    assert response.json()["error"]["code"] == "not_found"
    assert "secret plan" not in response.text
    assert web_wq.get(item.id).status == "pending"
    assert len(web_wq.list(queue)) == 1


def test_listing_with_a_queue_bound_token_shows_only_its_queues(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    mine = web_wq.enqueue(queue, "mine").item
    web_wq.enqueue(queue + "-other", "theirs")
    http = as_token(token("bound-reader", ["read"], queues=[queue]))
    listed = http.get("/api/v1/items", params={"limit": 1000}).json()["items"]
    assert {i["queue"] for i in listed} == {queue}
    assert [i["id"] for i in listed] == [mine.id]
    assert http.get("/api/v1/items", params={"queue": queue + "-other"}).json()["items"] == []


def test_an_expired_token_is_refused(as_token: Client, token: TokenMaker, api: Api, queue: str) -> None:
    secret = token("short-lived", ["read"], expires="1s")
    with psycopg.connect(api.db_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE clawnsole.api_tokens SET expires_at = now() - interval '1 second' WHERE name = 'short-lived'"
        )
    response = as_token(secret).get("/api/v1/items")
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_a_revoked_token_is_refused_at_its_next_request(as_token: Client, token: TokenMaker, web_wq: WorkQueue) -> None:
    secret = token("revoked-soon", ["read"])
    http = as_token(secret)
    assert http.get("/api/v1/items").status_code == 200
    Tokens(web_wq).revoke("revoked-soon")
    response = http.get("/api/v1/items")
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


@pytest.mark.parametrize("header", ["Bearer cln_not-a-real-token", "Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer"])
def test_an_unknown_or_malformed_token_is_refused(client: httpx.Client, header: str) -> None:
    response = client.get("/api/v1/items", headers={"Authorization": header})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


def test_only_the_hash_of_a_secret_is_stored(web_wq: WorkQueue, api: Api) -> None:
    made = Tokens(web_wq).create("hashed-only", ["read"])
    assert made.secret.startswith("cln_") and len(made.secret) >= 40
    with psycopg.connect(api.db_url) as conn:
        rows = conn.execute("SELECT * FROM clawnsole.api_tokens WHERE name = 'hashed-only'").fetchall()
        dump = " ".join(str(v) for row in rows for v in row)
    assert made.secret not in dump
    assert secret_hash(made.secret) in dump
    assert "hash" not in made.token.to_json()


def test_two_tokens_never_share_a_secret(web_wq: WorkQueue) -> None:
    tokens = Tokens(web_wq)
    secrets = {tokens.create(f"unique-{n}", ["read"]).secret for n in range(20)}
    assert len(secrets) == 20


def test_a_refused_mutation_is_audited_as_forbidden(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    as_token(token("audited-reader", ["read"])).post(f"/api/v1/queues/{queue}/items", json={"title": "nope"})
    rows = Audit(web_wq).list(token="audited-reader")
    assert [(r.action, r.outcome) for r in rows] == [("item.enqueue", "forbidden")]
    assert web_wq.list(queue) == []


def test_admin_implies_every_scope_and_work_implies_read(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    web_wq.enqueue(queue, "visible")
    assert as_token(token("all-powerful", ["admin"])).get("/api/v1/items", params={"queue": queue}).status_code == 200
    assert as_token(token("a-worker", ["work"])).get("/api/v1/items", params={"queue": queue}).status_code == 200
    assert as_token(token("a-producer", ["enqueue"])).get("/api/v1/items", params={"queue": queue}).status_code == 403
