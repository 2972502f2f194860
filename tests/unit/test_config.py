"""Settings: where the queue lives, from the environment and the command's options, by one set of rules."""

from __future__ import annotations

import pytest

from clawnsole.config import Settings
from clawnsole.errors import InvalidInput


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({}, None),
        ({"CLAWNSOLE_DATABASE_URL": "postgresql:///a"}, "postgresql:///a"),
        ({"DATABASE_URL": "postgresql:///b"}, "postgresql:///b"),
        ({"CLAWNSOLE_DATABASE_URL": "postgresql:///a", "DATABASE_URL": "postgresql:///b"}, "postgresql:///a"),
        ({"DATABASE_URL": ""}, None),
        # Set but empty is set: the embedded server, not $DATABASE_URL (as it always was).
        ({"CLAWNSOLE_DATABASE_URL": "", "DATABASE_URL": "postgresql:///b"}, None),
        ({"database_url": "postgresql:///lower"}, "postgresql:///lower"),
    ],
    ids=["none", "clawnsole's", "the fallback", "clawnsole's first", "blank", "blank shadows", "any case"],
)
def test_the_database_url_is_clawnsoles_variable_then_database_url_and_blank_is_unset(
    environ: dict[str, str], url: str | None
) -> None:
    assert Settings.from_environment(environ).database_url == url


def test_a_url_or_schema_given_wins_over_the_environment_which_is_then_not_checked() -> None:
    environ = {"CLAWNSOLE_DATABASE_URL": "postgresql:///env", "CLAWNSOLE_SCHEMA": "Not-A-Schema"}
    chosen = Settings.from_environment(environ, database_url="postgresql:///given", schema_name="given")
    assert chosen == Settings("postgresql:///given", "given")


def test_the_schema_defaults_to_clawnsole_and_is_read_from_clawnsole_schema_first() -> None:
    assert Settings.from_environment({}).schema_name == "clawnsole"
    assert Settings.from_environment({"CLAWNSOLE_SCHEMA": "team_a"}).schema_name == "team_a"
    assert Settings.from_environment({"clawnsole_schema": "team_a"}).schema_name == "team_a"
    # The spelling pydantic-settings also read (prefix and field name): deployments that used it keep their schema.
    assert Settings.from_environment({"CLAWNSOLE_SCHEMA_NAME": "team_b"}).schema_name == "team_b"
    both = {"CLAWNSOLE_SCHEMA": "team_a", "CLAWNSOLE_SCHEMA_NAME": "team_b"}
    assert Settings.from_environment(both).schema_name == "team_a"


@pytest.mark.parametrize(
    ("environ", "given", "field"),
    [
        ({"CLAWNSOLE_SCHEMA": "public"}, None, "CLAWNSOLE_SCHEMA"),
        ({"CLAWNSOLE_SCHEMA": ""}, None, "CLAWNSOLE_SCHEMA"),
        ({"CLAWNSOLE_SCHEMA_NAME": "Upper"}, None, "schema"),
        ({}, "has-dash", "schema"),
    ],
    ids=["reserved", "empty", "the other spelling", "an option"],
)
def test_a_bad_schema_is_refused_naming_where_it_came_from(
    environ: dict[str, str], given: str | None, field: str
) -> None:
    with pytest.raises(InvalidInput) as refused:
        Settings.from_environment(environ, schema_name=given)
    assert refused.value.field == field
    assert "schema name" in refused.value.message or "reserved" in refused.value.message


def test_settings_built_from_values_follow_the_same_rules() -> None:
    assert Settings(database_url="").database_url is None
    with pytest.raises(InvalidInput, match="schema: 'pg_x' is reserved"):
        Settings(schema_name="pg_x")


def test_the_environment_is_read_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLAWNSOLE_DATABASE_URL", "CLAWNSOLE_SCHEMA", "CLAWNSOLE_SCHEMA_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql:///from-env")
    monkeypatch.setenv("CLAWNSOLE_SCHEMA", "from_env")
    assert Settings.from_environment() == Settings("postgresql:///from-env", "from_env")


def test_the_alert_channel_settings_are_still_pydantic_settings_named_from_config() -> None:
    from pydantic_settings import BaseSettings

    from clawnsole import config
    from clawnsole.config_channels import AlertChannelSettings

    assert config.AlertChannelSettings is AlertChannelSettings
    assert issubclass(AlertChannelSettings, BaseSettings)
    with pytest.raises(AttributeError, match="NoSuchSettings"):
        config.NoSuchSettings  # noqa: B018
