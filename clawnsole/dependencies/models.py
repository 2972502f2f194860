"""What `show` lists of an item's chain: its prerequisites and its dependents, each with its status."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Link:
    """One item at the other end of a dependency."""

    id: int
    status: str
    queue: str
    title: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Links:
    """An item's prerequisites (what it runs after) and dependents (what runs after it), by id."""

    prerequisites: list[Link] = field(default_factory=list)
    dependents: list[Link] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "prerequisites": [link.to_json() for link in self.prerequisites],
            "dependents": [link.to_json() for link in self.dependents],
        }
