"""The alert channels' settings, read from the environment by pydantic-settings; no I/O here.

A module of its own so that only the commands that deliver alerts import pydantic for them; `clawnsole.config`
hands `AlertChannelSettings` out on first use.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class AlertChannelSettings(BaseSettings):
    """Where alerts are delivered: channel credentials, from the environment only (never the database).

    The names are the worker app's (`SLACK_WEBHOOK_URL`, `NOTIFY_SLACK_ENABLED`, …) plus Clawnsole's own
    (`CLAWNSOLE_SMTP_URL`, `CLAWNSOLE_ALERT_WEBHOOK_URL`, …). A class of its own, read only by the commands
    that deliver alerts, so a malformed alerting variable never stops `clawnsole workqueue enqueue`.
    Secrets are `SecretStr`: their repr and str are `**********`.
    """

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    slack_webhook_url: SecretStr | None = Field(default=None, validation_alias=AliasChoices("SLACK_WEBHOOK_URL"))
    slack_bot_token: SecretStr | None = Field(default=None, validation_alias=AliasChoices("SLACK_BOT_TOKEN"))
    # Where chat.postMessage lives (a proxy, or a local receiver in tests).
    slack_api_url: str = Field(
        default="https://slack.com/api", validation_alias=AliasChoices("CLAWNSOLE_SLACK_API_URL")
    )
    notify_slack_enabled: bool | None = Field(default=None, validation_alias=AliasChoices("NOTIFY_SLACK_ENABLED"))
    discord_webhook_url: SecretStr | None = Field(default=None, validation_alias=AliasChoices("DISCORD_WEBHOOK_URL"))
    notify_discord_enabled: bool | None = Field(default=None, validation_alias=AliasChoices("NOTIFY_DISCORD_ENABLED"))
    notify_email_enabled: bool | None = Field(default=None, validation_alias=AliasChoices("NOTIFY_EMAIL_ENABLED"))
    smtp_url: SecretStr | None = Field(default=None, validation_alias=AliasChoices("CLAWNSOLE_SMTP_URL"))
    sendgrid_api_key: SecretStr | None = Field(default=None, validation_alias=AliasChoices("SENDGRID_API_KEY"))
    sendgrid_api_url: str = Field(
        default="https://api.sendgrid.com", validation_alias=AliasChoices("CLAWNSOLE_SENDGRID_API_URL")
    )
    alert_email_from: str | None = Field(default=None, validation_alias=AliasChoices("CLAWNSOLE_ALERT_EMAIL_FROM"))
    alert_email_to: str | None = Field(default=None, validation_alias=AliasChoices("CLAWNSOLE_ALERT_EMAIL_TO"))
    alert_webhook_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("CLAWNSOLE_ALERT_WEBHOOK_URL")
    )
    alert_webhook_secret: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("CLAWNSOLE_ALERT_WEBHOOK_SECRET")
    )

    @field_validator(
        "slack_webhook_url",
        "slack_bot_token",
        "discord_webhook_url",
        "smtp_url",
        "sendgrid_api_key",
        "alert_webhook_url",
        "alert_webhook_secret",
        "alert_email_from",
        "alert_email_to",
        mode="before",
    )
    @classmethod
    def _blank_secret_is_unset(cls, value: object) -> object:
        # `SLACK_WEBHOOK_URL=` in an env file means "not configured", as an absent variable does.
        return None if isinstance(value, str) and not value.strip() else value
