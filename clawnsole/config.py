"""Settings read from the environment (CLAWNSOLE_ prefix); no I/O here.

`Settings` (where the queue lives) is read by every command, `clawnsole workqueue enqueue` from cron among
them, and is two variables: it is a plain class, so that a queue command does not import pydantic and
pydantic-settings (~100 ms of a ~400 ms call). Settings of more than a few variables are pydantic-settings
classes in modules of their own (`AlertChannelSettings`, in `config_channels`), loaded on first use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from clawnsole import validate
from clawnsole.errors import InvalidInput

if TYPE_CHECKING:
    from clawnsole.config_channels import AlertChannelSettings

DEFAULT_SCHEMA = "clawnsole"
# The variables each setting is read from, the first one set winning, each with the name an error about its
# value gives. `CLAWNSOLE_SCHEMA_NAME` (prefix and field name) is read because these were pydantic-settings
# fields, which read it too: a deployment that set it keeps its schema. Errors about it say `schema`, as
# they did.
DATABASE_URL_VARIABLES = ("CLAWNSOLE_DATABASE_URL", "DATABASE_URL")
SCHEMA_VARIABLES = (("CLAWNSOLE_SCHEMA", "CLAWNSOLE_SCHEMA"), ("CLAWNSOLE_SCHEMA_NAME", "schema"))


@dataclass(frozen=True)
class Settings:
    """Where the queue lives. `database_url` None means: use the embedded PostgreSQL default.

    Built from values (`Settings(schema_name="x")`) or from the environment (`Settings.from_environment()`);
    either way a blank URL means unset and the schema passes `validate.schema_name`.
    """

    database_url: str | None = None
    schema_name: str = DEFAULT_SCHEMA

    def __post_init__(self) -> None:
        # `CLAWNSOLE_DATABASE_URL=` (or an empty --database-url) means "not configured", as an absent one does.
        if not self.database_url:
            object.__setattr__(self, "database_url", None)
        validate.schema_name(self.schema_name)

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        database_url: str | None = None,
        schema_name: str | None = None,
    ) -> Settings:
        """Settings from the environment (`os.environ` by default), overridden by the values given.

        A value given wins over the environment unread, so a good `--schema` is not refused over a bad
        `$CLAWNSOLE_SCHEMA` it replaces. A variable set to the empty string counts as set: an empty
        `$CLAWNSOLE_DATABASE_URL` means the embedded server even when `$DATABASE_URL` is set.
        """
        # Names are matched whatever their case, the last of two spellings winning, as pydantic-settings
        # matched them when these were its fields (`database_url=…` counts as `DATABASE_URL=…`).
        found = {name.lower(): value for name, value in (os.environ if environ is None else environ).items()}
        if database_url is None:
            database_url = next((found[n.lower()] for n in DATABASE_URL_VARIABLES if n.lower() in found), None)
        if schema_name is not None:
            return cls(database_url, schema_name)
        for variable, label in SCHEMA_VARIABLES:
            if variable.lower() in found:
                try:
                    return cls(database_url, found[variable.lower()])
                except InvalidInput as error:
                    raise InvalidInput(label, error.message) from None
        return cls(database_url)


def __getattr__(name: str) -> Any:
    # The alert channels' settings, imported on first use: they are pydantic-settings', and a queue command
    # never reads them.
    if name == "AlertChannelSettings":
        from clawnsole.config_channels import AlertChannelSettings

        return AlertChannelSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DATABASE_URL_VARIABLES", "DEFAULT_SCHEMA", "SCHEMA_VARIABLES", "AlertChannelSettings", "Settings"]
