"""What the operations routes share beyond `auth`: acting as the token in library calls that record an agent.

Kept out of `routes/` (whose every module is a router found by `app.create_app`).
"""

from __future__ import annotations

import copy

from clawnsole.queue import AsyncWorkQueue
from clawnsole.tokens.models import Principal


def as_agent(queue: AsyncWorkQueue, principal: Principal) -> AsyncWorkQueue:
    """The app's work queue acting as the token: the same pool, with the token's name as the agent the
    operations record (a replay's `requeued` by, a schedule's run-now by). A shallow copy of an open queue:
    nothing is opened or closed through it."""
    view = copy.copy(queue)
    view.agent = principal.name
    return view


__all__ = ["as_agent"]
