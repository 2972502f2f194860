"""`worker-pass` and `worker-loop` through the HTTP API (`$CLAWNSOLE_API_URL` + `$CLAWNSOLE_TOKEN`): real
worker processes against the module's real server, with no database URL in their environment, so anything
that reached for the database instead of the API would fail. The `--exec` children are real processes too."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clawnsole.client import ApiClient
from clawnsole.errors import InvalidInput, LeaseLost
from clawnsole.queue import WorkQueue
from tests.web.conftest import Api, TokenMaker
from tests.worker.helpers import WorkerProcess, wait_for

INSTRUCTIONS = "instructions-for-the-child-only-7f3a"

# The `--exec` child: reports what it was given (its environment and argv) and what came on stdin. With a
# payload `hold`, it stands for long work until the file named there appears (or a signal ends it).
CHILD = """
import json, os, sys, time
item = json.load(sys.stdin)
hold = item["payload"].get("hold")
if hold:
    deadline = time.monotonic() + 60
    while not os.path.exists(hold) and time.monotonic() < deadline:
        time.sleep(0.02)
sys.stderr.write("clawnsole:step work 0.25\\n")
print(json.dumps({"env": dict(os.environ), "argv": sys.argv, "instructions": item["instructions"],
                  "claimed_by": item["claimed_by"], "n": item["payload"].get("n")}))
"""


def _environment(api: Api, secret: str) -> dict[str, str]:
    """The worker's environment: the API's URL and the token, and no database at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWNSOLE_") and k != "DATABASE_URL"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env | {"CLAWNSOLE_API_URL": api.url, "CLAWNSOLE_TOKEN": secret}


@pytest.fixture
def child(tmp_path: Path) -> str:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return f"{sys.executable} {script}"


@pytest.fixture
def start(api: Api, tmp_path: Path) -> Iterator[Any]:
    """`start(secret, command, *args)`: a `clawnsole workqueue <command>` process over HTTP (killed at the end)."""
    started: list[WorkerProcess] = []

    def run(secret: str, command: str, *args: str) -> WorkerProcess:
        n = len(started)
        log, out = tmp_path / f"worker-{n}.log", tmp_path / f"worker-{n}.out"
        with open(log, "wb") as stderr, open(out, "wb") as stdout:
            process = subprocess.Popen(
                [sys.executable, "-m", "clawnsole", "workqueue", command, "--log-format", "json", *args],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=_environment(api, secret),
            )
        started.append(WorkerProcess(process, log, out))
        return started[-1]

    yield run
    for worker in started:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait(10)


def _done_events(wq: WorkQueue, item_ids: list[int]) -> dict[int, list[str]]:
    """Each item's history, event names in order."""
    return {i: [e.event for e in wq.history(i)] for i in item_ids}


def test_worker_pass_over_http_drains_the_queue_with_exec_children(
    start: Any, child: str, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    secret = token("http-pass", ["work"], queues=[queue])
    ids = [web_wq.enqueue(queue, f"item {n}", payload={"n": n}, instructions=INSTRUCTIONS).item.id for n in range(5)]
    worker = start(secret, "worker-pass", "--queue", queue, "--exec", child, "--max-items", "10")
    assert worker.process.wait(60) == 0, worker.output()
    assert secret not in worker.output()
    assert INSTRUCTIONS not in worker.output()
    items = [web_wq.get(i) for i in ids]
    assert [(i.status, i.result["n"], i.claimed_by) for i in items] == [
        ("done", n, "http-pass") for n in range(5)
    ]  # the token's name is the agent
    # The child's step line went to the item's history through the API, as it does on the database.
    steps = [e.detail for e in web_wq.history(ids[0]) if e.event == "step"]
    assert steps == [{"step": "work", "seconds": 0.25, "attempt": 1}]
    records = worker.records()
    assert [r["event"] for r in records if r["event"] in ("starting", "ready", "stopped")] == [
        "starting",
        "ready",
        "stopped",
    ]
    assert records[-1]["reason"] == "queue empty" and records[-1]["done"] == 5


def test_an_exec_child_over_http_sees_neither_the_token_nor_a_database_and_gets_instructions_on_stdin_only(
    start: Any, child: str, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    secret = token("http-env", ["work"], queues=[queue])
    item_id = web_wq.enqueue(queue, "what does the child see", instructions=INSTRUCTIONS).item.id
    worker = start(secret, "worker-pass", "--queue", queue, "--exec", child)
    assert worker.process.wait(60) == 0, worker.output()
    seen = web_wq.get(item_id).result
    env, argv = seen["env"], seen["argv"]
    assert seen["instructions"] == INSTRUCTIONS  # on stdin, with the rest of the item
    for forbidden in ("CLAWNSOLE_TOKEN", "CLAWNSOLE_API_URL", "CLAWNSOLE_DATABASE_URL"):
        assert forbidden not in env
    assert not [k for k, v in env.items() if secret in v or INSTRUCTIONS in v]
    assert not [a for a in argv if secret in a or INSTRUCTIONS in a]
    assert (env["CLAWNSOLE_ITEM_ID"], env["CLAWNSOLE_QUEUE"]) == (str(item_id), queue)
    assert env["CLAWNSOLE_LEASE"] == str(web_wq.get(item_id).lease_token)


def test_worker_loop_over_http_stops_on_sigterm_after_finishing_what_it_holds(
    start: Any, child: str, token: TokenMaker, web_wq: WorkQueue, queue: str, tmp_path: Path
) -> None:
    secret = token("http-loop", ["work"], queues=[queue])
    release = tmp_path / "release"
    worker = start(secret, "worker-loop", "--queue", queue, "--exec", child, "--grace", "30")
    worker.wait_event("ready")
    item_id = web_wq.enqueue(queue, "in flight at SIGTERM", payload={"hold": str(release)}).item.id
    worker.wait_event("claimed")
    worker.process.send_signal(signal.SIGTERM)
    worker.wait_event("stopping")
    assert web_wq.get(item_id).status == "claimed"  # still running: the drain waits for it
    release.touch()
    assert worker.process.wait(30) == 0, worker.output()
    assert web_wq.get(item_id).status == "done"
    stopped = worker.named("stopped")[0]
    assert (stopped["reason"], stopped["done"], stopped["released"]) == ("signal", 1, 0)
    assert secret not in worker.output()


def test_worker_loop_over_http_releases_what_outlives_the_grace_without_charging_the_attempt(
    start: Any, child: str, token: TokenMaker, web_wq: WorkQueue, queue: str, tmp_path: Path
) -> None:
    secret = token("http-grace", ["work"], queues=[queue])
    worker = start(secret, "worker-loop", "--queue", queue, "--exec", child, "--grace", "0.2", "--kill-grace", "1")
    worker.wait_event("ready")
    never = tmp_path / "never"
    item_id = web_wq.enqueue(queue, "outlives the grace", payload={"hold": str(never)}).item.id
    worker.wait_event("claimed")
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(30) == 0, worker.output()
    item = web_wq.get(item_id)
    assert (item.status, item.attempts, item.claimed_by) == ("pending", 0, None)
    released = [e for e in web_wq.history(item_id) if e.event == "released"]
    assert [(e.agent, e.detail) for e in released] == [("http-grace", {"reason": "shutdown"})]
    assert worker.named("stopped")[0]["released"] == 1


def test_a_worker_over_http_refuses_what_needs_the_database_and_exits_6_on_a_refused_token(
    start: Any, child: str, token: TokenMaker, queue: str
) -> None:
    secret = token("http-refusals", ["work"], queues=[queue])
    for option, field in ((("--agent", "me"), "agent"), (("--with-scheduler",), "with-scheduler")):
        worker = start(secret, "worker-loop", "--queue", queue, "--exec", child, *option)
        assert worker.process.wait(30) == 2, worker.output()
        assert f"error: {field}:" in worker.output()
    revoked = start("cln_not-a-token", "worker-pass", "--queue", queue, "--exec", child)
    assert revoked.process.wait(30) == 6, revoked.output()
    elsewhere = start(secret, "worker-pass", "--queue", queue + "-not-mine", "--exec", child)
    assert elsewhere.process.wait(30) == 4, elsewhere.output()
    assert secret not in revoked.output() + elsewhere.output()


def test_heartbeats_over_http_keep_a_long_childs_lease_with_progress_that_extends_it(
    start: Any, child: str, token: TokenMaker, web_wq: WorkQueue, queue: str, tmp_path: Path, api: Api
) -> None:
    secret = token("http-beat", ["work"], queues=[queue])
    thief = ApiClient(api.url, token("http-thief", ["work"], queues=[queue]))
    release = tmp_path / "release"
    worker = start(secret, "worker-loop", "--queue", queue, "--exec", child, "--lease", "1.5")
    worker.wait_event("ready")
    item_id = web_wq.enqueue(queue, "longer than its lease", payload={"hold": str(release)}).item.id
    worker.wait_event("claimed")

    def renewals() -> int:
        # Another worker tries all along: it would recover the item the moment its lease ran out.
        assert thief.claim(queue) == []
        return [e.event for e in web_wq.history(item_id)].count("progress")

    # Three renewals, one every half lease-length: the child has outlived its first lease twice over.
    wait_for(lambda: renewals() >= 3, timeout=30, what="three lease renewals")
    release.touch()
    wait_for(lambda: web_wq.get(item_id).status == "done", timeout=30, what="the item done")
    thief.close()
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(30) == 0, worker.output()
    history = [e.event for e in web_wq.history(item_id)]
    assert history.count("claimed") == 1 and history[-1] == "done"


def test_a_lease_taken_back_while_its_child_runs_stops_the_child_and_records_nothing(
    start: Any, child: str, token: TokenMaker, web_wq: WorkQueue, queue: str, tmp_path: Path, api: Api
) -> None:
    secret = token("http-fenced", ["work"], queues=[queue])
    operator = httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token('http-op', ['operate'])}"})
    worker = start(
        secret,
        "worker-loop",
        "--queue",
        queue,
        "--exec",
        child,
        "--lease",
        "1.5",
        "--grace",
        "0.2",
        "--kill-grace",
        "1",
    )
    worker.wait_event("ready")
    item_id = web_wq.enqueue(queue, "taken back", payload={"hold": str(tmp_path / "never")}).item.id
    worker.wait_event("claimed")
    taken = operator.post("/api/v1/leases/release", json={"id": item_id, "reason": "operator"})
    operator.close()
    assert taken.status_code == 200, taken.text
    # The next renewal is refused (409 lease_lost): the worker stops the child, as on the database.
    lost = worker.wait_event("lease_lost")
    assert lost["id"] == item_id
    worker.process.send_signal(signal.SIGTERM)
    assert worker.process.wait(30) == 0, worker.output()
    history = [e.event for e in web_wq.history(item_id)]
    assert "done" not in history and "failed" not in history
    # Taken back by the operator: pending for the next claim (the worker may have claimed it again since,
    # and then released it at its stop).
    assert web_wq.get(item_id).status == "pending"


def test_two_worker_loops_over_http_do_every_item_exactly_once(
    start: Any, child: str, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    secrets = [token(f"http-demo-{n}", ["work"], queues=[queue]) for n in (1, 2)]
    workers = [start(s, "worker-loop", "--queue", queue, "--exec", child, "--concurrency", "3") for s in secrets]
    for worker in workers:
        worker.wait_event("ready")
    ids = [web_wq.enqueue(queue, f"demo {n}", payload={"n": n}).item.id for n in range(100)]
    wait_for(lambda: len(web_wq.list(queue, "done", limit=1000)) == len(ids), timeout=120, what="every item done")
    for worker in workers:
        worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        assert worker.process.wait(30) == 0, worker.output()
    histories = _done_events(web_wq, ids)
    # From the event history: one claim and one completion per item, nothing lost, nothing run twice.
    assert {i: (h.count("claimed"), h.count("done")) for i, h in histories.items()} == {i: (1, 1) for i in ids}
    by_agent = [web_wq.get(i).claimed_by for i in ids]
    assert {a: by_agent.count(a) for a in set(by_agent)}.keys() == {"http-demo-1", "http-demo-2"}
    done = sum(w.named("stopped")[0]["done"] for w in workers)
    assert done == len(ids)


# The two routes a worker over HTTP needs besides claim, progress, done and fail.
WORKER_ROUTES = [
    ("release", {"lease_token": "00000000-0000-0000-0000-000000000000"}),
    ("step", {"lease_token": "00000000-0000-0000-0000-000000000000", "step": "fetch", "seconds": 1}),
]


@pytest.mark.parametrize(("action", "body"), WORKER_ROUTES, ids=[a for a, _ in WORKER_ROUTES])
def test_the_release_and_step_routes_refuse_no_token_a_wrong_scope_and_another_queues_item(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str, action: str, body: dict[str, Any]
) -> None:
    web_wq.enqueue(queue, "guarded")
    [item] = web_wq.claim_next(queue, agent="someone")
    path = f"/api/v1/items/{item.id}/{action}"
    sent = body | {"lease_token": str(item.lease_token)}
    reader = token("route-reader", ["read", "enqueue"])
    elsewhere = token("route-elsewhere", ["admin"], queues=["some-other-queue"])
    with httpx.Client(base_url=api.url) as http:
        assert http.post(path, json=sent).status_code == 401
        assert http.post(path, json=sent, headers={"Authorization": f"Bearer {reader}"}).status_code == 403
        hidden = http.post(path, json=sent, headers={"Authorization": f"Bearer {elsewhere}"})
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "not_found"
    assert [e.event for e in web_wq.history(item.id)] == ["enqueued", "claimed"]


def test_release_and_step_are_fenced_by_the_lease_token_and_the_tokens_name(
    api: Api, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    client = ApiClient(api.url, token("route-holder", ["work"], queues=[queue]))
    with client:
        web_wq.enqueue(queue, "held over HTTP")
        [held] = client.claim(queue, lease=60)
        with pytest.raises(InvalidInput) as refused:
            client.step(held["id"], held["lease_token"], step="not a name", seconds=1)
        assert refused.value.field == "step"
        assert client.step(held["id"], held["lease_token"], step="fetch", seconds=0.5) is True
        with pytest.raises(LeaseLost):
            client.release(held["id"], "00000000-0000-0000-0000-000000000000")
        released = client.release(held["id"], held["lease_token"], reason="stopping")
        assert (released["status"], released["attempts"], released["claimed_by"]) == ("pending", 0, None)
        # The old claim's token is spent: a second release and a late step are refused or not recorded.
        with pytest.raises(LeaseLost):
            client.release(held["id"], held["lease_token"])
        assert client.step(held["id"], held["lease_token"], step="late", seconds=1) is False
    history = [(e.event, e.agent, e.detail) for e in web_wq.history(held["id"])]
    assert history[2:] == [
        ("step", "route-holder", {"step": "fetch", "seconds": 0.5, "attempt": 1}),
        ("released", "route-holder", {"reason": "stopping"}),
    ]
