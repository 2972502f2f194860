"""Token and audit operations as generators of named statements (sans-I/O), like `clawnsole.ops`."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from clawnsole import validate
from clawnsole.errors import Conflict, InvalidInput, NotFound
from clawnsole.ops import Op, Step
from clawnsole.tokens.models import (
    SCOPES,
    SECRET_PREFIX,
    AuditEntry,
    CreatedToken,
    Principal,
    TokenInfo,
    Unauthenticated,
    new_secret,
    secret_hash,
)

TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,99}")
# A secret is `cln_` + 43 urlsafe characters; anything far longer is not one of ours and is not hashed.
_MAX_SECRET = 200


def token_name(value: str, field: str = "name") -> str:
    """A token name: 1-100 of letters, digits, '.', '_', ':', '@', '-' (it becomes the agent of its claims)."""
    if not isinstance(value, str) or not TOKEN_NAME.fullmatch(value):
        raise InvalidInput(field, f"{value!r} is not a token name (1-100 of letters, digits, '.', '_', ':', '@', '-')")
    return value


def scopes(values: Iterable[str]) -> list[str]:
    """The scopes, checked and deduplicated in their canonical order."""
    given = list(values)
    if not given:
        raise InvalidInput("scope", f"give at least one of {', '.join(SCOPES)}")
    for value in given:
        if value not in SCOPES:
            raise InvalidInput("scope", f"{value!r} is not one of {', '.join(SCOPES)}")
    return [s for s in SCOPES if s in given]


def create(
    name: str, scope: Iterable[str], *, queues: Iterable[str] | None = None, expires: float | str | None = None
) -> Op[CreatedToken]:
    """Create a token; its secret is returned here once and only its hash is stored."""
    names = None if queues is None else sorted({validate.queue_name(q) for q in queues})
    secret = new_secret()
    rows = yield Step(
        "api_token_create",
        {
            "name": token_name(name),
            "hash": secret_hash(secret),
            "scopes": scopes(scope),
            "queues": names or None,
            "expires_seconds": None if expires is None else validate.duration(expires, "expires"),
        },
    )
    if not rows:
        raise Conflict(f"a token named {name!r} exists already (revoked tokens keep their name)")
    return CreatedToken(TokenInfo.from_row(rows[0]), secret)


def list_tokens() -> Op[list[TokenInfo]]:
    """Every token, by name."""
    rows = yield Step("api_token_list", {})
    return [TokenInfo.from_row(r) for r in rows]


def revoke(name: str) -> Op[TokenInfo]:
    """Revoke a token at once: its next request is refused."""
    rows = yield Step("api_token_revoke", {"name": token_name(name)})
    if rows:
        return TokenInfo.from_row(rows[0])
    current = yield Step("api_token_get", {"name": name})
    if not current:
        raise NotFound(f"no token named {name!r}")
    raise Conflict(f"token {name!r} was revoked already")


def authenticate(secret: str) -> Op[Principal]:
    """The principal a secret stands for; Unauthenticated when it is unknown, expired or revoked."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX) or len(secret) > _MAX_SECRET:
        raise Unauthenticated("the bearer token is not a Clawnsole token")
    rows = yield Step("api_token_authenticate", {"hash": secret_hash(secret)})
    if not rows:
        raise Unauthenticated("unknown bearer token")
    row = rows[0]
    if row["state"] != "live":
        raise Unauthenticated(f"the bearer token is {row['state']}")
    queues = None if row["queues"] is None else frozenset(row["queues"])
    return Principal(name=row["name"], scopes=frozenset(row["scopes"]), queues=queues)


def audit_write(
    token: str | None, action: str, target: str | None, outcome: str, detail: dict[str, Any] | None = None
) -> Op[AuditEntry]:
    """Record one mutation (or refused attempt) made through the API."""
    rows = yield Step(
        "audit_write",
        {
            "token_name": token,
            "action": action,
            "target": target,
            "outcome": outcome,
            "detail": None if detail is None else Jsonb(detail),
        },
    )
    return AuditEntry.from_row(rows[0])


def _since(value: datetime | float | str | None) -> tuple[datetime | None, float | None]:
    """A time, or a duration meaning that long before the database's now: (time, seconds)."""
    if value is None:
        return None, None
    if isinstance(value, datetime):
        return validate.timestamp(value, "since"), None
    try:
        return None, validate.duration(value, "since")
    except InvalidInput:
        if not isinstance(value, str):
            raise
    try:
        return validate.timestamp(value, "since"), None
    except InvalidInput:
        raise InvalidInput("since", f"{value!r} is neither an ISO 8601 time nor a duration (1h, 7d)") from None


def audit_list(
    *,
    since: datetime | float | str | None = None,
    token: str | None = None,
    limit: int = 100,
    before: int | None = None,
) -> Op[list[AuditEntry]]:
    """Audit rows newest first, since a time (or for the last `since`: a duration such as 1h) and/or of one
    token; `before` an id: the page after the one that ended with it."""
    at, seconds = _since(since)
    rows = yield Step(
        "audit_list",
        {
            "before": None if before is None else validate.item_id(before, "before"),
            "since": at,
            "since_seconds": seconds,
            "token_name": None if token is None else token_name(token, "token"),
            "limit": validate.positive_int(limit, "limit", maximum=100_000),
        },
    )
    return [AuditEntry.from_row(r) for r in rows]
