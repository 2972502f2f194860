"""Settings read from the environment (CLAWNSOLE_ prefix); no I/O here."""

from __future__ import annotations

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from clawnsole import validate
from clawnsole.errors import InvalidInput


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
        # One rule for every schema name (validate.schema_name); a ValueError is how pydantic reports it.
        try:
            return validate.schema_name(value)
        except InvalidInput as error:
            raise ValueError(error.message) from None

    @field_validator("database_url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None
