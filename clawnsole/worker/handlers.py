"""Handlers: a Python callable `(item, ctx) -> result`, loaded from `module:function`, or a registry of
them by item kind collected from a module's `@handler("kind")` functions."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from clawnsole import validate
from clawnsole.errors import InvalidInput
from clawnsole.models import Item
from clawnsole.worker.context import Context

Handler = Callable[[Item, Context], Any]
F = TypeVar("F", bound=Callable[..., Any])

_KINDS_ATTRIBUTE = "__clawnsole_kinds__"
ANY_KIND = "*"


class HandlerFailed(Exception):
    """Raised by a handler to fail its item with this message; `retry=False` fails it for good at once."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retry = retry


def handler(kind: str) -> Callable[[F], F]:
    """Mark a function as the handler of items of `kind` ("*": of any kind without its own handler)."""
    if kind != ANY_KIND:
        validate.kind(kind)

    def mark(function: F) -> F:
        setattr(function, _KINDS_ATTRIBUTE, (*getattr(function, _KINDS_ATTRIBUTE, ()), kind))
        return function

    return mark


@dataclass(frozen=True)
class Entry:
    """One registered handler, for listing."""

    kind: str
    target: str
    description: str


class Registry:
    """Dispatches an item to the handler of its kind; an unknown kind fails the item for good at once."""

    def __init__(self, handlers: Mapping[str, Handler], source: str) -> None:
        self._handlers = dict(handlers)
        self.source = source

    @classmethod
    def from_module(cls, name: str) -> Registry:
        """Every `@handler`-marked function found in the module (imported by name)."""
        module = _import(name, "handlers")
        found: dict[str, Handler] = {}
        for value in vars(module).values():
            for kind in getattr(value, _KINDS_ATTRIBUTE, ()) if callable(value) else ():
                if kind in found and found[kind] is not value:
                    raise InvalidInput("handlers", f"{name} has two handlers for kind {kind!r}")
                found[kind] = value
        if not found:
            raise InvalidInput("handlers", f'{name} has no functions marked with @handler("kind")')
        return cls(found, name)

    def entries(self) -> list[Entry]:
        """The registered handlers, sorted by kind."""
        return [
            Entry(kind, _describe(function), (function.__doc__ or "").strip().split("\n")[0])
            for kind, function in sorted(self._handlers.items())
        ]

    def __call__(self, item: Item, ctx: Context) -> Any:
        function = self._handlers.get(item.kind or "") or self._handlers.get(ANY_KIND)
        if function is None:
            kinds = ", ".join(sorted(self._handlers))
            raise HandlerFailed(
                f"no handler for kind {item.kind!r} in {self.source} (it handles: {kinds})", retry=False
            )
        return function(item, ctx)


def load_callable(spec: str) -> Handler:
    """The callable named by `module:function` (or `module:Class.method`)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise InvalidInput("handler", f"{spec!r} is not module:function")
    target: Any = _import(module_name, "handler")
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise InvalidInput("handler", f"{module_name} has no attribute {attribute!r}") from None
    if not callable(target):
        raise InvalidInput("handler", f"{spec} is not callable")
    return target  # type: ignore[no-any-return]


def _import(name: str, field: str) -> Any:
    # Like `python -m`, look in the working directory too: handler modules usually live next to the job.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except Exception as error:  # a broken handler module is a configuration error, whatever it raises
        raise InvalidInput(field, f"cannot import {name!r}: {type(error).__name__}: {error}") from None


def _describe(function: Callable[..., Any]) -> str:
    return f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', repr(function))}"
