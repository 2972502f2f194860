"""What an alert notice says, rendered once per channel: Slack Block Kit, a Discord embed, an email's subject
and plain text, a webhook's JSON object.

The outbox row's `message` (written by the evaluation round) is parsed into an `AlertMessage`; every renderer
says the same things: what (rule, summary), where (the subject), since when, how bad (severity), the ids to
look at, the command to run, and how many similar notices the throttle held back. A resolved notice says how
long the alert fired. Everything in a message is data — an item's error text may be hostile — so each renderer
escapes for its channel (Slack's `<!channel>`, Discord's `@everyone`, header line breaks). No I/O here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SEVERITIES = ("critical", "high", "medium", "low")
# The version of the webhook body's shape (docs/alerting.md, "Webhook"); bumped only on an incompatible change.
WEBHOOK_VERSION = 1
# Discord embed colours by severity (and for resolved and test notices).
COLOURS = {
    "critical": 0xD0021B,
    "high": 0xF5732B,
    "medium": 0xF2C744,
    "low": 0x4A90D9,
    "resolved": 0x2EB67D,
    "test": 0x8E8E93,
}
# How many item ids a notice lists before it says "and N more".
MAX_IDS = 10


@dataclass(frozen=True)
class AlertMessage:
    """One notice, as the outbox row's `message` describes it; `at` is when the notice was written."""

    rule: str
    severity: str
    state: str
    subject_type: str
    subject: str
    summary: str
    at: datetime
    description: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    since: datetime | None = None
    item_ids: tuple[int, ...] = ()
    command: str | None = None
    suppressed: int = 0
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, message: Mapping[str, Any], at: datetime) -> AlertMessage:
        """Parse a stored message, tolerating missing or odd fields: a notice is sent whatever it lacks."""
        given = message.get("subject")
        subject: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
        details = message.get("details")
        ids = message.get("item_ids")
        suppressed = message.get("suppressed")
        return cls(
            rule=str(message.get("rule") or "unnamed rule"),
            severity=str(message.get("severity") or "medium").lower(),
            state=str(message.get("state") or "fired").lower(),
            subject_type=str(subject.get("type") or "job"),
            subject=str(subject.get("name") or "?"),
            summary=str(message.get("summary") or ""),
            at=at,
            description=None if message.get("description") is None else str(message["description"]),
            details=details if isinstance(details, Mapping) else {},
            since=_timestamp(message.get("since")),
            item_ids=tuple(int(i) for i in ids if isinstance(i, int)) if isinstance(ids, list) else (),
            command=None if not message.get("command") else str(message["command"]),
            suppressed=suppressed if isinstance(suppressed, int) else 0,
            raw=message,
        )

    @property
    def where(self) -> str:
        """The subject in words: `job nightly-report`, `queue ops`, `schedule digest`."""
        return f"{self.subject_type} {self.subject}"

    def fired_for(self) -> float | None:
        """Seconds from firing to this notice (how long a resolved alert fired), when known."""
        if self.since is None:
            return None
        return max((self.at - self.since).total_seconds(), 0.0)


def _timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def span(seconds: float) -> str:
    """A duration in words a person reads at a glance: 45s, 12m 3s, 4h 10m, 2d 3h."""
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m {secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def _utc(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def headline(message: AlertMessage) -> str:
    """One line: what happened, how bad, where."""
    if message.state == "test":
        return f"[TEST] Clawnsole alert test ({message.severity})"
    if message.state == "resolved":
        took = message.fired_for()
        lasted = f" after {span(took)}" if took is not None else ""
        return f"[RESOLVED] {message.rule}: {message.where}{lasted}"
    return f"[{message.severity.upper()}] {message.rule}: {message.where}"


def facts(message: AlertMessage) -> list[tuple[str, str]]:
    """The labelled facts every channel shows, in order."""
    rows: list[tuple[str, str]] = [("Severity", message.severity), ("Subject", message.where)]
    if message.since is not None:
        if message.state == "resolved":
            rows.append(("Fired", f"{_utc(message.since)}, for {span(message.fired_for() or 0.0)}"))
            rows.append(("Resolved", _utc(message.at)))
        else:
            ago = span(max((message.at - message.since).total_seconds(), 0.0))
            rows.append(("Since", f"{_utc(message.since)} ({ago} before this notice)"))
    if message.item_ids:
        rows.append(("Items", item_list(message.item_ids)))
    for key, value in message.details.items():
        rows.append((str(key), value if isinstance(value, str) else json.dumps(value, default=str)))
    return rows


def item_list(ids: tuple[int, ...]) -> str:
    """The ids to look at, at most MAX_IDS of them."""
    shown = ", ".join(str(i) for i in ids[:MAX_IDS])
    return shown + (f" and {len(ids) - MAX_IDS} more" if len(ids) > MAX_IDS else "")


def suppressed_line(message: AlertMessage) -> str | None:
    """'N similar alerts suppressed' when the throttle held some back since the last notice."""
    if message.suppressed <= 0:
        return None
    noun = "alert" if message.suppressed == 1 else "alerts"
    return f"{message.suppressed} similar {noun} suppressed since the last notice"


def plain_text(message: AlertMessage) -> str:
    """The notice as plain text (an email's body; also the fallback text of chat messages)."""
    lines = [headline(message), ""]
    if message.summary:
        lines += [message.summary, ""]
    if message.description:
        lines += [message.description, ""]
    lines += [f"{label}: {value}" for label, value in facts(message)]
    if message.command:
        lines += ["", f"Look: {message.command}"]
    if (suppressed := suppressed_line(message)) is not None:
        lines += ["", suppressed]
    return "\n".join(lines).rstrip() + "\n"


# --- Slack ------------------------------------------------------------------------------------------------


def _slack_escape(text: str) -> str:
    # Slack's rule: only &, < and > need escaping; then `<!channel>` or `<https://…|…>` in an error text is
    # shown as typed instead of pinging a channel or hiding a link.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def slack_payload(
    message: AlertMessage,
    *,
    channel: str | None = None,
    username: str | None = None,
    icon_emoji: str | None = None,
) -> dict[str, Any]:
    """A Block Kit message (with the plain text as its notification fallback) and the settings' identity."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(headline(message), 150)}}
    ]
    if message.summary:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": _clip(_slack_escape(message.summary), 3000)}}
        )
    # Slack takes at most ten fields per section, each at most 2000 characters.
    fields = [
        {"type": "mrkdwn", "text": _clip(f"*{_slack_escape(label)}*\n{_slack_escape(value)}", 2000)}
        for label, value in facts(message)
    ]
    for start in range(0, len(fields), 10):
        blocks.append({"type": "section", "fields": fields[start : start + 10]})
    if message.command:
        command = _slack_escape(message.command).replace("`", "'")
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _clip(f"Look: `{command}`", 3000)}})
    context = [message.description, suppressed_line(message)]
    notes = [{"type": "mrkdwn", "text": _clip(_slack_escape(n), 3000)} for n in context if n]
    if notes:
        blocks.append({"type": "context", "elements": notes})
    payload: dict[str, Any] = {
        "text": _clip(_slack_escape(f"{headline(message)} {message.summary}".strip()), 3000),
        "blocks": blocks[:50],
    }
    for key, value in (("channel", channel), ("username", username), ("icon_emoji", icon_emoji)):
        if value:
            payload[key] = value
    return payload


# --- Discord ----------------------------------------------------------------------------------------------


def discord_payload(message: AlertMessage, *, username: str | None = None) -> dict[str, Any]:
    """One embed, coloured by severity (green when resolved), that may mention no one."""
    colour = COLOURS.get(message.state if message.state in ("resolved", "test") else message.severity, 0x8E8E93)
    embed: dict[str, Any] = {
        "title": _clip(headline(message), 256),
        "color": colour,
        "timestamp": message.at.astimezone(UTC).isoformat(),
        "footer": {"text": "Clawnsole"},
        # Discord allows 25 fields, names of 256 and values of 1024 characters.
        "fields": [
            {"name": _clip(label, 256), "value": _clip(value or "-", 1024), "inline": len(value) <= 40}
            for label, value in facts(message)[:23]
        ],
    }
    description = "\n\n".join(t for t in (message.summary, message.description) if t)
    if description:
        embed["description"] = _clip(description, 4096)
    if message.command:
        command = message.command.replace("`", "'")
        embed["fields"].append({"name": "Look", "value": _clip(f"`{command}`", 1024)})
    if (suppressed := suppressed_line(message)) is not None:
        embed["fields"].append({"name": "Suppressed", "value": suppressed})
    # No @everyone, @here, role or user pings, whatever the text says.
    payload: dict[str, Any] = {"embeds": [embed], "allowed_mentions": {"parse": []}}
    if username:
        payload["username"] = username
    return payload


# --- email ------------------------------------------------------------------------------------------------


def email_subject(message: AlertMessage) -> str:
    """A one-line subject (a line break in a rule or subject name cannot add a header)."""
    text = headline(message)
    if message.summary and message.state != "test":
        text = f"{text} - {message.summary}"
    return _clip(" ".join(text.split()), 200)


# --- webhook ----------------------------------------------------------------------------------------------


def webhook_body(message: AlertMessage, *, delivery_id: int) -> bytes:
    """The webhook's JSON object: the stored message as written, plus `version`, `delivery_id` (the same on
    every retry of one notice, for receivers to drop duplicates: delivery is at least once) and `created_at`
    (when the notice was written)."""
    body = dict(message.raw) | {
        "version": WEBHOOK_VERSION,
        "delivery_id": delivery_id,
        "created_at": message.at.astimezone(UTC).isoformat(),
    }
    return json.dumps(body, default=str, ensure_ascii=False, separators=(",", ":")).encode()
