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
    from clawnsole.config import Settings
    from clawnsole.queue import WorkQueue

P = ParamSpec("P")
R = TypeVar("R")

EXIT_CODES_HELP = (
    "Exit codes: 0 ok, 2 bad input, 3 lease lost or conflict, 4 not found, 5 database unreachable or schema missing."
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


def fail(message: str, code: int) -> NoReturn:
    """Print one line on stderr and exit with the code."""
    from clawnsole.db.connect import redact

    typer.echo(f"clawnsole: error: {redact(message)}", err=True)
    raise typer.Exit(code)


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn Clawnsole's errors into one line on stderr and the documented exit code."""

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from clawnsole.errors import ClawnsoleError

        try:
            return command(*args, **kwargs)
        except ClawnsoleError as error:
            fail(str(error), error.exit_code)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None

    return wrapper


def settings(database_url: str | None, schema: str | None) -> Settings:
    """Settings from the environment, overridden by the command's options."""
    from pydantic import ValidationError

    from clawnsole.config import Settings
    from clawnsole.errors import InvalidInput

    overrides: dict[str, Any] = {}
    if database_url:
        overrides["database_url"] = database_url
    if schema:
        overrides["schema_name"] = schema
    try:
        base = Settings()
        return base.model_validate(base.model_dump() | overrides) if overrides else base
    except ValidationError as error:
        first = error.errors()[0]
        field = (
            {"schema_name": "schema"}.get(str(first["loc"][0]), str(first["loc"][0])) if first["loc"] else "settings"
        )
        raise InvalidInput(field, first["msg"]) from None


def database_url(config: Settings) -> str:
    """The configured URL, or the embedded server's (started on demand, announced once on stderr)."""
    if config.database_url:
        return config.database_url
    from clawnsole.embedded import default_database_url

    return default_database_url(announce=True)


def resolve(url: str | None, schema: str | None) -> tuple[str, str]:
    """The connection string and schema a command works on."""
    config = settings(url, schema)
    return database_url(config), config.schema_name


@contextmanager
def open_queue(url: str | None, schema: str | None, agent: str | None = None) -> Iterator[WorkQueue]:
    """A WorkQueue on one connection: a command runs a few statements and exits, so no pool."""
    from clawnsole.db.connect import connect
    from clawnsole.queue import WorkQueue

    conninfo, schema_name = resolve(url, schema)
    with connect(conninfo) as conn:
        yield WorkQueue(conn, schema=schema_name, agent=agent).open()


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
        raise InvalidInput(field, f"is larger than {limit // 1024} KiB")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise InvalidInput(field, "is not UTF-8 text") from None


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
