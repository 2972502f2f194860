"""Handler loading: `module:function`, registries of `@handler("kind")` functions, and their errors."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from clawnsole.errors import InvalidInput
from clawnsole.worker import HandlerFailed, Registry, handler, load_callable


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [n for n in sys.modules if n.startswith("wt_")]:
        del sys.modules[name]


def _module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


def test_module_function_is_loaded_and_called(module_dir: Path) -> None:
    _module(module_dir, "wt_fn", "def run(item, ctx):\n    return {'seen': item}\n")
    assert load_callable("wt_fn:run")("an item", None) == {"seen": "an item"}  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("wt_nope:run", "cannot import"),
        ("wt_fn2:missing", "no attribute"),
        ("wt_fn2", "module:function"),
        ("wt_fn2:VALUE", "not callable"),
        ("wt_broken:run", "ZeroDivisionError"),
    ],
)
def test_bad_handler_specs_are_invalid_input(module_dir: Path, spec: str, message: str) -> None:
    _module(module_dir, "wt_fn2", "VALUE = 3\ndef run(item, ctx):\n    pass\n")
    _module(module_dir, "wt_broken", "1 / 0\n")
    with pytest.raises(InvalidInput, match=message):
        load_callable(spec)


def test_registry_collects_decorated_functions_by_kind_and_lists_them(module_dir: Path) -> None:
    _module(
        module_dir,
        "wt_reg",
        '''
        from clawnsole.worker import handler

        @handler("health-check")
        def check(item, ctx):
            """Ping the service."""
            return "checked"

        @handler("reindex")
        @handler("rebuild")
        def rebuild(item, ctx):
            return "rebuilt"

        def helper():
            pass
        ''',
    )
    registry = Registry.from_module("wt_reg")
    assert [(e.kind, e.target, e.description) for e in registry.entries()] == [
        ("health-check", "wt_reg:check", "Ping the service."),
        ("rebuild", "wt_reg:rebuild", ""),
        ("reindex", "wt_reg:rebuild", ""),
    ]


def test_an_unknown_kind_fails_for_good_naming_what_is_handled() -> None:
    registry = Registry({"a": lambda item, ctx: 1, "b": lambda item, ctx: 2}, "jobs")

    class Item:
        kind = "c"

    with pytest.raises(HandlerFailed, match=r"no handler for kind 'c' in jobs \(it handles: a, b\)") as failure:
        registry(Item(), None)  # type: ignore[arg-type]
    assert failure.value.retry is False


def test_a_catch_all_handler_takes_kinds_without_their_own() -> None:
    registry = Registry({"*": lambda item, ctx: "any", "a": lambda item, ctx: "a"}, "jobs")

    class Item:
        def __init__(self, kind: str | None) -> None:
            self.kind = kind

    assert registry(Item("a"), None) == "a"  # type: ignore[arg-type]
    assert registry(Item("zzz"), None) == "any"  # type: ignore[arg-type]
    assert registry(Item(None), None) == "any"  # type: ignore[arg-type]


def test_a_module_without_handlers_or_with_two_for_one_kind_is_rejected(module_dir: Path) -> None:
    _module(module_dir, "wt_empty", "x = 1\n")
    _module(
        module_dir,
        "wt_twice",
        "from clawnsole.worker import handler\n"
        "@handler('a')\ndef one(i, c): pass\n"
        "@handler('a')\ndef two(i, c): pass\n",
    )
    with pytest.raises(InvalidInput, match="no functions marked"):
        Registry.from_module("wt_empty")
    with pytest.raises(InvalidInput, match="two handlers for kind 'a'"):
        Registry.from_module("wt_twice")


def test_handler_rejects_a_kind_that_is_not_a_kind_name() -> None:
    with pytest.raises(InvalidInput):
        handler("not a kind!")
