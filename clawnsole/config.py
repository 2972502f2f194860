"""Settings read from the environment (CLAWNSOLE_ prefix); no I/O here."""

from __future__ import annotations

import re

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# At most 40 characters: the schema names its NOTIFY channels (`clawnsole:<schema>:schedules`), and
# PostgreSQL caps a channel name at 63 bytes.
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")


class Settings(BaseSettings):
    """Where the queue lives. `database_url` None means: use the embedded PostgreSQL default."""

    model_config = SettingsConfigDict(env_prefix="CLAWNSOLE_", extra="ignore", populate_by_name=True)

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("CLAWNSOLE_DATABASE_URL", "DATABASE_URL")
    )
    schema_name: str = Field(default="clawnsole", validation_alias=AliasChoices("CLAWNSOLE_SCHEMA"))

    @field_validator("schema_name")
    @classmethod
    def _valid_schema(cls, value: str) -> str:
        if not _SCHEMA_NAME.match(value):
            raise ValueError("must be a lower-case SQL identifier (letters, digits, _; at most 40)")
        return value

    @field_validator("database_url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None
