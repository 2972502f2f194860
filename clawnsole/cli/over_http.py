"""What the `workqueue` commands do differently when they go through the HTTP API (`--api-url`).

Only the few decisions the HTTP path needs: the lease token is required (the API fences every write by
it; there is no by-agent convenience over the network), and a claim names one queue per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from clawnsole.client import ApiClient


def held_lease(lease: str | None) -> str:
    """The lease token of a write over the API: required, since the API fences writes by it alone."""
    from clawnsole.errors import InvalidInput

    if not lease:
        raise InvalidInput(
            "lease", "missing: over the API give --lease (the token from claim-next) or set $CLAWNSOLE_LEASE"
        )
    return lease


def claim_over_http(
    api: ApiClient, queues: Sequence[str], *, lease: str, limit: int, wait: float
) -> list[dict[str, Any]]:
    """Claim up to `limit` items from the queues in the order given (the API claims from one queue per
    request, so several queues are tried in turn, not by priority across them); waiting needs one queue."""
    from clawnsole.errors import InvalidInput

    if wait and len(queues) > 1:
        raise InvalidInput("wait", "over the API, --wait takes one --queue")
    items: list[dict[str, Any]] = []
    for queue in queues:
        items.extend(api.claim(queue, lease=lease, limit=limit - len(items), wait=wait))
        if len(items) >= limit:
            break
    return items
