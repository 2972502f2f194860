"""`clawnsole token …` (create, list, revoke API tokens), `clawnsole audit` and `clawnsole serve`.

Thin like every command: parse, call `clawnsole.tokens` (or start the web app), print. The web stack is
imported only by `serve`, when it runs.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from clawnsole.cli.common import (
    EXIT_CODES_HELP,
    AsJson,
    DatabaseUrl,
    Schema,
    handle_errors,
    open_queue,
    print_json,
    print_table,
)

token_app = typer.Typer(
    help=f"Bearer tokens for the HTTP API (`clawnsole serve`). {EXIT_CODES_HELP}", no_args_is_help=True
)

_TOKEN_COLUMNS = ["name", "scopes", "queues", "created_at", "expires_at", "last_used_at", "revoked_at"]


def _row(data: dict[str, Any]) -> dict[str, Any]:
    """A token's JSON as table cells: lists joined, all queues shown as `*`."""
    return data | {
        "scopes": ",".join(data["scopes"]),
        "queues": "*" if data["queues"] is None else ",".join(data["queues"]),
    }


@token_app.command("create")
@handle_errors
def create(
    name: Annotated[str, typer.Argument(help="The token's name (the agent of its claims, named in the audit log).")],
    scope: Annotated[
        list[str],
        typer.Option("--scope", help="read, enqueue, work, operate or admin (repeatable).", show_default=False),
    ],
    queue: Annotated[
        list[str] | None,
        typer.Option("--queue", help="Only this queue (repeatable; default: all queues).", show_default=False),
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="Expire after this long (e.g. 90d); default: never.", show_default=False)
    ] = None,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Create a token and print its secret, once: only a hash of it is stored."""
    from clawnsole.tokens.api import Tokens

    with open_queue(database_url, schema) as wq:
        made = Tokens(wq).create(name, scope, queues=queue or None, expires=expires)
    if as_json:
        print_json(made.token.to_json() | {"secret": made.secret})
        return
    print_table([_row(made.token.to_json())], _TOKEN_COLUMNS[:5])
    typer.echo(f"secret: {made.secret}")
    typer.echo("clawnsole: this is the only time the secret is shown; send it as `Authorization: Bearer …`", err=True)


@token_app.command("list")
@handle_errors
def list_(as_json: AsJson = False, database_url: DatabaseUrl = None, schema: Schema = None) -> None:
    """Every token: name, scopes, queues, created, expires, last used, revoked (never a secret)."""
    from clawnsole.tokens.api import Tokens

    with open_queue(database_url, schema) as wq:
        tokens = Tokens(wq).list()
    if as_json:
        print_json([t.to_json() for t in tokens])
        return
    print_table([_row(t.to_json()) for t in tokens], _TOKEN_COLUMNS)


@token_app.command("revoke")
@handle_errors
def revoke(
    name: Annotated[str, typer.Argument(help="The token to revoke.")],
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Revoke a token: its next request is refused (401)."""
    from clawnsole.tokens.api import Tokens

    with open_queue(database_url, schema) as wq:
        revoked = Tokens(wq).revoke(name)
    if as_json:
        print_json(revoked.to_json())
        return
    typer.echo(f"revoked token {revoked.name!r}")


@handle_errors
def audit_command(
    since: Annotated[
        str | None, typer.Option(help="Only rows since this ISO 8601 time, or this long ago (1h, 7d).")
    ] = None,
    token: Annotated[str | None, typer.Option("--token", help="Only rows of this token.", show_default=False)] = None,
    limit: Annotated[int, typer.Option(help="At most this many rows (newest first).")] = 100,
    as_json: AsJson = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """What was changed through the HTTP API: token, action, target, time and outcome, newest first."""
    from clawnsole.tokens.api import Audit

    with open_queue(database_url, schema) as wq:
        rows = Audit(wq).list(since=since, token=token, limit=limit)
    if as_json:
        print_json([r.to_json() for r in rows])
        return
    print_table([r.to_json() for r in rows], ["id", "at", "token_name", "action", "target", "outcome"])


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@handle_errors
def serve_command(
    host: Annotated[str, typer.Option(help="Address to bind (loopback unless TLS or --behind-proxy).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8765,
    behind_proxy: Annotated[
        bool,
        typer.Option(
            "--behind-proxy",
            help="A reverse proxy terminates TLS: trust its X-Forwarded-* headers (from $FORWARDED_ALLOW_IPS, "
            "default 127.0.0.1, only).",
        ),
    ] = False,
    tls_cert: Annotated[str | None, typer.Option("--tls-cert", help="TLS certificate (PEM).")] = None,
    tls_key: Annotated[str | None, typer.Option("--tls-key", help="TLS private key (PEM).")] = None,
    metrics_public: Annotated[bool, typer.Option("--metrics-public", help="Serve /metrics without a token.")] = False,
    database_url: DatabaseUrl = None,
    schema: Schema = None,
) -> None:
    """Serve the dashboard (`/`), the HTTP API (`/api/v1`, docs at `/api/docs`), `/metrics`, `/healthz` and
    `/readyz` until SIGTERM."""
    import os

    from clawnsole.cli.common import resolve
    from clawnsole.errors import InvalidInput

    if (tls_cert is None) != (tls_key is None):
        raise InvalidInput("tls_cert" if tls_cert is None else "tls_key", "give both --tls-cert and --tls-key")
    if not 1 <= port <= 65535:
        raise InvalidInput("port", "must be between 1 and 65535")
    if not _loopback(host) and tls_cert is None and not behind_proxy:
        raise InvalidInput(
            "host",
            f"{host} is not a loopback address: tokens would cross the network in clear; give --tls-cert and "
            "--tls-key, or --behind-proxy when a TLS proxy is in front",
        )
    for path, field in ((tls_cert, "tls_cert"), (tls_key, "tls_key")):
        if path is not None and not os.path.isfile(path):
            raise InvalidInput(field, f"no file {path!r}")
    url, schema_name = resolve(database_url, schema)

    import uvicorn

    from clawnsole.web.app import create_app

    app = create_app(url, schema_name, metrics_public=metrics_public, behind_proxy=behind_proxy)
    scheme = "https" if tls_cert else "http"
    typer.echo(f"clawnsole serve: {scheme}://{host}:{port} (schema {schema_name!r}); SIGTERM stops it", err=True)
    # uvicorn stops on SIGTERM/SIGINT: it stops accepting, lets requests in flight finish (SSE streams end
    # with the server), then runs the lifespan's shutdown, which closes the pool. Afterwards it raises the
    # signal again under the handler it found; with this no-op one a stop asked for ends with exit 0.
    import signal

    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        proxy_headers=behind_proxy,
        forwarded_allow_ips=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1") if behind_proxy else None,
        server_header=False,
        timeout_graceful_shutdown=10,
        log_level="info",
    )
