"""The four channels a notice can leave by — Slack, Discord, email, a generic webhook — configured from the
environment only (`AlertChannelSettings`), with every secret kept out of errors and logs.

A channel's `send` makes one attempt and raises `ChannelError` (its message already redacted) when it failed;
retries belong to the caller (`delivery.py`: a few quick ones within the call, then the outbox's schedule).
Webhook URLs are secrets (whoever has one can post), as are tokens, API keys and the SMTP password: a
`Redactor` built from the settings replaces each with `***` in any text that might be shown.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import httpx

from clawnsole.alerts import messages
from clawnsole.alerts.messages import AlertMessage
from clawnsole.config import AlertChannelSettings
from clawnsole.db.connect import redact as redact_passwords
from clawnsole.errors import InvalidInput

CHANNELS = ("slack", "discord", "email", "webhook")
# Seconds one HTTP request or SMTP conversation may take before the attempt counts as failed.
TIMEOUT = 15.0
_SIGNATURE_HEADER = "X-Clawnsole-Signature"
_USER_AGENT = "clawnsole-alerts/1"
_BODY_EXCERPT = 200


class ChannelError(Exception):
    """One attempt failed. `retry`: worth trying again within the call (a timeout, a 5xx, a 429), not when the
    channel refused the notice itself (a 4xx: a revoked webhook, a bad token). `retry_after`: seconds the
    channel asked us to wait (HTTP 429). The message never holds a secret."""

    def __init__(
        self, message: str, *, retry: bool = True, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry = retry
        self.status = status
        self.retry_after = retry_after


class NotConfigured(ChannelError):
    """The channel has no credentials (or is disabled) in this process's environment."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retry=False)


@dataclass(frozen=True)
class Sent:
    """A notice the channel accepted: its HTTP status or SMTP reply code."""

    status: int | None


@dataclass(frozen=True)
class SlackIdentity:
    """Who a Slack notice comes from (the stored settings' `slack: {channel, username, iconEmoji}`)."""

    channel: str | None = None
    username: str | None = None
    icon_emoji: str | None = None


class Channel(Protocol):
    """One way out for a notice."""

    name: str

    def send(self, message: AlertMessage, *, delivery_id: int) -> Sent:
        """Make one attempt; raise ChannelError (redacted) when it failed."""
        ...


class Redactor:
    """Replaces every configured secret, and any password in a URL, with `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a webhook URL goes as a whole before its path does.
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    @classmethod
    def from_settings(cls, settings: AlertChannelSettings) -> Redactor:
        """A redactor for every secret in these settings (whole values, and the secret parts of URLs)."""
        found: list[str] = []
        for secret in (
            settings.slack_webhook_url,
            settings.slack_bot_token,
            settings.discord_webhook_url,
            settings.smtp_url,
            settings.sendgrid_api_key,
            settings.alert_webhook_url,
            settings.alert_webhook_secret,
        ):
            if secret is None:
                continue
            value = secret.get_secret_value()
            found.append(value)
            parts = urlsplit(value)
            if parts.scheme and parts.netloc:
                # The path and query of a webhook URL are its secret; an SMTP URL's password is its.
                found += [parts.path, parts.query, parts.password or "", unquote(parts.password or "")]
                found += [p for p in parts.path.split("/") if len(p) >= 16]
        return cls(found)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return redact_passwords(text)


def _origin(url: str) -> str:
    """Where a URL points, without its path or query (which, for a webhook, are the secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


class _Http:
    """One httpx client per channel, posting JSON and turning every failure into a redacted ChannelError."""

    def __init__(self, name: str, redactor: Redactor, timeout: float) -> None:
        self._name = name
        self._redact = redactor
        self._timeout = timeout
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def post(self, url: str, *, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        with self._lock:
            if self._client is None:
                # No redirects: a moved webhook is a configuration error to fix, not a place to send a signature.
                self._client = httpx.Client(timeout=self._timeout, follow_redirects=False)
            client = self._client
        try:
            response = client.post(
                url,
                content=body,
                headers={"Content-Type": "application/json", "User-Agent": _USER_AGENT, **(headers or {})},
            )
        except httpx.HTTPError as error:
            # httpx's messages can quote the URL: only its origin is named, and the text is redacted.
            raise ChannelError(
                self._redact(f"{self._name}: cannot reach {_origin(url)}: {type(error).__name__}: {error}")
            ) from None
        if response.status_code >= 300:
            raise self.refused(url, response)
        return response

    def refused(self, url: str, response: httpx.Response) -> ChannelError:
        """The error for a response that is not a success, saying whether a quick retry could help."""
        code = response.status_code
        excerpt = " ".join(response.text[:_BODY_EXCERPT].split())
        retry_after = _retry_after(response.headers.get("Retry-After")) if code == 429 else None
        return ChannelError(
            self._redact(f"{self._name}: HTTP {code} from {_origin(url)}" + (f": {excerpt}" if excerpt else "")),
            retry=code >= 500 or code in (408, 429),
            status=code,
            retry_after=retry_after,
        )

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare for webhooks, and the outbox's own backoff applies


def _json(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False).encode()


class SlackWebhook:
    """Slack through an incoming webhook (`SLACK_WEBHOOK_URL`): Block Kit, answered with `ok`."""

    name = "slack"

    def __init__(self, url: str, identity: SlackIdentity, http: _Http) -> None:
        self._url = url
        self._identity = identity
        self._http = http

    def send(self, message: AlertMessage, *, delivery_id: int) -> Sent:
        """Post the Block Kit message."""
        payload = messages.slack_payload(
            message,
            channel=self._identity.channel,
            username=self._identity.username,
            icon_emoji=self._identity.icon_emoji,
        )
        response = self._http.post(self._url, body=_json(payload))
        return Sent(response.status_code)


class SlackBot:
    """Slack through the Web API (`SLACK_BOT_TOKEN`): chat.postMessage to the settings' channel."""

    name = "slack"

    def __init__(self, token: str, api_url: str, identity: SlackIdentity, http: _Http, redactor: Redactor) -> None:
        self._token = token
        self._url = api_url.rstrip("/") + "/chat.postMessage"
        self._identity = identity
        self._http = http
        self._redact = redactor

    def send(self, message: AlertMessage, *, delivery_id: int) -> Sent:
        """Post with the bot token; Slack answers 200 with `ok: false` and a reason when it refuses."""
        if not self._identity.channel:
            raise NotConfigured(
                "slack: a bot token needs a channel to post to: set settings.slack.channel (alerts.yaml)"
            )
        payload = messages.slack_payload(
            message,
            channel=self._identity.channel,
            username=self._identity.username,
            icon_emoji=self._identity.icon_emoji,
        )
        response = self._http.post(self._url, body=_json(payload), headers={"Authorization": f"Bearer {self._token}"})
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if not isinstance(answer, dict) or answer.get("ok") is not True:
            reason = answer.get("error") if isinstance(answer, dict) else None
            # ratelimited is Slack's 429 in words; anything else (channel_not_found, invalid_auth) is ours to fix.
            raise ChannelError(
                self._redact(f"slack: chat.postMessage refused the message: {reason or 'no reason given'}"),
                retry=reason in ("ratelimited", "internal_error", "service_unavailable", "request_timeout"),
                status=response.status_code,
            )
        return Sent(response.status_code)


class DiscordWebhook:
    """Discord through a webhook (`DISCORD_WEBHOOK_URL`): one embed coloured by severity."""

    name = "discord"

    def __init__(self, url: str, identity: SlackIdentity, http: _Http) -> None:
        self._url = url
        self._username = identity.username
        self._http = http

    def send(self, message: AlertMessage, *, delivery_id: int) -> Sent:
        """Post the embed (Discord answers 204, or 200 with `?wait=true`)."""
        payload = messages.discord_payload(message, username=self._username)
        return Sent(self._http.post(self._url, body=_json(payload)).status_code)


class Webhook:
    """Any HTTP receiver (`CLAWNSOLE_ALERT_WEBHOOK_URL`): the documented JSON object, HMAC-signed when
    `CLAWNSOLE_ALERT_WEBHOOK_SECRET` is set."""

    name = "webhook"

    def __init__(self, url: str, secret: str | None, http: _Http) -> None:
        self._url = url
        self._secret = secret
        self._http = http

    def send(self, message: AlertMessage, *, delivery_id: int) -> Sent:
        """Post the body; the signature is over these exact bytes, so a receiver checks before parsing."""
        body = messages.webhook_body(message, delivery_id=delivery_id)
        headers = {"X-Clawnsole-Delivery": str(delivery_id)}
        if self._secret:
            headers[_SIGNATURE_HEADER] = "sha256=" + signature(self._secret, body)
        return Sent(self._http.post(self._url, body=body, headers=headers).status_code)


def signature(secret: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of a webhook body under the shared secret (the header's value after `sha256=`)."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class SmtpTarget:
    """A parsed `CLAWNSOLE_SMTP_URL`."""

    tls: bool  # smtps:// (TLS from the first byte); smtp:// upgrades with STARTTLS when offered
    host: str
    port: int
    username: str | None
    password: str | None

    @classmethod
    def parse(cls, url: str) -> SmtpTarget:
        """`smtp://[user:password@]host[:port]` (port 25) or `smtps://…` (port 465); ValueError otherwise."""
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("must look like smtp://[user:password@]host:port or smtps://…")
        tls = parts.scheme == "smtps"
        return cls(
            tls=tls,
            host=parts.hostname,
            port=parts.port or (465 if tls else 25),
            username=None if parts.username is None else unquote(parts.username),
            password=None if parts.password is None else unquote(parts.password),
        )


class SmtpEmail:
    """Email by SMTP: STARTTLS whenever the server offers it (certificate verified), and a password is only
    ever sent over TLS; `smtps://` speaks TLS from the start. A plain-text message."""

    name = "email"

    def __init__(self, target: SmtpTarget, sender: str, recipients: list[str], redactor: Redactor, timeout: float):
        self._target = target
        self._sender = sender
        self._recipients = recipients
        self._redact = redactor
        self._timeout = timeout

    def send(self, message: AlertMessage, *, delivery_id: int) -> Sent:
        """One SMTP conversation; the server's reply code is the status."""
        mail = email_message(message, self._sender, self._recipients, delivery_id)
        target = self._target
        where = f"{target.host}:{target.port}"
        # The system's trust store (SSL_CERT_FILE and SSL_CERT_DIR are honoured), hostname checked.
        context = ssl.create_default_context()
        try:
            smtp: smtplib.SMTP
            if target.tls:
                smtp = smtplib.SMTP_SSL(target.host, target.port, timeout=self._timeout, context=context)
            else:
                smtp = smtplib.SMTP(target.host, target.port, timeout=self._timeout)
            with smtp:
                smtp.ehlo()
                if not target.tls and smtp.has_extn("starttls"):
                    smtp.starttls(context=context)
                    smtp.ehlo()
                elif not target.tls and target.username is not None:
                    raise ChannelError(
                        f"email: {where} does not offer STARTTLS; refusing to send the SMTP password unencrypted "
                        "(use smtps://, or a server that offers STARTTLS)",
                        retry=False,
                    )
                if target.username is not None:
                    smtp.login(target.username, target.password or "")
                # A dict of the recipients refused when some (not all) were: the notice is out, and resending
                # it to everyone would duplicate it for the rest.
                smtp.send_message(mail)
        except smtplib.SMTPResponseException as error:
            reply = (
                error.smtp_error.decode(errors="replace") if isinstance(error.smtp_error, bytes) else error.smtp_error
            )
            raise ChannelError(
                self._redact(f"email: {where} answered {error.smtp_code}: {' '.join(str(reply).split())}"),
                # 4xx is the server's "try again later"; 5xx (bad login, unknown recipient) is ours to fix.
                retry=400 <= error.smtp_code < 500,
                status=error.smtp_code,
            ) from None
        except smtplib.SMTPRecipientsRefused as error:
            raise ChannelError(
                self._redact(f"email: {where} refused every recipient: {', '.join(error.recipients)}"), retry=False
            ) from None
        except (smtplib.SMTPException, OSError) as error:
            raise ChannelError(
                self._redact(f"email: cannot deliver through {where}: {type(error).__name__}: {error}")
            ) from None
        return Sent(250)


class SendGridEmail:
    """Email through SendGrid's v3 mail/send API (`SENDGRID_API_KEY`, used when no SMTP URL is set)."""

    name = "email"

    def __init__(self, key: str, api_url: str, sender: str, recipients: list[str], http: _Http) -> None:
        self._key = key
        self._url = api_url.rstrip("/") + "/v3/mail/send"
        self._sender = sender
        self._recipients = recipients
        self._http = http

    def send(self, message: AlertMessage, *, delivery_id: int) -> Sent:
        """Post the mail; SendGrid answers 202 when it accepted it."""
        payload = {
            "personalizations": [{"to": [{"email": r} for r in self._recipients]}],
            "from": {"email": self._sender},
            "subject": messages.email_subject(message),
            "content": [{"type": "text/plain", "value": messages.plain_text(message)}],
            "custom_args": {"clawnsole_delivery_id": str(delivery_id)},
        }
        response = self._http.post(self._url, body=_json(payload), headers={"Authorization": f"Bearer {self._key}"})
        return Sent(response.status_code)


def email_message(message: AlertMessage, sender: str, recipients: list[str], delivery_id: int) -> EmailMessage:
    """The notice as an email: a one-line subject and a plain-text body."""
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = ", ".join(recipients)
    mail["Subject"] = messages.email_subject(message)
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = make_msgid(idstring=f"clawnsole-alert-{delivery_id}")
    mail["X-Clawnsole-Delivery"] = str(delivery_id)
    mail.set_content(messages.plain_text(message))
    return mail


class Channels:
    """The channels this process can deliver through, built from its environment; `get` names what is missing."""

    def __init__(
        self, settings: AlertChannelSettings, identity: SlackIdentity | None = None, *, timeout: float = TIMEOUT
    ) -> None:
        self.settings = settings
        self.identity = identity or SlackIdentity()
        self.redact = Redactor.from_settings(settings)
        self._timeout = timeout
        self._http: dict[str, _Http] = {}
        self._built: dict[str, Channel] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls, identity: SlackIdentity | None = None, *, timeout: float = TIMEOUT) -> Channels:
        """Channels from the environment variables (InvalidInput naming the variable when one is malformed)."""
        from pydantic import ValidationError

        try:
            settings = AlertChannelSettings()
        except ValidationError as error:
            first = error.errors()[0]
            raise InvalidInput(str(first["loc"][0]) if first["loc"] else "alert settings", first["msg"]) from None
        return cls(settings, identity, timeout=timeout)

    def problem(self, name: str) -> str | None:
        """Why the channel cannot be used here (not configured, disabled, malformed), or None when it can."""
        s = self.settings
        if name == "slack":
            if s.notify_slack_enabled is False:
                return "slack is disabled (NOTIFY_SLACK_ENABLED=false)"
            if s.slack_webhook_url is None and s.slack_bot_token is None:
                return "slack is not configured (set SLACK_WEBHOOK_URL or SLACK_BOT_TOKEN)"
            return None
        if name == "discord":
            if s.notify_discord_enabled is False:
                return "discord is disabled (NOTIFY_DISCORD_ENABLED=false)"
            return None if s.discord_webhook_url else "discord is not configured (set DISCORD_WEBHOOK_URL)"
        if name == "email":
            if s.notify_email_enabled is False:
                return "email is disabled (NOTIFY_EMAIL_ENABLED=false)"
            if s.smtp_url is None and s.sendgrid_api_key is None:
                return "email is not configured (set CLAWNSOLE_SMTP_URL or SENDGRID_API_KEY)"
            if not s.alert_email_from or not _recipients(s.alert_email_to):
                return "email is not configured (set CLAWNSOLE_ALERT_EMAIL_FROM and CLAWNSOLE_ALERT_EMAIL_TO)"
            if s.smtp_url is not None:
                try:
                    SmtpTarget.parse(s.smtp_url.get_secret_value())
                except ValueError as error:
                    return f"email is misconfigured: CLAWNSOLE_SMTP_URL {error}"
            return None
        if name == "webhook":
            return None if s.alert_webhook_url else "webhook is not configured (set CLAWNSOLE_ALERT_WEBHOOK_URL)"
        return f"{name!r} is not a channel (channels: {', '.join(CHANNELS)})"

    def configured(self) -> list[str]:
        """The channels usable from this process."""
        return [name for name in CHANNELS if self.problem(name) is None]

    def describe(self) -> dict[str, str]:
        """Each channel and how it would be reached, for `alert status` (never a secret: only the origin)."""
        s = self.settings
        described: dict[str, str] = {}
        for name in CHANNELS:
            problem = self.problem(name)
            if problem is not None:
                described[name] = problem
            elif name == "slack":
                described[name] = (
                    "webhook" if s.slack_webhook_url else f"bot token (chat.postMessage at {s.slack_api_url})"
                )
            elif name == "email":
                if s.smtp_url is not None:
                    target = SmtpTarget.parse(s.smtp_url.get_secret_value())
                    described[name] = f"{'smtps' if target.tls else 'smtp'}://{target.host}:{target.port}"
                else:
                    described[name] = "SendGrid"
            elif name == "discord":
                described[name] = (
                    f"webhook at {_origin(s.discord_webhook_url.get_secret_value())}" if s.discord_webhook_url else ""
                )
            else:
                url = s.alert_webhook_url.get_secret_value() if s.alert_webhook_url else ""
                described[name] = f"{_origin(url)}" + (", signed" if s.alert_webhook_secret else ", unsigned")
        return described

    def use_identity(self, identity: SlackIdentity) -> None:
        """Post as this Slack identity from now on (the stored settings may change while a daemon runs)."""
        with self._lock:
            if identity != self.identity:
                self.identity = identity
                self._built.pop("slack", None)
                self._built.pop("discord", None)

    def get(self, name: str) -> Channel:
        """The channel by name; NotConfigured saying which variable to set when it cannot be used."""
        problem = self.problem(name)
        if problem is not None:
            raise NotConfigured(problem)
        with self._lock:
            if name not in self._built:
                self._built[name] = self._build(name)
            return self._built[name]

    def _http_for(self, name: str) -> _Http:
        if name not in self._http:
            self._http[name] = _Http(name, self.redact, self._timeout)
        return self._http[name]

    def _build(self, name: str) -> Channel:
        s = self.settings
        if name == "slack":
            if s.slack_webhook_url is not None:
                return SlackWebhook(s.slack_webhook_url.get_secret_value(), self.identity, self._http_for(name))
            assert s.slack_bot_token is not None
            return SlackBot(
                s.slack_bot_token.get_secret_value(), s.slack_api_url, self.identity, self._http_for(name), self.redact
            )
        if name == "discord":
            assert s.discord_webhook_url is not None
            return DiscordWebhook(s.discord_webhook_url.get_secret_value(), self.identity, self._http_for(name))
        if name == "webhook":
            assert s.alert_webhook_url is not None
            secret = s.alert_webhook_secret.get_secret_value() if s.alert_webhook_secret else None
            return Webhook(s.alert_webhook_url.get_secret_value(), secret, self._http_for(name))
        sender = s.alert_email_from or ""
        recipients = _recipients(s.alert_email_to)
        if s.smtp_url is not None:
            target = SmtpTarget.parse(s.smtp_url.get_secret_value())
            return SmtpEmail(target, sender, recipients, self.redact, self._timeout)
        assert s.sendgrid_api_key is not None
        return SendGridEmail(
            s.sendgrid_api_key.get_secret_value(), s.sendgrid_api_url, sender, recipients, self._http_for(name)
        )

    def close(self) -> None:
        """Close the HTTP connections kept open between notices."""
        with self._lock:
            for http in self._http.values():
                http.close()


def _recipients(value: str | None) -> list[str]:
    return [r.strip() for r in (value or "").split(",") if r.strip()]
