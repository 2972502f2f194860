"""`clawnsole mcp` driven by the official SDK's own stdio client, the server a real subprocess on the test's
database (no HTTP server: the tools act on the database directly)."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from clawnsole.queue import WorkQueue
from tests.conftest import Cli

TOOLS = {
    "schedule_create", "schedule_pause", "schedule_resume", "schedule_stop", "schedule_list",
    "workqueue_enqueue", "workqueue_claim_next", "workqueue_progress", "workqueue_done", "workqueue_fail",
    "queue_status", "dlq_list",
}  # fmt: skip

Call = Callable[..., Awaitable[Any]]


def mcp_session(cli: Cli, body: Callable[[ClientSession, Call], Awaitable[None]], **env: str) -> None:
    """Start `clawnsole mcp` as the SDK starts any server, and run `body` with a session and a `call(tool,
    **arguments)` helper returning the tool's structured result (or the error text, for a tool error)."""
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "clawnsole", "mcp"], env=cli.env(CLAWNSOLE_AGENT="mcp-agent", **env)
    )

    async def run() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()

            async def call(tool: str, **arguments: Any) -> Any:
                result = await session.call_tool(tool, arguments)
                if result.is_error:
                    text = result.content[0].text  # type: ignore[union-attr]
                    # The SDK puts "Error executing tool NAME: " before the tool's own message.
                    return {"error": text.removeprefix(f"Error executing tool {tool}: ")}
                assert result.structured_content is not None
                # The text content is the same object, for clients that read only text.
                assert json.loads(result.content[0].text) == result.structured_content  # type: ignore[union-attr]
                return result.structured_content

            await body(session, call)

    asyncio.run(asyncio.wait_for(run(), timeout=60))


def test_every_tool_is_listed_with_a_typed_json_schema(cli: Cli) -> None:
    async def body(session: ClientSession, call: Call) -> None:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert set(tools) == TOOLS
        enqueue = tools["workqueue_enqueue"].input_schema
        assert set(enqueue["required"]) == {"queue", "title"}
        assert enqueue["properties"]["max_attempts"]["type"] == "integer"
        assert tools["workqueue_done"].input_schema["properties"]["id"]["type"] == "integer"
        assert all(tools[name].description for name in TOOLS)

    mcp_session(cli, body)


def test_an_agent_enqueues_claims_reports_and_finishes_through_the_tools(cli: Cli, wq: WorkQueue) -> None:
    async def body(session: ClientSession, call: Call) -> None:
        item = await call(
            "workqueue_enqueue", queue="agents", title="Triage", instructions="label it", priority="high",
            payload={"issue": 7}, dedupe_key="triage-7",
        )  # fmt: skip
        assert (item["created"], item["priority"], item["payload"]) == (True, 75, {"issue": 7})
        again = await call("workqueue_enqueue", queue="agents", title="Triage", dedupe_key="triage-7")
        assert (again["id"], again["created"]) == (item["id"], False)

        claimed = (await call("workqueue_claim_next", queue="agents", lease="60"))["items"]
        assert [(c["id"], c["claimed_by"], c["instructions"]) for c in claimed] == [
            (item["id"], "mcp-agent", "label it")
        ]
        lease = claimed[0]["lease_token"]
        progressed = await call("workqueue_progress", id=item["id"], lease_token=lease, note="reading", percent=30)
        assert progressed["progress_percent"] == 30
        stale = await call("workqueue_done", id=item["id"], lease_token="00000000-0000-0000-0000-000000000000")
        assert stale["error"].startswith("lease_lost: ")
        finished = await call("workqueue_done", id=item["id"], lease_token=lease, result={"label": "bug"})
        assert (finished["status"], finished["result"]) == ("done", {"label": "bug"})
        assert (await call("workqueue_claim_next", queue="agents")) == {"items": []}

        counts = (await call("queue_status", queue="agents"))["counts"]
        assert [(c["queue"], c["status"], c["items"]) for c in counts] == [("agents", "done", 1)]

        bad = await call("workqueue_enqueue", queue="agents", title="t", priority="urgent-ish")
        assert bad["error"].startswith("invalid_input: priority: ")

    mcp_session(cli, body)
    assert [e.event for e in wq.history(wq.list("agents")[0].id)] == ["enqueued", "claimed", "progress", "done"]


def test_a_failed_item_shows_in_dlq_list_without_its_instructions(cli: Cli) -> None:
    async def body(session: ClientSession, call: Call) -> None:
        item = await call("workqueue_enqueue", queue="fragile", title="Flaky", instructions="top secret")
        lease = (await call("workqueue_claim_next", queue="fragile"))["items"][0]["lease_token"]
        failed = await call("workqueue_fail", id=item["id"], lease_token=lease, error="CI is red", retry=False)
        assert failed["status"] == "failed"
        letters = (await call("dlq_list", queue="fragile"))["items"]
        assert [(d["id"], d["last_error"]) for d in letters] == [(item["id"], "CI is red")]
        assert "instructions" not in letters[0]

    mcp_session(cli, body)


def test_schedules_are_created_listed_paused_resumed_and_stopped(cli: Cli) -> None:
    async def body(session: ClientSession, call: Call) -> None:
        made = await call(
            "schedule_create", name="hourly-review", queue="dev", title="Review PRs", cron="0 * * * *",
            timezone="Europe/Berlin",
        )  # fmt: skip
        assert (made["name"], made["status"], made["timezone"]) == ("hourly-review", "active", "Europe/Berlin")
        assert (await call("schedule_pause", name="hourly-review"))["status"] == "paused"
        assert [s["name"] for s in (await call("schedule_list", status="paused"))["schedules"]] == ["hourly-review"]
        assert (await call("schedule_resume", name="hourly-review"))["status"] == "active"
        assert (await call("schedule_stop", name="hourly-review"))["name"] == "hourly-review"
        assert (await call("schedule_list"))["schedules"] == []
        gone = await call("schedule_pause", name="hourly-review")
        assert gone["error"].startswith("not_found: ")
        dup_free = await call("schedule_create", name="bad", queue="dev", title="t", cron="not a cron")
        assert dup_free["error"].startswith("invalid_input: ")

    mcp_session(cli, body)
