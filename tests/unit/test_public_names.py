"""Every public name resolves, lazily, to the object its module defines."""

from __future__ import annotations

import clawnsole


def test_every_exported_name_resolves() -> None:
    for name in clawnsole.__all__:
        assert getattr(clawnsole, name).__name__ == name


def test_an_unknown_name_is_an_attribute_error() -> None:
    try:
        clawnsole.NoSuchThing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as error:
        assert "NoSuchThing" in str(error)
    else:
        raise AssertionError("expected AttributeError")
