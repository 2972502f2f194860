"""The `workqueue` commands through the HTTP API (`$CLAWNSOLE_API_URL` + `$CLAWNSOLE_TOKEN`): the real CLI in
subprocesses against a real server, with the database URL pointing nowhere, so any command that touched the
database instead of the API would fail with exit 5."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from clawnsole.client import ApiClient
from clawnsole.queue import WorkQueue
from tests.conftest import Cli, CliResult
from tests.web.conftest import Api, TokenMaker

# A database no command can reach: the API path must not need one.
NOWHERE = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=2"


class HttpCli:
    """`clawnsole …` as a subprocess talking to the API with one token."""

    def __init__(self, api: Api, secret: str) -> None:
        self.cli = Cli(NOWHERE)
        self.url = api.url
        self.secret = secret

    def __call__(self, *args: str, token: str | None = None, **env: str) -> CliResult:
        done = self.cli(*args, CLAWNSOLE_API_URL=self.url, CLAWNSOLE_TOKEN=token or self.secret, **env)
        # Whatever happened, the token is in neither stream.
        assert self.secret not in done.stdout + done.stderr
        if token is not None:
            assert token not in done.stdout + done.stderr
        return done


def _one(result: CliResult) -> dict[str, Any]:
    assert result.code == 0, result.stderr
    data = json.loads(result.stdout)
    assert isinstance(data, dict)
    return data


@pytest.fixture
def worker(api: Api, token: TokenMaker, queue: str) -> HttpCli:
    """The CLI over HTTP with a token that may enqueue, work and operate on this test's queue only."""
    return HttpCli(api, token("cli-agent", ["enqueue", "work", "operate"], queues=[queue]))


def test_the_round_trip_enqueue_claim_progress_done_works_over_http_with_no_database(
    worker: HttpCli, queue: str, web_wq: WorkQueue, api: Api
) -> None:
    enqueued = _one(
        worker(
            "workqueue", "enqueue", "--queue", queue, "--title", "Review open PRs", "--instructions", "ship it",
            "--priority", "high", "--dedupe-key", "pr-review-1", "--payload", '{"repo": "clawnsole"}',
        )
    )  # fmt: skip
    assert enqueued["created"] is True
    assert (enqueued["priority"], enqueued["payload"], enqueued["status"]) == (75, {"repo": "clawnsole"}, "pending")
    again = _one(
        worker("workqueue", "enqueue", "--queue", queue, "--title", "Review open PRs", "--dedupeKey", "pr-review-1")
    )
    assert (again["id"], again["created"]) == (enqueued["id"], False)

    claimed = _one(worker("workqueue", "claim-next", "--queue", queue, "--lease", "60"))
    assert (claimed["id"], claimed["status"], claimed["instructions"]) == (enqueued["id"], "claimed", "ship it")
    assert claimed["claimed_by"].startswith("cli-agent")  # the token's name is the agent
    lease = claimed["lease_token"]
    held = {"CLAWNSOLE_ITEM_ID": str(claimed["id"]), "CLAWNSOLE_LEASE": lease}

    progressed = _one(worker("workqueue", "progress", "--note", "3 of 7", "--percent", "40", **held))
    assert (progressed["progress_note"], progressed["progress_percent"]) == ("3 of 7", 40)
    finished = _one(worker("workqueue", "done", "--result", '{"merged": 5}', **held))
    assert (finished["status"], finished["result"]) == ("done", {"merged": 5})

    nothing = worker("workqueue", "claim-next", "--queue", queue)
    assert (nothing.code, nothing.stdout) == (0, "")
    assert web_wq.get(enqueued["id"]).status == "done"

    # The same JSON as the database path prints for the same item.
    over_http = _one(worker("workqueue", "show", str(enqueued["id"])))
    direct = _one(Cli(api.db_url)("workqueue", "show", str(enqueued["id"])))
    assert over_http == direct
    assert [e["event"] for e in over_http["history"]] == ["enqueued", "claimed", "progress", "done"]


def test_list_status_cancel_and_retry_over_http_print_what_the_database_path_prints(
    worker: HttpCli, queue: str, api: Api
) -> None:
    first = _one(worker("workqueue", "enqueue", "--queue", queue, "--title", "one", "--instructions", "secret plan"))
    second = _one(worker("workqueue", "enqueue", "--queue", queue, "--title", "two"))
    direct = Cli(api.db_url)

    listed = worker("workqueue", "list", "--queue", queue, "--json")
    assert listed.code == 0, listed.stderr
    assert json.loads(listed.stdout) == json.loads(direct("workqueue", "list", "--queue", queue, "--json").stdout)
    assert [i["id"] for i in json.loads(listed.stdout)] == [second["id"], first["id"]]
    assert "secret plan" not in listed.stdout
    table = worker("workqueue", "list", "--queue", queue)
    assert table.code == 0 and "TITLE" in table.stdout and "two" in table.stdout

    cancelled = _one(worker("workqueue", "cancel", str(first["id"]), "--reason", "not needed"))
    assert cancelled["status"] == "cancelled"
    retried = _one(worker("workqueue", "retry", "--id", str(first["id"])))
    assert retried["status"] == "pending"

    status = worker("workqueue", "status", "--queue", queue, "--json")
    assert status.code == 0, status.stderr
    counts = json.loads(status.stdout)

    def ageless(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:  # the age grows between the two calls
        return [{k: v for k, v in row.items() if k != "oldest_pending_seconds"} for row in rows]

    assert ageless(counts) == ageless(json.loads(direct("workqueue", "status", "--queue", queue, "--json").stdout))
    assert {(c["queue"], c["status"], c["items"]) for c in counts} == {(queue, "pending", 2)}
    assert worker("workqueue", "status", "--queue", queue).stdout.startswith("QUEUE")


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--priority", "urgent-ish"], "priority"),
        (["--payload", "[1, 2]"], "payload"),
        (["--payload", "{not json"], "payload"),
        (["--delay", "soon"], "delay"),
        (["--run-at", "tomorrow"], "run_at"),
        (["--max-attempts", "0"], "max_attempts"),
        (["--metadata", '"text"'], "metadata"),
        (["--cooldown", "1h"], "cooldown"),  # a cooldown needs a dedupe key: the server says so
        (["--kind", "x" * 300], "kind"),
    ],
)
def test_bad_input_over_http_exits_2_naming_the_field_and_writes_nothing(
    worker: HttpCli, queue: str, web_wq: WorkQueue, args: list[str], field: str
) -> None:
    result = worker("workqueue", "enqueue", "--queue", queue, "--title", "t", *args)
    assert result.code == 2, result.stderr
    assert result.stderr.startswith(f"clawnsole: error: {field}: "), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert web_wq.list(queue) == []


def test_a_wrong_or_missing_scope_token_exits_6_and_is_never_printed(
    api: Api, token: TokenMaker, queue: str, web_wq: WorkQueue
) -> None:
    reader = HttpCli(api, token("cli-reader", ["read"], queues=[queue]))
    wrong = "cln_" + "x" * 43
    refused = reader("workqueue", "enqueue", "--queue", queue, "--title", "t", token=wrong)
    assert refused.code == 6, refused.stderr
    assert "refused the token" in refused.stderr
    no_scope = reader("workqueue", "enqueue", "--queue", queue, "--title", "t")
    assert no_scope.code == 6, no_scope.stderr
    assert web_wq.list(queue) == []
    # Help mentions the variable, never its value.
    helped = reader("workqueue", "enqueue", "--help")
    assert helped.code == 0 and "--token" in helped.stdout


def test_lease_lost_not_found_and_an_unreachable_api_keep_their_exit_codes(
    worker: HttpCli, queue: str, api: Api
) -> None:
    item = _one(worker("workqueue", "enqueue", "--queue", queue, "--title", "t"))
    claimed = _one(worker("workqueue", "claim-next", "--queue", queue))
    stale = "00000000-0000-0000-0000-000000000000"
    lost = worker("workqueue", "done", "--id", str(item["id"]), "--lease", stale)
    assert lost.code == 3, lost.stderr
    no_lease = worker("workqueue", "done", "--id", str(item["id"]), "--agent", claimed["claimed_by"])
    assert no_lease.code == 2 and "lease: " in no_lease.stderr
    missing = worker("workqueue", "show", "987654321")
    assert missing.code == 4, missing.stderr

    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    down = worker("workqueue", "status", "--api-url", f"http://127.0.0.1:{port}")
    assert down.code == 5, down.stderr
    assert f"the API at http://127.0.0.1:{port} is unreachable" in down.stderr
    assert "Traceback" not in down.stderr


def test_the_client_never_shows_its_token_in_a_repr(api: Api) -> None:
    secret = "cln_never-show-me"
    with ApiClient(api.url, secret) as client:
        assert secret not in repr(client) and secret not in str(vars(client).get("base_url"))


def test_an_exec_child_of_a_worker_never_inherits_the_api_token(cli: Cli, tmp_path: Path) -> None:
    seen = tmp_path / "env.txt"
    enqueued = cli("workqueue", "enqueue", "--queue", "children", "--title", "t")
    assert enqueued.code == 0, enqueued.stderr
    child = f'{sys.executable} -c "import os, pathlib; pathlib.Path({str(seen)!r}).write_text(repr(dict(os.environ)))"'
    # A worker on the database (no API URL: with one it would work through the API) whose environment holds
    # a token: its child gets neither (tests/web/test_worker_over_http.py covers a worker over the API).
    ran = cli(
        "workqueue", "worker-pass", "--queue", "children", "--exec", child,
        CLAWNSOLE_TOKEN="cln_operator-secret", CLAWNSOLE_API_URL="",
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    env = seen.read_text()
    assert "CLAWNSOLE_LEASE" in env and "cln_operator-secret" not in env and "CLAWNSOLE_API_URL" not in env
