"""Helpers the dashboard's test modules share: items in a given state, a real worker process, and an httpx
client signed in to the dashboard."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from clawnsole.queue import WorkQueue
from tests.conftest import SCHEMA
from tests.web.conftest import Api


def dead(wq: WorkQueue, queue: str, kind: str | None, error: str, n: int = 1, title: str = "job") -> list[int]:
    """Items that really went enqueue → claim → fail without retry: dead letters with a history."""
    ids = []
    for index in range(n):
        item = wq.enqueue(queue, f"{title} {index + 1}", kind=kind, max_attempts=3).item
        [claimed] = wq.claim_next(queue, agent="worker-a")
        wq.fail(claimed.id, error, lease_token=str(claimed.lease_token), retry=False)
        ids.append(item.id)
    return ids


@contextmanager
def worker_loop(db_url: str, queue: str, agent: str, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real `clawnsole workqueue worker-loop` process on `queue` running `true` per item (stopped after)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLAWNSOLE_")}
    env |= {"CLAWNSOLE_DATABASE_URL": db_url, "CLAWNSOLE_SCHEMA": SCHEMA}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    command = [sys.executable, "-m", "clawnsole", "workqueue", "worker-loop", "--queue", queue, "--agent", agent]
    process = subprocess.Popen(
        [*command, "--exec", "true", "--poll", "30", "--grace", "5", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


@contextmanager
def signed_in_client(api: Api, secret: str) -> Iterator[tuple[httpx.Client, str]]:
    """An httpx client signed in to the dashboard with `secret` (its session cookie) and its CSRF token."""
    with httpx.Client(base_url=api.url, timeout=30) as http:
        answer = http.post("/sign-in", data={"token": secret, "next": "/"})
        assert answer.status_code == 303 and "clawnsole_session" in http.cookies
        found = re.search(r'name="csrf" value="([^"]+)"', http.get("/").text)
        assert found, "the page carries the session's CSRF token"
        yield http, found.group(1)


def hold(wq: WorkQueue, queue: str, title: str, agent: str, lease: str = "10m") -> tuple[int, str]:
    """An item claimed by `agent` (nobody runs it: the lease stays held): its id and lease token."""
    item = wq.enqueue(queue, title, kind="render.pdf").item
    [claimed] = wq.claim_next(queue, agent=agent, lease=lease)
    assert claimed.id == item.id
    return item.id, str(claimed.lease_token)
