"""Dependency chain operations as generators of named statements (sans-I/O, like `clawnsole.ops`)."""

from __future__ import annotations

from clawnsole import ops
from clawnsole.dependencies.models import Link, Links
from clawnsole.ops import Op, Step


def links(item_id: int) -> Op[Links]:
    """An item's prerequisites and dependents with their status (NotFound for an unknown id)."""
    yield from ops.get(item_id)
    rows = yield Step("item_links", {"id": item_id})
    found = Links()
    for row in rows:
        link = Link(int(row["id"]), row["status"], row["queue"], row["title"])
        (found.prerequisites if row["role"] == "prerequisite" else found.dependents).append(link)
    return found
