"""A command run from cron imports what it uses and nothing more: start-up time is mostly imports.

The import set is read from `sys.modules` when the real command exits, in a subprocess of its own, against
a real database: `python -X importtime` does not list modules loaded through `importlib.import_module`,
which is how the command line loads its groups. These tests assert which modules are loaded, never how long
anything took (the machine is shared; `clawnsole bench cli` measures the time).
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from clawnsole.cli import main as entry_point
from clawnsole.cli.main import COMMANDS, GROUPS, build_app
from tests.conftest import Cli

# Runs the command line in argv[2:] and, when it exits (after typer's SystemExit and, being registered
# before the command's own, after its atexit handlers), writes to the file named by argv[1] how many objects
# the cyclic collector was told to leave alone, then the modules loaded, one a line.
_RUN_AND_LIST_MODULES = """
import atexit, gc, sys
listing = sys.argv.pop(1)
atexit.register(lambda: open(listing, "w").write("\\n".join([str(gc.get_freeze_count()), *sorted(sys.modules)])))
from clawnsole.cli.main import main
main()
"""

# Modules a queue command never needs: the pool and retry libraries (a command runs on one connection),
# pydantic (the command's settings are two variables; pydantic and pydantic-settings cost ~100 ms of a call),
# the schedule and worker stacks, the help renderer, the embedded server (a URL is given) and the benchmark.
# asyncio is not on the list: psycopg imports it itself.
NOT_FOR_A_QUEUE_COMMAND = (
    "psycopg_pool",
    "tenacity",
    "pydantic",  # and, by prefix, pydantic_core
    "pydantic_settings",
    "annotated_types",
    "clawnsole.config_channels",
    "croniter",
    "cron_descriptor",
    "yaml",
    "rich",
    "clawnsole.worker",
    "clawnsole.schedules",  # the whole package: fire_times, models, file, ops, api, runtime
    "clawnsole.listen",
    "clawnsole.embedded",
    "clawnsole.bench",
    "clawnsole.cli.schedule",
    "clawnsole.cli.db",
)


@dataclass(frozen=True)
class Run:
    modules: set[str]
    frozen: int  # objects put out of the cyclic collector's reach by the time the process ended
    stdout: str


def _run(cli: Cli, tmp_path: Path, *args: str) -> Run:
    listing = tmp_path / "modules.txt"
    done = subprocess.run(
        [sys.executable, "-c", _RUN_AND_LIST_MODULES, str(listing), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=cli.env(),
    )
    assert done.returncode == 0, done.stderr
    frozen, *modules = listing.read_text().split("\n")
    return Run(set(modules), int(frozen), done.stdout)


def _unneeded(modules: set[str]) -> list[str]:
    return sorted(m for m in modules for prefix in NOT_FOR_A_QUEUE_COMMAND if m == prefix or m.startswith(prefix))


def test_enqueue_from_a_fresh_process_loads_neither_the_pool_nor_the_worker_nor_the_schedules(
    cli: Cli, tmp_path: Path
) -> None:
    run = _run(cli, tmp_path, "workqueue", "enqueue", "--queue", "q", "--title", "t")
    assert '"created": true' in run.stdout  # the command did its work: the listing is of a real run
    assert {"clawnsole.queue", "clawnsole.config", "psycopg"} <= run.modules
    assert _unneeded(run.modules) == []


def test_enqueue_with_a_dedupe_key_does_not_load_the_retry_library_when_the_first_attempt_succeeds(
    cli: Cli, tmp_path: Path
) -> None:
    # The cron case of the README (`--dedupeKey "hourly-pr-review:$(date …)"`): the retry policy is for a
    # lost connection, and a first attempt that succeeds needs none of it.
    argv = ("workqueue", "enqueue", "--queue", "q", "--title", "t", "--dedupe-key", "hourly")
    run = _run(cli, tmp_path, *argv)
    assert '"created": true' in run.stdout
    assert _unneeded(run.modules) == []


def test_claim_next_from_a_fresh_process_loads_neither_the_pool_nor_the_listener_nor_the_worker(
    cli: Cli, tmp_path: Path
) -> None:
    assert cli("workqueue", "enqueue", "--queue", "q", "--title", "t").code == 0
    run = _run(cli, tmp_path, "workqueue", "claim-next", "--queue", "q", "--agent", "a")
    assert '"claimed_by": "a"' in run.stdout
    assert {"clawnsole.queue", "clawnsole.config", "psycopg"} <= run.modules
    assert _unneeded(run.modules) == []


def test_a_command_exits_without_the_collector_walking_what_is_left_and_still_prints_everything(
    cli: Cli, tmp_path: Path
) -> None:
    # Python's last collections at shutdown walk every object still alive, for nothing: the process is
    # ending. The command freezes them first, after every other atexit handler, and its output is intact.
    instructions = "i" * 100_000  # more than a pipe holds (64 KiB): none of the output may be lost at exit
    run = _run(cli, tmp_path, "workqueue", "enqueue", "--queue", "q", "--title", "t", "--instructions", instructions)
    assert run.frozen > 10_000  # the interpreter, typer and psycopg: tens of thousands of objects
    assert f'"instructions": "{instructions}"' in run.stdout


def _help(app: typer.Typer, *words: str) -> str:
    result = CliRunner().invoke(app, [*words, "--help"], prog_name="clawnsole")
    assert result.exit_code == 0, result.output
    return result.output


def test_the_tree_built_for_one_command_gives_that_command_exactly_as_the_whole_tree_does() -> None:
    whole = build_app()
    root = typer.main.get_command(whole)
    assert isinstance(root, typer.core.TyperGroup)
    assert list(root.commands) == [*COMMANDS, *GROUPS]
    assert list(typer.main.get_command(entry_point.app).commands) == list(root.commands)  # `app`: the whole tree
    for name, group in root.commands.items():
        assert _help(build_app([name]), name) == _help(whole, name)
        for command in getattr(group, "commands", {}):
            assert _help(build_app([name, command]), name, command) == _help(whole, name, command)


@pytest.mark.parametrize(
    "argv",
    [[], ["--help"], ["workqueue"], ["workqueue", "--help"], ["workqueue", "claim-nxt"], ["wq", "enqueue"]],
    ids=["nothing", "help", "a group alone", "a group's help", "a misspelt command", "a misspelt group"],
)
def test_help_and_usage_errors_read_as_they_do_from_the_whole_tree(argv: list[str]) -> None:
    # A command line that names no command exactly (nothing, --help, a group alone, a misspelt name) gets
    # every command there is to list or to suggest from.
    runner = CliRunner()
    pruned = runner.invoke(build_app(argv), argv, prog_name="clawnsole")
    whole = runner.invoke(build_app(), argv, prog_name="clawnsole")
    assert (pruned.exit_code, pruned.output) == (whole.exit_code, whole.output)
    assert pruned.output  # help or an error message, never silence
