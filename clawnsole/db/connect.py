"""Opening connections, with driver errors turned into Clawnsole's and passwords kept out of messages."""

from __future__ import annotations

import re
from typing import Any

import psycopg

from clawnsole.errors import DatabaseUnavailable

_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
_PASSWORD_KEYWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact(text: str) -> str:
    """The text with any password in a URL or a `password=` keyword replaced by `***`."""
    return _PASSWORD_KEYWORD.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\1***@", text))


def describe(conninfo: str) -> str:
    """A printable name of the server a conninfo points at: host, port and database, never the password."""
    try:
        params = psycopg.conninfo.conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        return "<unparsable database URL>"
    host = str(params.get("host") or "localhost")
    port = str(params.get("port") or "5432")
    return f"{host}:{port}/{params.get('dbname') or params.get('user') or ''}"


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type when it has none), passwords redacted."""
    text = str(error).strip()
    return redact(text.splitlines()[0] if text else type(error).__name__)


def unavailable(conninfo: str, error: BaseException, *, lost: bool = False) -> DatabaseUnavailable:
    """The error to raise when the server at conninfo cannot be reached (`lost`: the connection broke while
    a statement was in flight)."""
    if lost:
        return DatabaseUnavailable(
            f"lost the connection to the database at {describe(conninfo)}: {first_line(error)}", lost=True
        )
    return DatabaseUnavailable(f"cannot connect to the database at {describe(conninfo)}: {first_line(error)}")


# SQLSTATE classes and codes that mean the connection is gone or the server is going away; every other
# server error is the statement's own (PostgreSQL's errcodes appendix).
_CONNECTION_CLASSES = ("08",)
_SERVER_GOING = {"57P01", "57P02", "57P03", "53300"}  # admin/crash shutdown, cannot connect now, too many


def is_connection_error(error: BaseException) -> bool:
    """True when a driver error means the connection is unusable, not that the server refused a statement:
    client-side failures (no SQLSTATE), connection exceptions (class 08) and a server shutting down."""
    if isinstance(error, psycopg.InterfaceError):
        return True
    if not isinstance(error, psycopg.OperationalError):
        return False
    state = error.sqlstate
    return state is None or state[:2] in _CONNECTION_CLASSES or state in _SERVER_GOING


def connect(conninfo: str, **kwargs: Any) -> psycopg.Connection[tuple[Any, ...]]:
    """A new connection, raising DatabaseUnavailable (password redacted) when the server cannot be reached."""
    try:
        return psycopg.connect(conninfo, connect_timeout=10, **kwargs)
    except psycopg.OperationalError as error:
        raise unavailable(conninfo, error) from None
    except psycopg.ProgrammingError as error:
        raise unavailable(conninfo, error) from None
