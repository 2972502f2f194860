"""What every command shares: settings, opening the queue, printing, and exit codes for errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, ParamSpec, TypeVar

import typer

if TYPE_CHECKING:
    from clawnsole.client import ApiClient
    from clawnsole.config import Settings
    from clawnsole.errors import InvalidInput
    from clawnsole.queue import WorkQueue

P = ParamSpec("P")
R = TypeVar("R")

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 2 bad input, 3 lease lost or conflict, 4 not found, 5 database unreachable or schema missing,"
    " 6 the API refused the token."
)

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="PostgreSQL URL (default: $CLAWNSOLE_DATABASE_URL, $DATABASE_URL, else the embedded server).",
        show_default=False,
    ),
]
Schema = Annotated[
    str | None,
    typer.Option("--schema", help="PostgreSQL schema holding the queue (default: $CLAWNSOLE_SCHEMA or clawnsole)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ApiUrl = Annotated[
    str | None,
    typer.Option(
        "--api-url",
        envvar="CLAWNSOLE_API_URL",
        help="Work through the HTTP API of `clawnsole serve` at this URL instead of the database "
        "($CLAWNSOLE_API_URL; needs --token).",
        show_default=False,
    ),
]
ApiToken = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="CLAWNSOLE_TOKEN",
        help="The API token with --api-url ($CLAWNSOLE_TOKEN; never printed).",
        show_default=False,
        show_envvar=False,
    ),
]


# Control characters and line separators, shown escaped: an error is one line, whatever text it quotes,
# and a hostile value cannot move the cursor or recolour the terminal it is printed on.
_ESCAPES = {
    code: f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    for code in (*range(0x00, 0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}


def fail(message: str, code: int) -> NoReturn:
    """Print one line on stderr and exit with the code."""
    from clawnsole.db.connect import redact

    typer.echo(f"clawnsole: error: {redact(message).translate(_ESCAPES)}", err=True)
    raise typer.Exit(code)


def _not_utf8(error: UnicodeEncodeError, arguments: dict[str, Any]) -> InvalidInput | None:
    """The bad-input error for text that was not UTF-8 and reached the driver, naming the argument it came in.

    Python hands bytes that are not UTF-8 (in argv, the environment, a file name) over as lone surrogates,
    which no database driver can encode. Refusing them up front would also refuse file names and commands,
    which are fine as they are; so the argument is named here, when the driver has refused its text, before
    anything was written (the statement is never sent, and its transaction rolls back).
    """
    from clawnsole.errors import InvalidInput

    if not isinstance(error.object, str) or not _has_surrogate(error.object):
        return None  # not the stand-in for undecodable bytes: some other encoding problem
    for name, value in arguments.items():
        for text in value if isinstance(value, list | tuple) else [value]:
            if isinstance(text, str) and _has_surrogate(text) and text in error.object:
                return InvalidInput(name, "is not valid UTF-8 text")
    return InvalidInput("input", "is not valid UTF-8 text (bytes that are not UTF-8 in an argument or variable)")


def _has_surrogate(text: str) -> bool:
    return not text.isascii() and any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn Clawnsole's errors into one line on stderr and the documented exit code."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from clawnsole.errors import ClawnsoleError

        try:
            return command(*args, **kwargs)
        except ClawnsoleError as error:
            fail(str(error), error.exit_code)
        except UnicodeEncodeError as error:
            refused = _not_utf8(error, kwargs)
            if refused is None:
                raise
            fail(str(refused), refused.exit_code)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper


def settings(database_url: str | None, schema: str | None) -> Settings:
    """Settings from the environment, overridden by the command's options (an empty option is not given)."""
    from clawnsole.config import Settings

    return Settings.from_environment(database_url=database_url or None, schema_name=schema or None)


def database_url(config: Settings) -> str:
    """The configured URL, or the embedded server's (started on demand, announced once on stderr)."""
    if config.database_url:
        return config.database_url
    from clawnsole.embedded import default_database_url

    return default_database_url(announce=True, schema=config.schema_name)


def resolve(url: str | None, schema: str | None) -> tuple[str, str]:
    """The connection string and schema a command works on."""
    config = settings(url, schema)
    return database_url(config), config.schema_name


@contextmanager
def open_queue(url: str | None, schema: str | None, agent: str | None = None) -> Iterator[WorkQueue]:
    """A WorkQueue on one connection: a command runs a few statements and exits, so no pool. Autocommit,
    as the queue's own pool is: each item statement commits by itself, with no BEGIN and COMMIT round trips."""
    from clawnsole.db.connect import connect
    from clawnsole.queue import WorkQueue

    conninfo, schema_name = resolve(url, schema)
    with connect(conninfo, autocommit=True) as conn:
        yield WorkQueue(conn, schema=schema_name, agent=agent).open()


def api_client(api_url: str | None, token: str | None) -> ApiClient | None:
    """The HTTP API's client when an API URL is given (option or $CLAWNSOLE_API_URL), else None: the command
    then works on the database. The URL, not the token, picks the way: a worker's child may inherit a token."""
    if not api_url:
        return None
    from clawnsole.errors import InvalidInput

    if not token:
        raise InvalidInput("token", "missing: with --api-url give --token or set $CLAWNSOLE_TOKEN")
    from clawnsole.client import ApiClient

    return ApiClient(api_url, token)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=str, ensure_ascii=False))


def print_table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """A plain aligned table (no colours: output is often piped or logged)."""
    if not rows:
        typer.echo("(none)")
        return
    cells = [[("" if r.get(c) is None else str(r.get(c))).replace("\n", " ") for c in columns] for r in rows]
    widths = [max(len(c), *(min(len(row[i]), 60) for row in cells)) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        typer.echo("  ".join(v[:60].ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def read_text_arg(path: str, field: str, limit: int) -> str:
    """The contents of a file, or of stdin for '-', at most `limit` bytes."""
    from clawnsole.errors import InvalidInput

    try:
        data = sys.stdin.buffer.read(limit + 1) if path == "-" else open(path, "rb").read(limit + 1)  # noqa: SIM115
    except OSError as error:
        raise InvalidInput(field, f"cannot read {path!r}: {error.strerror}") from None
    if len(data) > limit:
        raise InvalidInput(field, f"is larger than {_size(limit)}")
    try:
        return data.decode()
    except UnicodeDecodeError as error:
        raise InvalidInput(field, f"is not valid UTF-8 text (byte {error.start} is {data[error.start]:#04x})") from None


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit // 1024} KiB"


_MAX_TEXT = 1024 * 1024


def text_options(
    instructions: str | None, instructions_file: str | None, payload: str | None, payload_file: str | None
) -> tuple[str | None, str | None]:
    """Instructions and payload given inline or read from a file (or - for stdin); one way each, not both."""
    from clawnsole.errors import InvalidInput

    if instructions is not None and instructions_file is not None:
        raise InvalidInput("instructions", "give --instructions or --instructions-file, not both")
    if payload is not None and payload_file is not None:
        raise InvalidInput("payload", "give --payload or --payload-file, not both")
    if instructions_file is not None:
        instructions = read_text_arg(instructions_file, "instructions", _MAX_TEXT)
    if payload_file is not None:
        payload = read_text_arg(payload_file, "payload", _MAX_TEXT)
    return instructions, payload
