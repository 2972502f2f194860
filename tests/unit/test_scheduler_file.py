"""The schedules YAML file: the users' shape, errors that name the line and entry, and a lossless round trip."""

from __future__ import annotations

import textwrap

import pytest

from clawnsole.errors import InvalidInput
from clawnsole.schedules.file import dump, parse
from clawnsole.schedules.models import ScheduleDef

ISSUE_EXAMPLE = """\
schedules:
  - name: hourly-pr-review
    queue: dev-team
    title: Review open PRs
    instructions: Review and ship any safe PRs. Leave comments if blocked.
    schedule: "0 * * * *"
    timezone: UTC
    enabled: true
    priority: 50
    description: optional
    input: {any: json}     # becomes the item's payload
  - name: daily-questmaster
    queue: ops
    title: Daily quests
    schedule: "0 9 * * *"
    timezone: "America/New_York"
    enabled: false
  - name: github-sync
    queue: ops
    title: Sync to GitHub
    every: 15m
    catch_up: none
    overlap: skip
    max_attempts: 1
    kind: github.sync
"""


def bad(text: str) -> str:
    with pytest.raises(InvalidInput) as raised:
        parse(textwrap.dedent(text), "schedules.yaml")
    return str(raised.value)


def test_the_issue_example_reads_as_schedules() -> None:
    first, second, third = parse(ISSUE_EXAMPLE)
    assert first == ScheduleDef(
        name="hourly-pr-review",
        queue="dev-team",
        title="Review open PRs",
        cron="0 * * * *",
        timezone="UTC",
        instructions="Review and ship any safe PRs. Leave comments if blocked.",
        payload={"any": "json"},
        priority=50,
        description="optional",
    )
    assert (second.status, second.timezone, second.cron) == ("paused", "America/New_York", "0 9 * * *")
    assert (third.interval_seconds, third.catch_up, third.overlap, third.max_attempts, third.kind) == (
        900, "none", "skip", 1, "github.sync",
    )  # fmt: skip


def test_an_empty_file_or_list_means_no_schedules() -> None:
    assert parse("") == []
    assert parse("schedules: []\n") == []


def test_an_unknown_key_names_its_line_its_entry_and_a_likely_fix() -> None:
    message = bad(
        """\
        schedules:
          - name: ok
            queue: q
            title: t
            schedule: "0 * * * *"
          - name: nightly
            queue: q
            title: t
            shedule: "0 3 * * *"
        """
    )
    assert (
        message == "schedules.yaml: line 9: schedules[1] ('nightly'): unknown key 'shedule' (did you mean 'schedule'?)"
    )


def test_yaml_that_does_not_parse_names_its_line() -> None:
    message = bad(
        """\
        schedules:
          - name: broken
            queue: q
            title: t
            schedule: */5 * * * *
        """
    )
    assert message.startswith("schedules.yaml: line 5: is not valid YAML")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ('schedule: "0 9 * * * *"', "line 5: schedules[0] ('x'): schedule: '0 9 * * * *' must have exactly five"),
        ('schedule: "0 9 * * *"\n  timezone: Mars/Base', "line 6: schedules[0] ('x'): timezone: 'Mars/Base'"),
        ("every: 0", "line 5: schedules[0] ('x'): every: must be more than zero"),
        ('schedule: "0 9 * * *"\n  every: 1h', "schedules[0] ('x'): schedule: give either"),
        ('schedule: "0 9 * * *"\n  enabled: maybe', "line 6: schedules[0] ('x'): `enabled` must be true or false"),
        ('schedule: "0 9 * * *"\n  input: [1, 2]', "line 6: schedules[0] ('x'): `input` must be a mapping"),
        ('schedule: "0 9 * * *"\n  catch_up: sometimes', "line 6: schedules[0] ('x'): catch_up: 'sometimes' is not"),
        ('schedule: "0 9 * * *"\n  title: again', "line 6: key 'title' is given twice"),
    ],
)
def test_bad_entries_name_the_line_and_the_entry(entry: str, expected: str) -> None:
    text = "schedules:\n- name: x\n  queue: q\n  title: t\n  " + entry + "\n"
    with pytest.raises(InvalidInput) as raised:
        parse(text, "f.yaml")
    assert expected in str(raised.value)


def test_a_missing_required_key_and_a_name_used_twice_are_reported() -> None:
    assert "schedules[0] ('x'): `queue` is required" in bad("schedules:\n- {name: x, title: t, every: 1h}\n")
    twice = "schedules:\n- {name: x, queue: q, title: t, every: 1h}\n- {name: x, queue: q, title: t, every: 2h}\n"
    assert "line 3: schedules[1]: the name 'x' is taken by schedules[0]" in bad(twice)


def test_the_document_must_be_a_schedules_mapping() -> None:
    assert "must be a mapping" in bad("- name: x\n")
    assert "line 2: unknown key 'jobs'" in bad("schedules: []\njobs: []\n")


def test_dump_reads_back_to_the_same_definitions() -> None:
    definitions = parse(ISSUE_EXAMPLE)
    assert parse(dump(definitions)) == definitions
