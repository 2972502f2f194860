"""`clawnsole schedule …` and `clawnsole scheduler …` as users run them: real subprocesses, exit codes."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from tests.conftest import Cli
from tests.scheduler.conftest import sql

# The crontab line of ../shared/docs/workqueue-scheduling.md ("Scheduling option A: cron"), as shipped.
CRONTAB_LINE = (
    '0 * * * * /bin/bash -lc \'clawnsole workqueue enqueue --queue dev-team --title "Review open PRs" '
    '--instructions "Review and ship any safe PRs. Leave comments if blocked." --priority 50 '
    '--dedupeKey "hourly-pr-review:$(date -u +%Y-%m-%dT%H)"\''
)
SHARED_DOC = Path(__file__).resolve().parents[3] / "shared" / "docs" / "workqueue-scheduling.md"

FILE = """\
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
    input: {any: json}
  - name: daily-questmaster
    queue: ops
    title: Daily quests
    schedule: "0 9 * * *"
    timezone: America/New_York
    enabled: false
"""


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("clawnsole: error: "), stderr
    return lines[0]


def names(db_url: str) -> list[str]:
    return [r[0] for r in sql(db_url, "SELECT name FROM clawnsole.schedules ORDER BY name")]


def write(tmp_path: Path, text: str, name: str = "schedules.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_add_list_show_pause_resume_run_now_and_remove(cli: Cli) -> None:
    added = cli("schedule", "add", "nine", "--queue", "ops", "--title", "Standup", "--cron", "0 9 * * 1-5",
                "--timezone", "America/New_York", "--catch-up", "none", "--overlap", "skip")  # fmt: skip
    assert added.code == 0, added.stderr
    assert json.loads(added.stdout)["next_run_local"].endswith("T09:00:00-05:00")
    cli("schedule", "add", "sync", "--queue", "ops", "--title", "Sync", "--every", "15m", "--paused")
    listing = cli("schedule", "list")
    assert listing.code == 0
    nine = next(line for line in listing.stdout.splitlines() if line.startswith("nine"))
    assert "At 09:00, Monday through Friday" in nine and " EST " in nine and "T14:00:00Z" in nine
    assert "paused" in next(line for line in listing.stdout.splitlines() if line.startswith("sync"))
    ran = json.loads(cli("schedule", "run-now", "nine").stdout)
    assert ran["created"] and ran["dedupe_key"].startswith("schedule:nine:run-now:")
    shown = json.loads(cli("schedule", "show", "nine").stdout)
    assert shown["recent_runs"][0]["item_id"] == ran["id"] and shown["recent_runs"][0]["item_status"] == "pending"
    assert len(shown["upcoming"]) == 5 and shown["upcoming"][0]["local"].endswith("T09:00:00-05:00")
    assert json.loads(cli("schedule", "pause", "nine").stdout)["status"] == "paused"
    assert json.loads(cli("schedule", "resume", "nine").stdout)["status"] == "active"
    updated = json.loads(cli("schedule", "update", "nine", "--title", "Daily standup", "--every", "1h").stdout)
    assert (updated["title"], updated["every"], updated["cron"]) == ("Daily standup", "1h", None)
    assert cli("schedule", "remove", "nine").code == 0
    assert [s["name"] for s in json.loads(cli("schedule", "list", "--json").stdout)] == ["sync"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cron", "0 9 * * * *"], "cron: '0 9 * * * *' must have exactly five fields"),
        (["--cron", "0 9 * * * * 2026"], "must have exactly five fields"),
        (["--cron", "every day"], "must have exactly five fields"),
        (["--cron", "0 25 * * *"], "is not a valid cron expression"),
        (["--cron", "0 9 * * *", "--timezone", "Mars/Base"], "timezone: 'Mars/Base' is not a known IANA time zone"),
        (["--every", "0"], "every: must be more than zero seconds"),
        (["--every", "-15m"], "every: '-15m' is not a duration"),
        (["--cron", "0 9 * * *", "--every", "1h"], "give either a cron expression or an interval"),
        (["--cron", "0 9 * * *", "--catch-up", "sometimes"], "catch_up: 'sometimes' is not one of latest, all, none"),
    ],
)
def test_bad_input_on_add_is_one_line_exit_2_and_writes_nothing(
    cli: Cli, db_url: str, args: list[str], message: str
) -> None:
    result = cli("schedule", "add", "x", "--queue", "q", "--title", "t", *args)
    assert result.code == 2
    assert message in one_error_line(result.stderr)
    assert names(db_url) == []


def test_a_taken_name_on_add_is_exit_2(cli: Cli, db_url: str) -> None:
    assert cli("schedule", "add", "x", "--queue", "q", "--title", "t", "--every", "1h").code == 0
    again = cli("schedule", "add", "x", "--queue", "other", "--title", "t", "--cron", "0 * * * *")
    assert again.code == 2
    assert one_error_line(again.stderr) == "clawnsole: error: name: a schedule named 'x' already exists"
    assert sql(db_url, "SELECT queue FROM clawnsole.schedules") == [("q",)]


@pytest.mark.parametrize("command", ["show", "pause", "resume", "update", "remove", "run-now"])
def test_an_unknown_name_is_exit_4(cli: Cli, command: str) -> None:
    result = cli("schedule", command, "nope")
    assert result.code == 4
    assert one_error_line(result.stderr) == "clawnsole: error: no schedule named 'nope'"


def test_import_is_idempotent_and_prune_and_dry_run_do_what_they_say(cli: Cli, db_url: str, tmp_path: Path) -> None:
    path = write(tmp_path, FILE)
    first = cli("schedule", "import", path)
    assert first.code == 0, first.stderr
    assert first.stdout.splitlines() == [
        "create hourly-pr-review", "create daily-questmaster", "2 created, 0 updated, 0 unchanged, 0 removed",
    ]  # fmt: skip
    before = sql(db_url, "SELECT name, status, next_run_at, payload, updated_at FROM clawnsole.schedules ORDER BY 1")
    assert [(r[0], r[1], r[3]) for r in before] == [
        ("daily-questmaster", "paused", {}), ("hourly-pr-review", "active", {"any": "json"}),
    ]  # fmt: skip
    again = cli("schedule", "import", path)
    assert again.stdout.strip() == "0 created, 0 updated, 2 unchanged, 0 removed"
    assert sql(db_url, "SELECT name, status, next_run_at, payload, updated_at FROM clawnsole.schedules ORDER BY 1") == (
        before
    )

    smaller = write(tmp_path, FILE.split("  - name: daily-questmaster")[0].replace("priority: 50", "priority: 60"))
    dry = cli("schedule", "import", smaller, "--prune", "--dry-run")
    assert dry.stdout.splitlines() == [
        "would update hourly-pr-review (priority)", "would remove daily-questmaster",
        "0 created, 1 updated, 0 unchanged, 1 removed (dry run: nothing written)",
    ]  # fmt: skip
    assert names(db_url) == ["daily-questmaster", "hourly-pr-review"]
    pruned = cli("schedule", "import", smaller, "--prune", "--json")
    assert json.loads(pruned.stdout)["removed"] == ["daily-questmaster"]
    assert sql(db_url, "SELECT name, priority FROM clawnsole.schedules") == [("hourly-pr-review", 60)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("schedules:\n  - name: x\n    queue: q\n    title: t\n    schedule: */5 * * * *\n",
         "line 5: is not valid YAML"),
        (FILE + "  - name: typo\n    queue: q\n    title: t\n    cron: '0 * * * *'\n",
         "line 21: schedules[2] ('typo'): unknown key 'cron'"),
        (FILE + "  - name: six\n    queue: q\n    title: t\n    schedule: '0 0 * * * *'\n",
         "line 21: schedules[2] ('six'): schedule: '0 0 * * * *' must have exactly five fields"),
    ],
)  # fmt: skip
def test_a_bad_file_is_one_line_exit_2_and_imports_nothing(
    cli: Cli, db_url: str, tmp_path: Path, text: str, message: str
) -> None:
    result = cli("schedule", "import", write(tmp_path, text))
    assert result.code == 2
    line = one_error_line(result.stderr)
    assert message in line and "schedules.yaml: " in line
    assert names(db_url) == []


def test_export_then_import_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    cli("schedule", "import", write(tmp_path, FILE))
    exported = cli("schedule", "export")
    assert exported.code == 0
    assert [s["name"] for s in yaml.safe_load(exported.stdout)["schedules"]] == [
        "daily-questmaster",
        "hourly-pr-review",
    ]
    result = cli("schedule", "import", "-", input=exported.stdout)
    assert result.stdout.strip() == "0 created, 0 updated, 2 unchanged, 0 removed"


def test_the_documented_crontab_line_run_twice_in_one_hour_yields_one_item(cli: Cli, db_url: str) -> None:
    line = CRONTAB_LINE
    if SHARED_DOC.exists():
        line = next(x for x in SHARED_DOC.read_text().splitlines() if x.startswith("0 * * * * ") and "enqueue" in x)
    fields = line.split(None, 5)
    assert fields[:5] == ["0", "*", "*", "*", "*"]
    shell, flag, command = shlex.split(fields[5])
    assert (shell, flag) == ("/bin/bash", "-lc")
    # Run it as cron would, less the login shell (it resets PATH away from this test's clawnsole).
    env = cli.env(PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    hour_before = datetime.now(UTC).hour
    runs = [subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=60) for _ in "12"]
    hour_after = datetime.now(UTC).hour
    assert [r.returncode for r in runs] == [0, 0], runs[0].stderr
    created = [json.loads(r.stdout)["created"] for r in runs]
    rows = sql(db_url, "SELECT count(*), count(DISTINCT dedupe_key) FROM clawnsole.items")
    if hour_before == hour_after:  # the two runs fell in one hour (a run across hh:00 rightly makes two)
        assert created == [True, False] and rows == [(1, 1)]
    else:
        assert rows[0][0] == rows[0][1]


def test_three_scheduler_tick_processes_at_once_enqueue_each_window_once(cli: Cli, db_url: str) -> None:
    sql(
        db_url,
        """INSERT INTO clawnsole.schedules (name, queue, title, interval_seconds, catch_up, next_run_at)
           SELECT 's' || n, 'q', 'window', 3600, 'all', date_trunc('second', now()) - interval '4 hours 30 minutes'
             FROM generate_series(1, 100) n""",
    )
    procs = [
        subprocess.Popen([sys.executable, "-m", "clawnsole", "scheduler", "tick"], env=cli.env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[1] for o in outputs]
    reports = [json.loads(out) for out, _ in outputs]
    assert sum(r["enqueued"] for r in reports) == 500
    assert sql(db_url, "SELECT count(*), count(DISTINCT dedupe_key) FROM clawnsole.items") == [(500, 500)]
    assert sql(db_url, "SELECT outcome, count(*) FROM clawnsole.schedule_runs GROUP BY 1") == [("enqueued", 500)]
    # A cron retry after that finds nothing left to do.
    assert json.loads(cli("scheduler", "tick").stdout)["enqueued"] == 0


def test_scheduler_run_exits_cleanly_on_sigterm(cli: Cli) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "clawnsole", "scheduler", "run"], env=cli.env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    started = threading.Event()
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "started" in line:
                started.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert started.wait(30), "".join(lines)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    assert any("SIGTERM received" in line for line in lines) and any("stopped" in line for line in lines)
