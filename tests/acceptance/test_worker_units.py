"""The shipped systemd units, crontabs and LaunchAgents: valid, and saying what the worker needs."""

from __future__ import annotations

import configparser
import plistlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
# verify insists that ExecStart's program exists: this environment's `clawnsole` stands in for the path.
_SCRIPT = Path(sys.executable).with_name("clawnsole")
CLAWNSOLE = _SCRIPT if _SCRIPT.exists() else Path(shutil.which("clawnsole") or "/bin/true")


def _unit(name: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # systemd keys are case-sensitive
    parser.read(UNITS / name)
    return parser


def _seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|min)?", value)
    assert match, value
    return int(match.group(1)) * (60 if match.group(2) == "min" else 1)


def _option(command: str, name: str) -> float:
    match = re.search(rf"{name} (\S+)", command)
    assert match, f"{name} missing from {command}"
    return float(match.group(1))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify wants an instance of the template, not the template itself.
    for unit in UNITS.iterdir():
        text = unit.read_text().replace("/usr/local/bin/clawnsole", str(CLAWNSOLE))
        (tmp_path / unit.name.replace("@.service", "@ops.service")).write_text(text)
    checked = sorted(str(p) for p in tmp_path.iterdir())
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *checked], capture_output=True, text=True, timeout=60
    )
    # verify only warns (exit 0) about unknown keys or bad values, so any output at all is a finding.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_the_worker_unit_is_a_hardened_notify_service_whose_stop_timeout_covers_the_grace() -> None:
    unit = _unit("clawnsole-worker@.service")
    service = unit["Service"]
    assert service["Type"] == "notify" and _seconds(service["WatchdogSec"]) >= 30
    assert service["User"] == "clawnsole" and service["EnvironmentFile"] == "/etc/clawnsole/%i.env"
    assert service["Restart"] == "always"
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert service[key] == "true", key
    assert service["ProtectSystem"] == "strict"
    assert service["KillSignal"] == "SIGTERM" and service["KillMode"] == "mixed"
    command = service["ExecStart"]
    assert command.startswith("/usr/local/bin/clawnsole workqueue worker-loop ") and "%i" in command
    drain = _option(command, "--grace") + _option(command, "--kill-grace")
    assert _seconds(service["TimeoutStopSec"]) >= drain + 10


def test_the_pass_service_and_timer_and_the_scheduler_unit() -> None:
    passing = _unit("clawnsole-worker-pass.service")["Service"]
    assert passing["Type"] == "oneshot" and "workqueue worker-pass" in passing["ExecStart"]
    drain = _option(passing["ExecStart"], "--grace") + _option(passing["ExecStart"], "--kill-grace")
    assert _seconds(passing["TimeoutStopSec"]) >= drain + 10
    timer = _unit("clawnsole-worker-pass.timer")
    assert timer["Timer"]["OnCalendar"] and timer["Install"]["WantedBy"] == "timers.target"
    scheduler = _unit("clawnsole-scheduler.service")["Service"]
    assert scheduler["ExecStart"] == "/usr/local/bin/clawnsole scheduler run"
    assert scheduler["User"] == "clawnsole" and scheduler["Restart"] == "always"


def test_crontabs_escape_percent_signs_and_use_a_utc_window_dedupe_key() -> None:
    enqueue = (ROOT / "examples/cron/enqueue-hourly.crontab").read_text()
    jobs = [line for line in enqueue.splitlines() if line.startswith("0 * * * *")]
    assert len(jobs) == 1
    # In a crontab an unescaped % ends the command: every % must be \%.
    assert "%" in jobs[0] and not re.search(r"(?<!\\)%", jobs[0])
    assert '--dedupe-key "hourly-pr-review:$(date -u +' in jobs[0]
    passing = (ROOT / "examples/cron/worker-pass.crontab").read_text()
    assert any(line.startswith("* * * * *") and "workqueue worker-pass" in line for line in passing.splitlines())


def test_launch_agents_are_valid_property_lists() -> None:
    agents = sorted((ROOT / "examples/launchd").glob("*.plist"))
    assert agents
    for path in agents:
        plist = plistlib.loads(path.read_bytes())
        assert plist["Label"] == path.stem and plist["ProgramArguments"]
    hourly = plistlib.loads((ROOT / "examples/launchd/com.clawnsole.enqueue-hourly.plist").read_bytes())
    assert hourly["StartCalendarInterval"] == {"Minute": 0}
    assert "date -u +%Y-%m-%dT%H" in hourly["ProgramArguments"][-1]
