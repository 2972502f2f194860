"""`clawnsole mcp`: the agent tools over stdio (Model Context Protocol), on the API or on the database."""

from __future__ import annotations

import os

from clawnsole.cli.common import ApiToken, ApiUrl, DatabaseUrl, Schema, api_client, handle_errors, resolve


@handle_errors
def mcp_command(
    database_url: DatabaseUrl = None,
    schema: Schema = None,
    api_url: ApiUrl = None,
    token: ApiToken = None,
) -> None:
    """Serve the agent tools (schedules, enqueue, claim, progress, done, fail, status, dead letters) as an MCP
    server on stdin/stdout: through the HTTP API with $CLAWNSOLE_API_URL and $CLAWNSOLE_TOKEN (that token's
    scopes), else directly on the database."""
    from clawnsole.mcp_server import ApiBackend, DatabaseBackend, serve_stdio

    client = api_client(api_url, token)
    if client is not None:
        with client:
            serve_stdio(ApiBackend(client))
        return
    from clawnsole.queue import WorkQueue

    conninfo, schema_name = resolve(database_url, schema)
    # The tools' agent: $CLAWNSOLE_AGENT, else the library's host:pid:random default.
    with WorkQueue(conninfo, schema=schema_name, agent=os.environ.get("CLAWNSOLE_AGENT") or None) as wq:
        serve_stdio(DatabaseBackend(wq))
