"""The reliability suite: real worker processes under injected faults, judged from the item histories.

How big a run is:
- plain `pytest` (CI mode): small counts, seconds per scenario;
- `--reliability-scale=full` (or $CLAWNSOLE_RELIABILITY_SCALE=full): the full counts each scenario names
  (`make reliability` runs this);
- `--soak N` (or $CLAWNSOLE_SOAK=N; `--soak` alone is 10): full counts times N, for long soak runs.
  Giving a soak implies the full scale.
Full-scale tests get a longer pytest-timeout (`FULL_TIMEOUT` seconds times the soak) unless they set one.

Every scenario adds one row to the session's `reliability_report`; the table (scenario, items, faults
injected, lost, duplicated, re-runs, time) prints at the end of any run that recorded a row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import pytest

FULL_TIMEOUT = 900

SCALES = ("ci", "full")


@dataclass(frozen=True)
class ReportRow:
    """One scenario's outcome, as printed in the summary table."""

    scenario: str
    items: int
    faults: int
    lost: int
    duplicated: int
    reruns: int
    seconds: float
    note: str = ""


@dataclass
class ReliabilityReport:
    """The rows of this session's reliability table."""

    rows: list[ReportRow] = field(default_factory=list)

    def add(
        self,
        scenario: str,
        items: int,
        faults: int,
        lost: int,
        duplicated: int,
        reruns: int,
        seconds: float,
        note: str = "",
    ) -> ReportRow:
        """Record one scenario's outcome (call it before asserting, so a failing run still reports)."""
        row = ReportRow(scenario, items, faults, lost, duplicated, reruns, seconds, note)
        self.rows.append(row)
        return row

    def table(self) -> list[str]:
        """The rows as aligned text lines, notes under their row."""
        head = ("scenario", "items", "faults injected", "lost", "duplicated", "re-runs", "time")
        body = [
            (
                r.scenario,
                str(r.items),
                str(r.faults),
                str(r.lost),
                str(r.duplicated),
                str(r.reruns),
                f"{r.seconds:.1f}s",
            )
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in (head, *body)) for i in range(len(head))]

        def line(cells: tuple[str, ...]) -> str:
            # Text left-aligned, numbers right-aligned, as a reader scans them.
            return "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        lines = [line(head), "  ".join("-" * w for w in widths)]
        for row, cells in zip(self.rows, body, strict=True):
            lines.append(line(cells))
            if row.note:
                lines.append(f"    {row.note}")
        return lines


_REPORT = pytest.StashKey[ReliabilityReport]()


@dataclass(frozen=True)
class Scale:
    """How big this run's scenarios are: `pick(ci, full)` gives the count for this run."""

    full: bool
    soak: int

    def pick(self, ci: int, full: int) -> int:
        """`ci` in CI mode; `full` times the soak multiplier otherwise."""
        return full * self.soak if self.full else ci

    def seconds(self, ci: float, full: float) -> float:
        """A duration (a held snapshot, a storm) for this run; soaks do not lengthen it."""
        return full if self.full else ci


def _soak(config: pytest.Config) -> int | None:
    """The soak multiplier asked for, or None (option first, then the environment)."""
    given = config.getoption("soak", None)
    if given is None and os.environ.get("CLAWNSOLE_SOAK"):
        given = os.environ["CLAWNSOLE_SOAK"]
    if given is None:
        return None
    try:
        value = int(given)
    except ValueError:
        raise pytest.UsageError(f"--soak / CLAWNSOLE_SOAK must be a whole number, got {given!r}") from None
    if value < 1:
        raise pytest.UsageError(f"--soak / CLAWNSOLE_SOAK must be at least 1, got {value}")
    return value


def scale_of(config: pytest.Config) -> Scale:
    """This run's scale from the options and the environment (see the module docstring)."""
    soak = _soak(config)
    name = config.getoption("reliability_scale", None) or os.environ.get("CLAWNSOLE_RELIABILITY_SCALE") or "ci"
    if name not in SCALES:
        raise pytest.UsageError(f"--reliability-scale must be one of {', '.join(SCALES)}, got {name!r}")
    return Scale(full=name == "full" or soak is not None, soak=soak or 1)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_REPORT] = ReliabilityReport()
    config.addinivalue_line("markers", "reliability: a fault scenario with real worker processes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    scale = scale_of(config)
    if not scale.full:
        return
    here = os.path.dirname(__file__)
    for item in items:
        # Full counts take minutes, not the 180 s a CI-sized test gets.
        if str(item.path).startswith(here) and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(FULL_TIMEOUT * scale.soak))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    report = config.stash.get(_REPORT, None)
    if report is None or not report.rows:
        return
    scale = scale_of(config)
    mode = f"full x{scale.soak}" if scale.full else "ci"
    terminalreporter.write_sep("=", f"reliability ({mode} scale)")
    for line in report.table():
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def reliability_report(pytestconfig: pytest.Config) -> ReliabilityReport:
    """The session's report: `add(scenario, items, faults, lost, duplicated, reruns, seconds, note="")`."""
    return pytestconfig.stash[_REPORT]


@pytest.fixture(scope="session")
def soak(pytestconfig: pytest.Config) -> int:
    """The soak multiplier: 1 unless `--soak N` or $CLAWNSOLE_SOAK asks for more."""
    return scale_of(pytestconfig).soak


@pytest.fixture(scope="session")
def scale(pytestconfig: pytest.Config) -> Scale:
    """This run's scale: `scale.pick(ci=..., full=...)` sizes a scenario."""
    return scale_of(pytestconfig)
