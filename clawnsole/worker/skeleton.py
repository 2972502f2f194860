"""`clawnsole handlers new NAME`: a handler module to start from, and a test of it that passes as written.

NAME is the kind the handler serves (`daily.questmaster`); the files are named after it as a Python module
can be (`daily_questmaster.py`, `test_daily_questmaster.py`).
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

from clawnsole import validate
from clawnsole.errors import Conflict, InvalidInput

# Characters a kind may hold that a module name may not: each becomes an underscore.
_NOT_IN_A_MODULE_NAME = re.compile(r"[.\-:]")

_HANDLER = Template('''\
"""The handler of items of kind "$kind" (written by `clawnsole handlers new $kind`).

Run it once now, in the foreground, recorded as an item like any other:

    clawnsole handlers run $kind --handlers $module --payload '{"org": "default-org"}'

Run it from a worker, for every item of this kind in a queue:

    clawnsole workqueue worker-loop --queue ops --handlers $module

and enqueue work for it with `clawnsole workqueue enqueue --queue ops --kind $kind --title "..."`.
"""

from __future__ import annotations

from typing import Any

from clawnsole import Item
from clawnsole.worker import Context, HandlerFailed, handler

# The steps of the job, reported as progress as each one starts (replace them with your own).
STEPS = ("load", "work", "report")


@handler("$kind")
def $function(item: Item, ctx: Context) -> dict[str, Any]:
    """Say here, in one line, what this job does (`clawnsole handlers list` shows it)."""
    # The payload is the job's input: a JSON object given at enqueue (or with `handlers run --payload`).
    org = item.payload.get("org")
    if org is not None and not isinstance(org, str):
        # Fails the item for good: a wrong input does not get better by retrying.
        raise HandlerFailed(f"payload.org is not text: {org!r}", retry=False)
    for number, step in enumerate(STEPS):
        # Set when the worker no longer wants the outcome (the lease was lost, the worker is stopping):
        # stop here rather than do work whose result will not be recorded.
        ctx.raise_if_cancelled()
        # Lands in the item's history and renews the lease, so a long job is not taken for a dead one.
        ctx.progress(note=step, percent=100 * number // len(STEPS))
        # ... do the step's work here. Any exception fails the attempt (retried with backoff while
        # attempts remain); wait on ctx.cancelled instead of sleeping.
    # The return value is the item's result: anything JSON can hold, up to 1 MiB.
    return {"org": org, "steps": len(STEPS)}
''')

_TEST = Template('''\
"""A test of the "$kind" handler (written by `clawnsole handlers new $kind`): it calls the handler the way a
worker does, through its module's registry, with a Context that records progress. Run it with pytest."""

from __future__ import annotations

import pytest
from clawnsole.worker import HandlerFailed, Registry
from clawnsole.worker.testing import run_handler

# The module's handlers by kind, as `--handlers $module` loads them.
HANDLERS = Registry.from_module("$module")
KIND = "$kind"


def test_${function}_reports_each_step_and_returns_a_json_result() -> None:
    run = run_handler(HANDLERS, kind=KIND, payload={"org": "default-org"})
    assert run.result == {"org": "default-org", "steps": 3}
    assert [note for note, _ in run.progress] == ["load", "work", "report"]


def test_${function}_fails_for_good_on_a_bad_payload() -> None:
    with pytest.raises(HandlerFailed) as failed:
        run_handler(HANDLERS, kind=KIND, payload={"org": 42})
    assert failed.value.retry is False
''')


def module_name(name: str) -> str:
    """The module that `handlers new NAME` writes for kind NAME; InvalidInput naming `name` when none can be."""
    try:
        validate.kind(name)
    except InvalidInput as error:
        raise InvalidInput("name", error.message) from None
    module = _NOT_IN_A_MODULE_NAME.sub("_", name)
    if not module.isidentifier() or keyword.iskeyword(module) or module.startswith("test_"):
        raise InvalidInput(
            "name",
            f"{name!r} does not make a Python module name (start with a letter; letters, digits, '_', '.', '-'; "
            "not a Python keyword; not test_…)",
        )
    return module


def write(name: str, directory: Path | str = ".", *, force: bool = False) -> list[Path]:
    """Write `<module>.py` and `test_<module>.py` for kind `name` into `directory`; returns their paths.

    Refuses (Conflict) to overwrite either file unless `force`; writes neither when it refuses.
    """
    module = module_name(name)
    folder = Path(directory)
    if not folder.is_dir():
        raise InvalidInput("dir", f"{str(folder)!r} is not a directory")
    values = {"kind": name, "module": module, "function": module}
    files = {
        folder / f"{module}.py": _HANDLER.substitute(values),
        folder / f"test_{module}.py": _TEST.substitute(values),
    }
    existing = [str(p) for p in files if p.exists()]
    if existing and not force:
        raise Conflict(
            f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}: pass --force to overwrite"
        )
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    return list(files)
