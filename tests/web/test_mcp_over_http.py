"""`clawnsole mcp` with $CLAWNSOLE_API_URL and $CLAWNSOLE_TOKEN: the tools act through the HTTP API with the
token's scopes and queues, the database URL pointing nowhere."""

from __future__ import annotations

from mcp import ClientSession

from tests.acceptance.test_mcp import Call, mcp_session
from tests.conftest import Cli
from tests.web.conftest import Api, TokenMaker
from tests.web.test_cli_over_http import NOWHERE


def test_the_tools_work_through_the_api_within_the_tokens_queues(api: Api, token: TokenMaker, queue: str) -> None:
    secret = token("mcp-over-http", ["enqueue", "work", "operate"], queues=[queue])

    async def body(session: ClientSession, call: Call) -> None:
        item = await call("workqueue_enqueue", queue=queue, title="Over HTTP", instructions="do it", priority=60)
        assert (item["created"], item["priority"]) == (True, 60)
        claimed = (await call("workqueue_claim_next", queue=queue, lease="60"))["items"]
        assert [(c["id"], c["claimed_by"], c["instructions"]) for c in claimed] == [
            (item["id"], "mcp-over-http", "do it")
        ]
        lease = claimed[0]["lease_token"]
        assert (await call("workqueue_progress", id=item["id"], lease_token=lease, percent=50))[
            "progress_percent"
        ] == 50
        failed = await call("workqueue_fail", id=item["id"], lease_token=lease, error="broken", retry=False)
        assert failed["status"] == "failed"
        assert [d["id"] for d in (await call("dlq_list", queue=queue))["items"]] == [item["id"]]
        counts = (await call("queue_status", queue=queue))["counts"]
        assert [(c["status"], c["items"]) for c in counts] == [("failed", 1)]

        made = await call("schedule_create", name=f"s-{queue}", queue=queue, title="Tick", every="15m")
        assert made["status"] == "active"
        assert (await call("schedule_pause", name=f"s-{queue}"))["status"] == "paused"
        assert (await call("schedule_resume", name=f"s-{queue}"))["status"] == "active"
        assert [s["name"] for s in (await call("schedule_list"))["schedules"]] == [f"s-{queue}"]
        assert (await call("schedule_stop", name=f"s-{queue}"))["name"] == f"s-{queue}"

        elsewhere = await call("workqueue_enqueue", queue="not-my-queue", title="t")
        assert elsewhere["error"].startswith("not_found: ")
        lost = await call("workqueue_done", id=item["id"], lease_token=lease)
        assert lost["error"].startswith(("lease_lost: ", "conflict: "))

    mcp_session(Cli(NOWHERE), body, CLAWNSOLE_API_URL=api.url, CLAWNSOLE_TOKEN=secret)
