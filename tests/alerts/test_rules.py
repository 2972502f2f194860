"""Rules and settings live in the database: the notes' alerts.yaml imports verbatim and round-trips through
export; a bad entry names its rule and line and writes nothing; add/update/enable/disable/remove by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clawnsole.alerts import rules
from clawnsole.alerts.api import Alerts
from clawnsole.errors import InvalidInput
from tests.alerts.conftest import sql
from tests.conftest import Cli

HERE = Path(__file__).parent
# The two alerts.yaml examples of ../shared/docs/worker-app-readme.md, copied verbatim.
NOTES = HERE / "notes-alerts.yaml"
NOTES_EXAMPLE = HERE / "notes-alerts-example.yaml"


def _rule_count(db_url: str) -> int:
    return int(sql(db_url, "SELECT count(*) FROM clawnsole.alert_rules")[0][0])


@pytest.mark.parametrize("path", [NOTES, NOTES_EXAMPLE], ids=["alerting-section", "configuration-example"])
def test_the_notes_alerts_yaml_imports_verbatim_and_round_trips_through_export(cli: Cli, path: Path) -> None:
    imported = cli("alert", "import", str(path), "--json")
    assert imported.code == 0, imported.stderr
    parsed = rules.parse(path.read_text(), str(path))
    assert json.loads(imported.stdout)["created"] == [r.name for r in parsed.rules]
    exported = cli("alert", "export")
    assert exported.code == 0, exported.stderr
    assert rules.parse(exported.stdout) == parsed
    again = cli("alert", "import", "-", "--json", input=exported.stdout)
    report = json.loads(again.stdout)
    assert (report["created"], report["updated"], report["settings"]) == ([], {}, [])
    assert cli("alert", "export").stdout == exported.stdout


def test_the_notes_rules_keep_their_conditions_severity_and_channels(alerts: Alerts) -> None:
    parsed = rules.parse(NOTES.read_text())
    alerts.apply(parsed.rules, parsed.settings)
    critical = alerts.get("critical-job-failure").definition
    assert critical.group == "jobFailures" and critical.severity == "critical" and critical.channels == ("slack",)
    assert critical.conditions == {"failureCount": 1, "jobPattern": "^(questmaster|sprintplanner|github-sync)"}
    settings = alerts.settings()
    assert (settings.slack_channel, settings.slack_username, settings.slack_icon_emoji) == (
        "#worker-alerts",
        "Worker Bot",
        ":gear:",
    )
    assert (settings.min_interval_seconds, settings.max_alerts_per_job_per_hour) == (300, 10)


BAD = {
    "an unknown condition": ("      consecutiveFailure: 3\n", "line 4", "'repeated'", "consecutiveFailures"),
    "a bad severity": ("      consecutiveFailures: 3\n    severity: urgent\n", "line 5", "'repeated'", "severity"),
    "a condition of another group": ("      dlqSize: 3\n", "line 4", "'repeated'", "queueHealth"),
    "a regex Python refuses": ("      jobPattern: '(a'\n      failureCount: 1\n", "line 4", "'repeated'", "jobPattern"),
}


@pytest.mark.parametrize("entry", BAD.values(), ids=BAD.keys())
def test_a_bad_rule_names_its_rule_and_line_and_nothing_is_written(
    cli: Cli, db_url: str, entry: tuple[str, str, str, str]
) -> None:
    conditions, line, rule, word = entry
    text = "jobFailures:\n  - name: repeated\n    conditions:\n" + conditions
    if "severity" not in conditions:
        text += "    severity: high\n"
    # A good rule first, so "nothing is written" means the good one too; it shifts the lines by four.
    text = "queueHealth:\n  - name: fine\n    conditions: {dlqSize: 1}\n    severity: low\n" + text
    done = cli("alert", "import", "-", input=text)
    assert done.code == 2
    expected_line = f"line {int(line.split()[1]) + 4}"
    assert f"<stdin>: {expected_line}:" in done.stderr and rule in done.stderr and word in done.stderr
    assert done.stderr.count("\n") == 1
    assert _rule_count(db_url) == 0


def test_invalid_yaml_names_its_line(cli: Cli, db_url: str) -> None:
    done = cli("alert", "import", "-", input="settings:\n  enabled: true\njobFailures:\n  - name: [unclosed\n")
    assert done.code == 2 and "<stdin>: line 5: is not valid YAML" in done.stderr
    assert _rule_count(db_url) == 0


def test_a_pattern_postgresql_refuses_names_its_rule_and_line_and_writes_nothing(cli: Cli, db_url: str) -> None:
    text = (
        "jobFailures:\n  - name: fine\n    conditions: {consecutiveFailures: 2}\n    severity: low\n"
        "  - name: pythonic\n    conditions:\n      jobPattern: '(?P<name>x)'\n      failureCount: 1\n"
        "    severity: low\n"
    )
    done = cli("alert", "import", "-", input=text)
    assert done.code == 2
    assert "<stdin>: line 5: rule 'pythonic' pattern" in done.stderr and "PostgreSQL refuses it" in done.stderr
    assert _rule_count(db_url) == 0


def test_a_rule_name_given_twice_is_refused_with_both_places() -> None:
    text = "jobFailures:\n  - {name: a, conditions: {timeouts: 1}, severity: low}\n" + (
        "queueHealth:\n  - {name: a, conditions: {dlqSize: 1}, severity: low}\n"
    )
    with pytest.raises(InvalidInput, match=r"line 4.*'a' is taken by jobFailures\[0\]"):
        rules.parse(text)


def test_dry_run_writes_nothing_and_prune_removes_rules_the_file_does_not_name(cli: Cli, db_url: str) -> None:
    assert "would create repeated-failures" in cli("alert", "import", str(NOTES), "--dry-run").stdout
    assert _rule_count(db_url) == 0
    cli("alert", "import", str(NOTES))
    pruned = cli("alert", "import", str(NOTES_EXAMPLE), "--prune", "--json")
    report = json.loads(pruned.stdout)
    assert sorted(report["removed"]) == ["critical-job-failure", "duration-spike", "queue-backlog"]
    assert sorted(report["updated"]) == ["dlq-jobs", "low-success-rate", "repeated-failures"]  # descriptions gone
    assert _rule_count(db_url) == 3


def test_rules_are_added_updated_disabled_enabled_and_removed_by_name(cli: Cli) -> None:
    added = cli(
        "alert", "add", "slow-queue", "--condition", "oldestPendingSeconds=15m", "--condition", "queuePattern=^ops",
        "--severity", "high", "--channel", "slack", "--channel", "email",
    )  # fmt: skip
    assert added.code == 0, added.stderr
    rule = json.loads(added.stdout)
    assert (rule["group"], rule["conditions"], rule["channels"]) == (
        "queueHealth",
        {"oldestPendingSeconds": 900, "queuePattern": "^ops"},
        ["slack", "email"],
    )
    taken = cli("alert", "add", "slow-queue", "--conditions", '{"dlqSize": 1}')
    assert taken.code == 2 and "already exists" in taken.stderr
    updated = json.loads(cli("alert", "update", "slow-queue", "--conditions", '{"noWorkers": true}').stdout)
    assert (updated["conditions"], updated["severity"]) == ({"noWorkers": True}, "high")
    assert json.loads(cli("alert", "disable", "slow-queue").stdout)["enabled"] is False
    listed = cli("alert", "list")
    assert "slow-queue" in listed.stdout and "no" in listed.stdout
    assert json.loads(cli("alert", "enable", "slow-queue").stdout)["enabled"] is True
    assert cli("alert", "remove", "slow-queue").code == 0
    gone = cli("alert", "show", "slow-queue")
    assert gone.code == 4 and gone.stderr == "clawnsole: error: no alert rule named 'slow-queue'\n"


def test_evaluate_on_the_command_line_prints_what_fired(cli: Cli, db_url: str) -> None:
    cli("alert", "import", str(NOTES))
    sql(db_url, "INSERT INTO clawnsole.items (queue, title, status, finished_at) VALUES ('ops', 't', 'failed', now())")
    table = cli("alert", "evaluate")
    assert table.code == 0, table.stderr
    assert "dlq-jobs" in table.stdout and "queue ops" in table.stdout and "1 notices queued" in table.stdout
    report = json.loads(cli("alert", "evaluate", "--json").stdout)
    assert report["notices"] == 0  # still firing, nothing new
    shown = json.loads(cli("alert", "show", "dlq-jobs").stdout)
    assert [(a["subject"], a["state"]) for a in shown["alerts"]] == [("ops", "firing")]


def test_a_database_that_is_down_is_one_line_exit_5(cli: Cli) -> None:
    done = cli("alert", "list", "--database-url", "postgresql://nobody@127.0.0.1:1/none")
    assert done.code == 5 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
