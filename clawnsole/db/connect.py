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


def unavailable(conninfo: str, error: BaseException) -> DatabaseUnavailable:
    """The error to raise when the server at conninfo cannot be used."""
    first_line = redact(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
    return DatabaseUnavailable(f"cannot connect to the database at {describe(conninfo)}: {first_line}")


def connect(conninfo: str, **kwargs: Any) -> psycopg.Connection[tuple[Any, ...]]:
    """A new connection, raising DatabaseUnavailable (password redacted) when the server cannot be reached."""
    try:
        return psycopg.connect(conninfo, connect_timeout=10, **kwargs)
    except psycopg.OperationalError as error:
        raise unavailable(conninfo, error) from None
    except psycopg.ProgrammingError as error:
        raise unavailable(conninfo, error) from None
