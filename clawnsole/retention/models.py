"""What a cleanup is asked to do (checked), and what it did."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from clawnsole import validate
from clawnsole.errors import InvalidInput
from clawnsole.models import FINISHED, jsonable

DEFAULT_BATCH = 1000
MAX_BATCH = 100_000
# The payload keys of a `clawnsole.cleanup` item (a system schedule's window), as the CLI's options name them.
PAYLOAD_KEYS = ("older_than", "statuses", "queue", "batch")


@dataclass(frozen=True)
class CleanupOptions:
    """Which finished items to delete: finished more than `older_than_seconds` ago, in these statuses, of one
    queue or all, `batch` at a time. Build it with `checked` (or `from_payload`), which validates every field."""

    older_than_seconds: float
    older_than: str
    statuses: tuple[str, ...] = FINISHED
    queue: str | None = None
    batch: int = DEFAULT_BATCH

    @classmethod
    def checked(
        cls,
        older_than: float | str,
        *,
        statuses: Sequence[str] | str | None = None,
        queue: str | None = None,
        batch: int = DEFAULT_BATCH,
    ) -> CleanupOptions:
        """Validated options; InvalidInput names the first bad field."""
        seconds = validate.duration(older_than, "older_than")
        if isinstance(statuses, str):
            statuses = [s.strip() for s in statuses.split(",") if s.strip()]
        chosen = tuple(dict.fromkeys(statuses)) if statuses else FINISHED
        for status in chosen:
            if status not in FINISHED:
                raise InvalidInput(
                    "status", f"{status!r} is not a finished status: cleanup deletes only {', '.join(FINISHED)} items"
                )
        return cls(
            older_than_seconds=seconds,
            older_than=older_than if isinstance(older_than, str) else f"{seconds:g}s",
            statuses=chosen,
            queue=None if queue is None else validate.queue_name(queue),
            batch=validate.positive_int(batch, "batch", maximum=MAX_BATCH),
        )

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> CleanupOptions:
        """The options a `clawnsole.cleanup` item carries: {"older_than": "30d", "statuses": [...], ...}."""
        unknown = sorted(set(payload) - set(PAYLOAD_KEYS))
        if unknown:
            raise InvalidInput(f"payload.{unknown[0]}", f"is not a cleanup option (known: {', '.join(PAYLOAD_KEYS)})")
        if "older_than" not in payload:
            raise InvalidInput("payload.older_than", "is required (e.g. 30d)")
        statuses = payload.get("statuses")
        if statuses is not None and not (
            isinstance(statuses, str) or (isinstance(statuses, list) and all(isinstance(s, str) for s in statuses))
        ):
            raise InvalidInput("payload.statuses", "must be a list of statuses (done, failed, cancelled)")
        try:
            return cls.checked(
                payload["older_than"],
                statuses=statuses,
                queue=payload.get("queue"),
                batch=payload.get("batch", DEFAULT_BATCH),
            )
        except InvalidInput as error:
            raise InvalidInput(f"payload.{error.field}", error.message) from None

    def to_payload(self) -> dict[str, Any]:
        """The payload of a `clawnsole.cleanup` item doing this cleanup (defaults left out)."""
        payload: dict[str, Any] = {"older_than": self.older_than}
        if self.statuses != FINISHED:
            payload["statuses"] = list(self.statuses)
        if self.queue is not None:
            payload["queue"] = self.queue
        if self.batch != DEFAULT_BATCH:
            payload["batch"] = self.batch
        return payload

    def params(self) -> dict[str, Any]:
        """The parameters every cleanup statement shares."""
        return {"statuses": list(self.statuses), "queue": self.queue, "batch": self.batch}


@dataclass(frozen=True)
class CleanupReport:
    """What a cleanup deleted (or, with `dry_run`, would delete), and what it kept on purpose.

    `batches` counts the transactions that deleted something (a dry run: how many it would take).
    `kept_in_cooldown`: finished items whose dedupe key is still in its cooldown (kept until it ends);
    `kept_as_prerequisite`: finished prerequisites of items still waiting. `left`: items that matched but were not
    deleted — locked by someone else when their batch ran, or not reached when the cleanup was `stopped` early
    (the next cleanup takes them).
    """

    cutoff: datetime
    dry_run: bool
    items: int = 0
    events: int = 0
    dependencies: int = 0
    batches: int = 0
    kept_in_cooldown: int = 0
    kept_as_prerequisite: int = 0
    left: int = 0
    stopped: bool = False

    def to_json(self) -> dict[str, Any]:
        return jsonable(asdict(self))  # type: ignore[no-any-return]
