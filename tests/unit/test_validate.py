"""Input checks: each bad value names its field."""

from __future__ import annotations

import pytest

from clawnsole import validate
from clawnsole.errors import InvalidInput


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("30d", 2_592_000), ("1.5h", 5400), (" 5M ", 300)],
)
def test_durations_accept_plain_seconds_and_suffixes(text: str, seconds: float) -> None:
    assert validate.duration(text, "lease") == seconds


@pytest.mark.parametrize("text", ["", "-5", "5x", "m", "0", "1e3", "nan"])
def test_bad_durations_name_the_field(text: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate.duration(text, "lease")
    assert caught.value.field == "lease"


def test_zero_duration_is_allowed_only_where_asked() -> None:
    assert validate.duration("0", "delay", allow_zero=True) == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("critical", 100),
        ("high", 75),
        ("normal", 50),
        ("medium", 50),
        ("low", 25),
        ("7", 7),
        ("-3", -3),
        (" HIGH ", 75),
    ],
)
def test_priorities_accept_integers_and_names(name: str, value: int) -> None:
    assert validate.priority(name) == value


def test_unknown_priority_name_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="priority"):
        validate.priority("urgent")


@pytest.mark.parametrize("name", ["dev-team", "ops", "demo-two-workers-1", "a.b_c:d", "x" * 128])
def test_queue_names_allowed(name: str) -> None:
    assert validate.queue_name(name) == name


@pytest.mark.parametrize("name", ["", "has space", "x" * 129, "semi;colon", "ümlaut"])
def test_queue_names_refused(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate.queue_name(name)
    assert caught.value.field == "queue"


def test_payload_must_be_a_json_object_under_one_mebibyte() -> None:
    assert validate.payload('{"a": 1}') == {"a": 1}
    for bad in ("[1, 2]", "42", "{not json", '"text"'):
        with pytest.raises(InvalidInput, match="payload"):
            validate.payload(bad)
    with pytest.raises(InvalidInput, match="1 MiB"):
        validate.payload({"blob": "x" * (1024 * 1024)})


def test_timestamps_need_an_offset() -> None:
    assert validate.timestamp("2026-11-21T09:00:00Z", "run_at").utcoffset() is not None
    with pytest.raises(InvalidInput, match="offset"):
        validate.timestamp("2026-11-21T09:00:00", "run_at")
    with pytest.raises(InvalidInput, match="run_at"):
        validate.timestamp("tomorrow", "run_at")


def test_status_filter_knows_the_statuses() -> None:
    assert validate.status("failed") == "failed"
    with pytest.raises(InvalidInput, match="status"):
        validate.status("running")


def test_schema_names_fit_their_notify_channels() -> None:
    from pydantic import ValidationError

    from clawnsole.config import Settings

    assert Settings.model_validate({"CLAWNSOLE_SCHEMA": "s" * 40}).schema_name == "s" * 40
    for bad in ("s" * 41, "Upper", "1starts_with_digit", "has-dash"):
        try:
            Settings.model_validate({"CLAWNSOLE_SCHEMA": bad})
        except ValidationError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
