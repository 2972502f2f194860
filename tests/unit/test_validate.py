"""Input checks: each bad value names its field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    from clawnsole.config import Settings

    assert Settings.from_environment({"CLAWNSOLE_SCHEMA": "s" * 40}).schema_name == "s" * 40
    for bad in ("s" * 41, "Upper", "1starts_with_digit", "has-dash", "public", "clawnsole\n"):
        with pytest.raises(InvalidInput, match="CLAWNSOLE_SCHEMA"):
            Settings.from_environment({"CLAWNSOLE_SCHEMA": bad})


# --- hostile input: names match whole, text is storable, JSON is bounded --------------------------------


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (validate.queue_name, "dev-team\n"),
        (validate.kind, "health-check\n"),
        (validate.schema_name, "clawnsole\n"),
    ],
    ids=["queue", "kind", "schema"],
)
def test_a_trailing_newline_does_not_make_a_name(check: object, value: str) -> None:
    # `re.match` with `$` accepted these: `$` also matches just before a final newline.
    with pytest.raises(InvalidInput):
        check(value)  # type: ignore[operator]


def test_a_schedule_name_with_a_trailing_newline_is_refused() -> None:
    from clawnsole.schedules import fire_times

    assert fire_times.schedule_name("nightly") == "nightly"
    with pytest.raises(InvalidInput) as caught:
        fire_times.schedule_name("nightly\n")
    assert caught.value.field == "name"


@pytest.mark.parametrize("name", ["clawnsole", "s" * 40, "_private", "team_2"])
def test_schema_names_allowed(name: str) -> None:
    assert validate.schema_name(name) == name


@pytest.mark.parametrize(
    "name",
    ["", "s" * 41, "Clawnsole", "1starts_with_digit", "has-dash", "public", "pg_temp", "information_schema", None],
)
def test_schema_names_refused(name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate.schema_name(name)
    assert caught.value.field == "schema"


@pytest.mark.parametrize("text", ["\u0663\u0660", "\uff13\uff10m", "90\x00"])
def test_durations_take_ascii_digits_only(text: str) -> None:
    with pytest.raises(InvalidInput):
        validate.duration(text, "lease")


@pytest.mark.parametrize("value", [True, None, [1], 10**400, float("inf")], ids=repr)
def test_durations_refuse_values_that_are_not_finite_numbers(value: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate.duration(value, "lease")  # type: ignore[arg-type]
    assert caught.value.field == "lease"


@pytest.mark.parametrize("value", ["a\x00b", "caf\udce9", "\ud800", 7, None, b"bytes"], ids=repr)
def test_text_refuses_what_postgresql_cannot_store(value: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate.text(value, "title")
    assert caught.value.field == "title"


@pytest.mark.parametrize(
    ("check", "field"),
    [
        (validate.title, "title"),
        (lambda v: validate.optional_text(v, "note", 100), "note"),
        (validate.dedupe_key, "dedupe_key"),
        (validate.agent, "agent"),
    ],
    ids=["title", "optional text", "dedupe key", "agent"],
)
def test_every_text_field_refuses_a_nul_naming_itself(check: object, field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check("before\x00after")  # type: ignore[operator]
    assert caught.value.field == field


def test_optional_text_measures_its_limit_in_utf8_bytes() -> None:
    assert validate.optional_text("é" * 50, "note", 100) == "é" * 50
    with pytest.raises(InvalidInput, match="100 bytes"):
        validate.optional_text("é" * 51, "note", 100)


def test_dedupe_keys_are_one_to_512_characters() -> None:
    assert validate.dedupe_key("k" * 512) == "k" * 512
    assert validate.dedupe_key(None) is None
    for bad in ("", "k" * 513):
        with pytest.raises(InvalidInput, match="dedupe_key"):
            validate.dedupe_key(bad)


def _nested(levels: int) -> dict[str, object]:
    value: dict[str, object] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def test_json_may_nest_64_levels_and_no_more() -> None:
    assert validate.payload(_nested(64)) == _nested(64)
    assert validate.payload(json.dumps(_nested(64))) == _nested(64)
    for too_deep in (_nested(65), json.dumps(_nested(65)), _nested(5000)):
        with pytest.raises(InvalidInput, match="64 levels") as caught:
            validate.payload(too_deep)
        assert caught.value.field == "payload"


def test_json_text_nested_past_the_recursion_limit_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(InvalidInput, match="64 levels"):
        validate.json_value("[" * 100_000 + "]" * 100_000, "result")


@pytest.mark.parametrize(
    "value",
    [
        '{"a": "\\u0000"}',
        '{"\\u0000": 1}',
        '{"a": "\\ud800"}',
        '{"a": NaN}',
        '{"a": Infinity}',
        '{"a": 1e999}',
        {"a": float("nan")},
        {"a": ["ok", {"b": "x\x00"}]},
        {"a": {1, 2}},
        b'{"a": "\xff"}',
    ],
    ids=repr,
)
def test_json_refuses_what_jsonb_cannot_store(value: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate.json_value(value, "result")
    assert caught.value.field == "result"


def test_json_that_contains_itself_is_refused() -> None:
    cycle: dict[str, object] = {}
    cycle["me"] = cycle
    with pytest.raises(InvalidInput, match="payload"):
        validate.payload(cycle)


def test_json_sharing_one_value_many_times_is_refused_without_expanding_it() -> None:
    import time

    # 10^9 references to one string, a few hundred objects in memory: what a YAML alias bomb builds.
    bomb: object = ["x" * 16] * 10
    for _ in range(8):
        bomb = [bomb] * 10
    started = time.monotonic()
    with pytest.raises(InvalidInput, match="1 MiB"):
        validate.payload({"bomb": bomb})
    assert time.monotonic() - started < 2


def test_oversized_json_text_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(InvalidInput, match="1 MiB"):
        validate.payload("[" * (2 * 1024 * 1024))


@pytest.mark.parametrize("value", [10**20, -(10**20), 1.5, True, None], ids=repr)
def test_priorities_must_be_integers_in_range(value: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate.priority(value)  # type: ignore[arg-type]
    assert caught.value.field == "priority"


@pytest.mark.parametrize("value", [0, -1, 10**20, True, 2.0], ids=repr)
def test_positive_ints_refuse_zero_negatives_huge_values_and_non_integers(value: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate.positive_int(value, "max_attempts")  # type: ignore[arg-type]
    assert caught.value.field == "max_attempts"


def test_ids_are_positive_bigints() -> None:
    assert validate.item_id(1) == 1
    assert validate.item_id(2**63 - 1) == 2**63 - 1
    for bad in (0, -1, 2**63, 10**20, True, "1"):
        with pytest.raises(InvalidInput) as caught:
            validate.item_id(bad)  # type: ignore[arg-type]
        assert caught.value.field == "id"


@pytest.mark.parametrize("value", [101, -1, True, 50.5], ids=repr)
def test_percent_is_an_integer_from_0_to_100(value: object) -> None:
    with pytest.raises(InvalidInput, match="percent"):
        validate.percent(value)  # type: ignore[arg-type]


def test_lease_tokens_are_uuids_given_as_text_or_uuid() -> None:
    from uuid import UUID

    token = "6f1c2b9e-0000-4000-8000-000000000001"
    assert validate.lease_token(UUID(token)) == token
    assert validate.lease_token(token.upper()) == token
    for bad in ("not-a-token", 42, "a\x00b"):
        with pytest.raises(InvalidInput) as caught:
            validate.lease_token(bad, "lease_token")  # type: ignore[arg-type]
        assert caught.value.field == "lease_token"


def test_timestamps_refuse_values_that_are_not_times() -> None:
    for bad in (1_700_000_000, None, "2026-13-45T00:00:00Z"):
        with pytest.raises(InvalidInput, match="run_at"):
            validate.timestamp(bad, "run_at")  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_is_either_storable_or_refused_as_bad_input(value: str) -> None:
    try:
        validate.text(value, "title")
    except InvalidInput:
        assert "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    else:
        assert "\x00" not in value
        value.encode()


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(_JSON)
def test_any_json_like_value_is_either_accepted_as_valid_json_or_refused_as_bad_input(value: object) -> None:
    try:
        accepted = validate.json_value(value, "payload")
    except InvalidInput as error:
        assert error.field == "payload"
    else:
        # What is accepted is strict JSON (no NaN) and round-trips through the text jsonb receives.
        assert json.loads(json.dumps(accepted, allow_nan=False)) == accepted
