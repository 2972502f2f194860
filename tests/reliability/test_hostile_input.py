"""Hostile input through the command line and the library: every bad value is refused in one line naming its
field, with the documented exit code (2 bad input, 4 not found), and nothing is written; SQL is just text.

The command line cases run `python -m clawnsole` as real subprocesses (about 0.4 s each), against one
database shared by this module: each case compares the row counts of items, item_events and schedules
before and after itself, so sharing the database costs no isolation and saves a clone per case.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from clawnsole import AsyncWorkQueue, NewItem, WorkQueue
from clawnsole.errors import InvalidInput, NotFound
from clawnsole.schedules.api import Schedules
from clawnsole.schedules.models import ScheduleDef
from tests.conftest import Cli

SCHEMA = "clawnsole"
MIB = 1024 * 1024
COUNTS = sql.SQL(
    "SELECT (SELECT count(*) FROM {s}.items), (SELECT count(*) FROM {s}.item_events),"
    " (SELECT count(*) FROM {s}.schedules)"
).format(s=sql.Identifier(SCHEMA))

# SQL that would do damage if it were ever spliced into a statement, and psycopg's own placeholder syntax.
SQL_TEXTS = [
    "'; DROP TABLE clawnsole.items; --",
    "Robert'); DELETE FROM clawnsole.item_events; --",
    "$$; SELECT pg_sleep(30); $$",
    "%(id)s %s %% {schema} {} $1",
    "\\'; COPY clawnsole.items TO PROGRAM 'id'; --",
    "1 OR 1=1; UPDATE clawnsole.items SET status = 'done'",
    "E'\\x00' and \\u0000 are six characters here, not a NUL",
]
# Queue and kind names allow only letters, digits and . _ - :, which still spell SQL-looking text.
SQL_NAMES = ["clawnsole.items--", "x:OR:1--", "pg_catalog.pg_sleep", "1-1", "--", "DROP.TABLE"]


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str
    seconds: float


@dataclass(frozen=True)
class Shared:
    """The module's database: an item held under a known lease, and one schedule."""

    url: str
    held_id: int
    held_token: str
    cli: Cli


@pytest.fixture(scope="module")
def shared(server_url: str, template_db: str) -> Iterator[Shared]:
    name = f"clawnsole_hostile_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(template_db))
        )
    url = psycopg.conninfo.make_conninfo(server_url, dbname=name)
    try:
        with WorkQueue(url, schema=SCHEMA, agent="hostile-seed") as wq:
            wq.enqueue("held", "an item held for the whole module")
            (held,) = wq.claim_next("held", lease=3600)
            Schedules(wq).add("seed-schedule", queue="seed", title="seed", every="1d")
        yield Shared(url, held.id, str(held.lease_token), Cli(url))
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def queue(shared: Shared) -> Iterator[WorkQueue]:
    with WorkQueue(shared.url, schema=SCHEMA, agent="hostile-tests") as wq:
        yield wq


def counts(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(COUNTS).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def run(shared: Shared, args: list[str | bytes], stdin: bytes | None = None, **env: str) -> Run:
    """`python -m clawnsole ARGS` with raw bytes allowed in argv and on stdin (the conftest runner takes text)."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "clawnsole", *args],
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=60,
        env=shared.cli.env(**env),
    )
    return Run(
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
        time.monotonic() - started,
    )


def assert_refused(result: Run, code: int, names: str) -> None:
    """One line on stderr, `clawnsole: error: …` naming the field (or the id), the exit code, no stdout."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    assert lines[0].startswith("clawnsole: error: "), lines[0]
    assert names in lines[0], f"{names!r} not named in: {lines[0]}"
    assert result.code == code, f"exit {result.code}, expected {code}: {lines[0]}"
    assert result.stdout == ""


def nested(levels: int) -> str:
    """A JSON object whose value is nested `levels` arrays deep."""
    return '{"deep": ' + "[" * levels + "]" * levels + "}"


def yaml_schedule(extra: str, name: str = "hostile") -> bytes:
    return f"schedules:\n  - name: {name}\n    queue: q\n    title: t\n    every: 1h\n{extra}".encode()


def yaml_alias_bomb() -> bytes:
    """Ten levels of ten aliases each: 10^10 strings if expanded, a few hundred bytes as written."""
    levels = ["      l0: &l0 [" + ", ".join(['"' + "x" * 16 + '"'] * 10) + "]"]
    for level in range(1, 10):
        levels.append(f"      l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * 10) + "]")
    return yaml_schedule("    input:\n" + "\n".join(levels) + "\n", name="bomb")


# --- the command line --------------------------------------------------------------------------------------

ENQUEUE = ["workqueue", "enqueue", "--queue", "hostile", "--title", "t"]
ADD = ["schedule", "add", "hostile-schedule", "--queue", "hostile", "--title", "t"]
UNKNOWN = "424242"
# Placeholders filled in per run: the held item's id and its lease token.
HELD = ["--id", "{held}", "--lease", "{token}"]

# (args, stdin, exit code, what the error line names)
CLI_CASES: dict[str, tuple[list[str | bytes], bytes | None, int, str]] = {
    # NUL: PostgreSQL text and jsonb cannot store it. argv cannot carry it, so it comes in files and JSON.
    "nul in instructions from stdin": ([*ENQUEUE, "--instructions-file", "-"], b"step 1\x00step 2", 2, "instructions:"),
    "nul in a payload string": ([*ENQUEUE, "--payload", '{"a": "x\\u0000y"}'], None, 2, "payload:"),
    "nul in a payload from stdin": ([*ENQUEUE, "--payload-file", "-"], b'{"a": "\\u0000"}', 2, "payload:"),
    "nul in a result string": (["workqueue", "done", *HELD, "--result", '{"r": "\\u0000"}'], None, 2, "result:"),
    "nul in schedule instructions": (
        [*ADD, "--every", "1h", "--instructions-file", "-"],
        b"a\x00b",
        2,
        "instructions:",
    ),
    "nul in a schedule file title": (
        ["schedule", "import", "-"],
        b'schedules:\n  - {name: n, queue: q, title: "a\\0b", every: 1h}\n',
        2,
        "title:",
    ),
    # Bytes that are not UTF-8, on stdin and in argv (Python turns the latter into lone surrogates).
    "invalid utf-8 instructions on stdin": ([*ENQUEUE, "--instructions-file", "-"], b"\xff\xfe", 2, "instructions:"),
    "invalid utf-8 payload on stdin": ([*ENQUEUE, "--payload-file", "-"], b"\xff\xfe", 2, "payload:"),
    "invalid utf-8 schedule file on stdin": (["schedule", "import", "-"], b"\xff\xfe", 2, "file:"),
    "latin-1 title in argv": (["workqueue", "enqueue", "--queue", "q", "--title", b"caf\xe9"], None, 2, "title:"),
    "invalid utf-8 dedupe key in argv": ([*ENQUEUE, "--dedupe-key", b"k\xff"], None, 2, "dedupe_key:"),
    "invalid utf-8 schedule name in argv": (["schedule", "show", b"n\xff"], None, 2, "name:"),
    "invalid utf-8 cancel reason in argv": (["workqueue", "cancel", UNKNOWN, "--reason", b"\xff"], None, 2, "reason:"),
    "lone surrogate escape in a payload": ([*ENQUEUE, "--payload", '{"a": "\\ud800"}'], None, 2, "payload:"),
    # Size: the limit is 1 MiB; refused without reading (or storing) the rest.
    "10 MiB payload on stdin": (
        [*ENQUEUE, "--payload-file", "-"],
        b'{"a": "' + b"x" * (10 * MIB) + b'"}',
        2,
        "payload:",
    ),
    "10 MiB instructions on stdin": ([*ENQUEUE, "--instructions-file", "-"], b"x" * (10 * MIB), 2, "instructions:"),
    # Nesting: past Python's recursion limit, and past the explicit 64 levels but short of that limit.
    "payload nested 5000 levels": ([*ENQUEUE, "--payload", nested(5000)], None, 2, "payload:"),
    "payload nested 100 levels": ([*ENQUEUE, "--payload", nested(100)], None, 2, "payload:"),
    "result nested 5000 levels": (
        ["workqueue", "done", *HELD, "--result", "[" * 5000 + "]" * 5000],
        None,
        2,
        "result:",
    ),
    "schedule file input nested 1000 levels": (
        ["schedule", "import", "-"],
        yaml_schedule("    input: {a: " + "[" * 1000 + "]" * 1000 + "}\n"),
        2,
        "<stdin>",
    ),
    "schedule file alias bomb": (["schedule", "import", "-"], yaml_alias_bomb(), 2, "input:"),
    # Numbers out of range, negative, not finite.
    "priority 10**20": ([*ENQUEUE, "--priority", str(10**20)], None, 2, "priority:"),
    "max attempts -1": ([*ENQUEUE, "--max-attempts", "-1"], None, 2, "max_attempts:"),
    "lease -5": ([*ENQUEUE, "--lease", "-5"], None, 2, "lease:"),
    "backoff nan": ([*ENQUEUE, "--backoff", "nan"], None, 2, "backoff:"),
    "NaN in a payload": ([*ENQUEUE, "--payload", '{"a": NaN}'], None, 2, "payload:"),
    "percent 101": (["workqueue", "progress", *HELD, "--percent", "101"], None, 2, "percent:"),
    "extend -5": (["workqueue", "progress", *HELD, "--extend", "-5"], None, 2, "extend:"),
    "claim limit 0": (["workqueue", "claim-next", "--queue", "hostile", "--limit", "0"], None, 2, "limit:"),
    "list limit 0": (["workqueue", "list", "--limit", "0"], None, 2, "limit:"),
    "id 10**20": (["workqueue", "show", "--id", "99999999999999999999"], None, 2, "id:"),
    "id -1": (["workqueue", "show", "--id", "-1"], None, 2, "id:"),
    "id 0 to cancel": (["workqueue", "cancel", "--id", "0"], None, 2, "id:"),
    # Unknown ids and names: not found.
    "unknown id to show": (["workqueue", "show", UNKNOWN], None, 4, UNKNOWN),
    "unknown id to cancel": (["workqueue", "cancel", UNKNOWN], None, 4, UNKNOWN),
    "unknown id to finish": (
        ["workqueue", "done", "--id", UNKNOWN, "--lease", str(uuid.UUID(int=1))],
        None,
        4,
        UNKNOWN,
    ),
    "unknown schedule": (["schedule", "pause", "no-such-schedule"], None, 4, "no-such-schedule"),
    # Times, crons and time zones.
    "run-at 2026-13-45": ([*ENQUEUE, "--run-at", "2026-13-45"], None, 2, "run_at:"),
    "run-at without an offset": ([*ENQUEUE, "--run-at", "2026-11-21T09:00:00"], None, 2, "run_at:"),
    "cron minute 61": ([*ADD, "--cron", "61 * * * *"], None, 2, "cron:"),
    "cron of three fields": ([*ADD, "--cron", "* * *"], None, 2, "cron:"),
    "time zone on Mars": ([*ADD, "--cron", "0 * * * *", "--timezone", "Mars/Olympus"], None, 2, "timezone:"),
    # Names: spaces, length, and a trailing newline (which `$` in a regex lets through).
    "queue name with a space": (["workqueue", "enqueue", "--queue", "dev team", "--title", "t"], None, 2, "queue:"),
    "queue name of 129 characters": (["workqueue", "enqueue", "--queue", "q" * 129, "--title", "t"], None, 2, "queue:"),
    "queue name with a trailing newline": (
        ["workqueue", "enqueue", "--queue", "dev-team\n", "--title", "t"],
        None,
        2,
        "queue:",
    ),
    "kind with a trailing newline": ([*ENQUEUE, "--kind", "health-check\n"], None, 2, "kind:"),
    "schedule name with a trailing newline": (
        ["schedule", "add", "nightly\n", "--queue", "q", "--title", "t", "--every", "1h"],
        None,
        2,
        "name:",
    ),
    # Schema names: at most 40 characters, lower case, never public.
    "schema of 41 characters": (["workqueue", "list", "--schema", "s" * 41], None, 2, "schema:"),
    "upper-case schema": (["workqueue", "list", "--schema", "Clawnsole"], None, 2, "schema:"),
    "schema public": (["workqueue", "list", "--schema", "public"], None, 2, "schema:"),
    "schema with a trailing newline": (["workqueue", "list", "--schema", "clawnsole\n"], None, 2, "schema:"),
}


@pytest.mark.parametrize(("args", "stdin", "code", "names"), CLI_CASES.values(), ids=CLI_CASES.keys())
def test_the_command_line_refuses_hostile_input_in_one_line_and_writes_nothing(
    shared: Shared, args: list[str | bytes], stdin: bytes | None, code: int, names: str
) -> None:
    before = counts(shared.url)
    filled = [
        a.replace("{held}", str(shared.held_id)).replace("{token}", shared.held_token) if isinstance(a, str) else a
        for a in args
    ]
    result = run(shared, filled, stdin)
    assert_refused(result, code, names)
    assert counts(shared.url) == before
    # Refusing a value never takes long, whatever its size or depth (10 MiB included).
    assert result.seconds < 15


def test_a_public_schema_in_the_environment_is_refused_naming_the_variable(shared: Shared) -> None:
    before = counts(shared.url)
    assert_refused(run(shared, ["workqueue", "list"], CLAWNSOLE_SCHEMA="public"), 2, "CLAWNSOLE_SCHEMA:")
    assert counts(shared.url) == before


def test_a_10_mib_instructions_file_is_refused_without_reading_it_all(shared: Shared, tmp_path: Path) -> None:
    big = tmp_path / "instructions.txt"
    big.write_bytes(b"x" * (10 * MIB))
    before = counts(shared.url)
    result = run(shared, [*ENQUEUE, "--instructions-file", str(big)])
    assert_refused(result, 2, "instructions:")
    assert counts(shared.url) == before


def test_a_file_name_that_is_not_utf8_is_still_a_file_name(shared: Shared, tmp_path: Path) -> None:
    # Text that is not UTF-8 is refused where it would be stored, not wherever it appears: a path is fine.
    path = tmp_path / os.fsdecode(b"caf\xe9.txt")
    path.write_text("read from a latin-1 file name")
    result = run(shared, [*ENQUEUE, "--instructions-file", os.fsencode(path)])
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout)["instructions"] == "read from a latin-1 file name"


def test_sql_in_every_text_field_survives_the_command_line_round_trip_verbatim(
    shared: Shared, queue: WorkQueue
) -> None:
    text, other = SQL_TEXTS[0], SQL_TEXTS[3]
    # A queue of its own (the library tests below use the bare SQL_NAMES).
    name, kind = f"{SQL_NAMES[0]}cli", SQL_NAMES[1]
    payload = {text: other, "list": SQL_TEXTS}
    enqueued = run(
        shared,
        ["workqueue", "enqueue", "--queue", name, "--kind", kind, "--title", text,
         "--instructions", other, "--dedupe-key", text, "--payload", json.dumps(payload)],
    )  # fmt: skip
    assert enqueued.code == 0, enqueued.stderr
    claimed = run(shared, ["workqueue", "claim-next", "--queue", name, "--agent", "sql-agent"])
    assert claimed.code == 0, claimed.stderr
    item = json.loads(claimed.stdout)
    token = item["lease_token"]
    noted = run(shared, ["workqueue", "progress", "--id", str(item["id"]), "--lease", token, "--note", other])
    assert noted.code == 0, noted.stderr
    finished = run(
        shared, ["workqueue", "done", "--id", str(item["id"]), "--lease", token, "--result", json.dumps({text: text})]
    )
    assert finished.code == 0, finished.stderr
    stored = queue.get(item["id"])
    assert (stored.queue, stored.kind, stored.title) == (name, kind, text)
    assert (stored.instructions, stored.dedupe_key, stored.progress_note) == (other, text, other)
    assert stored.payload == payload
    assert stored.result == {text: text}
    assert stored.status == "done"


# --- the library -------------------------------------------------------------------------------------------


def refused(shared: Shared, field: str, call: Any, *args: Any, **kwargs: Any) -> InvalidInput:
    """Call it, expect InvalidInput naming `field`, and check that nothing was written."""
    before = counts(shared.url)
    with pytest.raises(InvalidInput) as caught:
        call(*args, **kwargs)
    assert caught.value.field == field, f"named {caught.value.field!r}: {caught.value}"
    assert counts(shared.url) == before
    return caught.value


def held_item(queue: WorkQueue, name: str) -> tuple[int, str]:
    """A fresh item of its own queue, claimed: (id, lease token)."""
    queue.enqueue(name, "to be held")
    (item,) = queue.claim_next(name, lease=600)
    return item.id, str(item.lease_token)


def deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def self_containing() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["me"] = value
    return value


ENQUEUE_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "nul in the title": ("title", {"title": "a\x00b"}),
    "lone surrogate in the title": ("title", {"title": "caf\udce9"}),
    "nul in the instructions": ("instructions", {"instructions": "a\x00b"}),
    "lone surrogate in the instructions": ("instructions", {"instructions": "\ud800"}),
    "nul in the kind": ("kind", {"kind": "a\x00b"}),
    "nul in the queue": ("queue", {"queue": "a\x00b"}),
    "nul in the dedupe key": ("dedupe_key", {"dedupe_key": "a\x00b"}),
    "lone surrogate in the dedupe key": ("dedupe_key", {"dedupe_key": "\udcff"}),
    "nul in the enqueuing agent": ("agent", {"agent": "a\x00b"}),
    "nul in a payload string": ("payload", {"payload": {"a": "\x00"}}),
    "nul in a payload key": ("payload", {"payload": {"\x00": 1}}),
    "nul in payload text": ("payload", {"payload": '{"a": "\\u0000"}'}),
    "payload nested 5000 levels": ("payload", {"payload": deep(5000)}),
    "payload nested 65 levels": ("payload", {"payload": deep(65)}),
    "payload that contains itself": ("payload", {"payload": self_containing()}),
    "payload sharing one big list ten times over": ("payload", {"payload": {"a": [["x" * 1000] * 200] * 10}}),
    "10 MiB payload": ("payload", {"payload": {"a": "x" * (10 * MIB)}}),
    "10 MiB payload text": ("payload", {"payload": '{"a": "' + "x" * (10 * MIB) + '"}'}),
    "NaN in the payload": ("payload", {"payload": {"a": float("nan")}}),
    "a set in the payload": ("payload", {"payload": {"a": {1, 2}}}),
    "10 MiB instructions": ("instructions", {"instructions": "x" * (10 * MIB)}),
    "title that is not text": ("title", {"title": None}),
    "queue that is not text": ("queue", {"queue": 7}),
    "priority 10**20": ("priority", {"priority": 10**20}),
    "fractional priority": ("priority", {"priority": 1.5}),
    "priority True": ("priority", {"priority": True}),
    "max attempts -1": ("max_attempts", {"max_attempts": -1}),
    "max attempts 10**20": ("max_attempts", {"max_attempts": 10**20}),
    "lease -5": ("lease", {"lease": -5}),
    "lease nan": ("lease", {"lease": float("nan")}),
    "lease 10**400": ("lease", {"lease": 10**400}),
    "infinite delay": ("delay", {"delay": float("inf")}),
    "run_at 2026-13-45": ("run_at", {"run_at": "2026-13-45"}),
    "run_at without an offset": ("run_at", {"run_at": datetime(2026, 11, 21, 9)}),
    "run_at as a number": ("run_at", {"run_at": 1_700_000_000}),
    "queue with a trailing newline": ("queue", {"queue": "dev-team\n"}),
    "queue of 129 characters": ("queue", {"queue": "q" * 129}),
}


@pytest.mark.parametrize(("field", "options"), ENQUEUE_CASES.values(), ids=ENQUEUE_CASES.keys())
def test_the_library_refuses_a_hostile_enqueue_naming_the_field(
    shared: Shared, queue: WorkQueue, field: str, options: dict[str, Any]
) -> None:
    arguments = {"queue": "hostile", "title": "t"} | options
    started = time.monotonic()
    refused(shared, field, queue.enqueue, arguments.pop("queue"), arguments.pop("title"), **arguments)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("field", "item"),
    [
        ("items[1].title", NewItem("hostile", "a\x00b")),
        ("items[1].instructions", NewItem("hostile", "t", instructions="a\x00b")),
        ("items[1].instructions", NewItem("hostile", "t", instructions="x" * (2 * MIB))),
        ("items[1].payload", NewItem("hostile", "t", payload={"a": "\x00"})),
        ("items[1].payload", NewItem("hostile", "t", payload=deep(5000))),
    ],
    ids=["nul title", "nul instructions", "2 MiB instructions", "nul payload", "deep payload"],
)
def test_a_batch_enqueue_refuses_the_whole_batch_naming_the_item_and_field(
    shared: Shared, queue: WorkQueue, field: str, item: NewItem
) -> None:
    refused(shared, field, queue.enqueue_many, [NewItem("hostile", "fine"), item])


def test_reports_on_a_held_item_refuse_nul_and_surrogates_naming_the_field(shared: Shared, queue: WorkQueue) -> None:
    item_id, token = held_item(queue, "hostile-reports")
    refused(shared, "note", queue.progress, item_id, lease_token=token, note="a\x00b")
    refused(shared, "note", queue.progress, item_id, lease_token=token, note="\udcff")
    refused(shared, "percent", queue.progress, item_id, lease_token=token, percent=101)
    refused(shared, "percent", queue.progress, item_id, lease_token=token, percent=True)
    refused(shared, "error", queue.fail, item_id, "a\x00b", lease_token=token)
    refused(shared, "error", queue.fail, item_id, "x" * MIB, lease_token=token)
    refused(shared, "result", queue.done, item_id, lease_token=token, result={"r": "\x00"})
    refused(shared, "result", queue.done, item_id, lease_token=token, result="\x00")
    refused(shared, "result", queue.done, item_id, lease_token=token, result=[[[]]] * 2 + [deep(5000)])
    refused(shared, "result", queue.done, item_id, lease_token=token, result=float("inf"))
    # Still held, untouched: every refusal above changed nothing.
    assert queue.get(item_id).status == "claimed"


def test_claims_refuse_a_hostile_agent_limit_or_queue(shared: Shared, queue: WorkQueue) -> None:
    refused(shared, "agent", queue.claim_next, "hostile", agent="a\x00b")
    refused(shared, "limit", queue.claim_next, "hostile", limit=0)
    refused(shared, "limit", queue.claim_next, "hostile", limit=10**20)
    refused(shared, "queue", queue.claim_next, ["hostile", "a b"])
    refused(shared, "lease", queue.claim_next, "hostile", lease="-5")


def test_cancelling_with_a_nul_in_the_reason_is_refused_naming_the_reason(shared: Shared, queue: WorkQueue) -> None:
    pending = queue.enqueue("hostile-cancel", "to be cancelled").item
    refused(shared, "reason", queue.cancel, pending.id, reason="a\x00b")
    assert queue.get(pending.id).status == "pending"


@pytest.mark.parametrize("item_id", [-1, 0, 10**20], ids=["-1", "0", "10**20"])
def test_ids_that_cannot_exist_are_refused_as_bad_input(shared: Shared, queue: WorkQueue, item_id: int) -> None:
    refused(shared, "id", queue.get, item_id)
    refused(shared, "id", queue.cancel, item_id)


def test_an_unknown_id_is_not_found(shared: Shared, queue: WorkQueue) -> None:
    before = counts(shared.url)
    with pytest.raises(NotFound):
        queue.get(424242)
    with pytest.raises(NotFound):
        queue.retry(424242)
    assert counts(shared.url) == before


def test_sixty_four_levels_of_payload_are_accepted_and_stored(shared: Shared, queue: WorkQueue) -> None:
    stored = queue.enqueue("hostile-depth", "as deep as allowed", payload=deep(64)).item
    assert queue.get(stored.id).payload == deep(64)


@pytest.mark.parametrize("text", SQL_TEXTS, ids=range(len(SQL_TEXTS)))
def test_sql_in_every_library_text_field_is_stored_verbatim(queue: WorkQueue, text: str) -> None:
    name = f"hostile-sql-{SQL_TEXTS.index(text)}"
    enqueued = queue.enqueue(
        name, text, instructions=text, dedupe_key=text, payload={text: text, "nested": [text, {text: [text]}]}
    )
    again = queue.enqueue(name, "other", dedupe_key=text)
    assert (again.created, again.item.id) == (False, enqueued.item.id)
    (item,) = queue.claim_next(name, agent=text[:200])
    assert item.claimed_by == text[:200]
    token = str(item.lease_token)
    queue.progress(item.id, lease_token=token, note=text)
    failed = queue.fail(item.id, text, lease_token=token, retry=False)
    assert failed.last_error == text
    stored = queue.get(item.id)
    assert (stored.title, stored.instructions, stored.dedupe_key, stored.progress_note) == (text, text, text, text)
    assert stored.payload == {text: text, "nested": [text, {text: [text]}]}
    assert [e.agent for e in queue.history(item.id) if e.event == "claimed"] == [text[:200]]
    queue.retry(item.id)
    (again_claimed,) = queue.claim_next(name)
    done = queue.done(again_claimed.id, lease_token=str(again_claimed.lease_token), result={text: [text]})
    assert done.result == {text: [text]}


@pytest.mark.parametrize("name", SQL_NAMES)
def test_sql_looking_queue_and_kind_names_are_stored_verbatim(queue: WorkQueue, name: str) -> None:
    item = queue.enqueue(name, "sql-looking names", kind=name).item
    stored = queue.get(item.id)
    assert (stored.queue, stored.kind) == (name, name)
    assert [i.id for i in queue.list(name)] == [item.id]


SCHEDULE_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "cron minute 61": ("cron", {"cron": "61 * * * *"}),
    "cron of three fields": ("cron", {"cron": "* * *"}),
    "time zone on Mars": ("timezone", {"cron": "0 * * * *", "timezone": "Mars/Olympus"}),
    "name with a trailing newline": ("name", {"name": "nightly\n"}),
    "name of 129 characters": ("name", {"name": "n" * 129}),
    "nul in the title": ("title", {"title": "a\x00b"}),
    "nul in the instructions": ("instructions", {"instructions": "a\x00b"}),
    "nul in the description": ("description", {"description": "a\x00b"}),
    "payload nested 5000 levels": ("payload", {"payload": deep(5000)}),
    "interval of -5 seconds": ("every", {"every": -5}),
}


@pytest.mark.parametrize(("field", "options"), SCHEDULE_CASES.values(), ids=SCHEDULE_CASES.keys())
def test_schedules_refuse_hostile_definitions_naming_the_field(
    shared: Shared, queue: WorkQueue, field: str, options: dict[str, Any]
) -> None:
    arguments = {"name": "hostile-schedule", "queue": "hostile", "title": "t", "every": "1h"} | options
    if "cron" in options:
        arguments.pop("every")
    refused(shared, field, Schedules(queue).add, arguments.pop("name"), **arguments)


YAML_CASES: dict[str, tuple[bytes, str]] = {
    "a time zone that is a list": (yaml_schedule("    timezone: [UTC]\n"), "timezone:"),
    "an interval that is a list": (yaml_schedule("")[: -len(b"    every: 1h\n")] + b"    every: [1]\n", "every:"),
    "a key that is a list": (yaml_schedule("    ? [a, b]\n    : 1\n"), "key must be text"),
    "input nested 1000 levels": (yaml_schedule("    input: {a: " + "[" * 1000 + "]" * 1000 + "}\n"), "nested"),
    "an alias bomb in the input": (yaml_alias_bomb(), "1 MiB"),
    "a NUL escape in the title": (b'schedules:\n  - {name: n, queue: q, title: "a\\0b", every: 1h}\n', "title:"),
    "a raw NUL in the file": (yaml_schedule("    description: a\x00b\n"), "not valid YAML"),
}


@pytest.mark.parametrize(("document", "names"), YAML_CASES.values(), ids=YAML_CASES.keys())
def test_a_hostile_schedules_file_is_refused_as_bad_input_quickly(document: bytes, names: str) -> None:
    from clawnsole.schedules.file import parse

    started = time.monotonic()
    with pytest.raises(InvalidInput) as caught:
        parse(document.decode(), "hostile.yaml")
    assert names in str(caught.value)
    assert time.monotonic() - started < 5


def test_a_schedule_definition_with_a_time_zone_that_is_not_text_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        ScheduleDef(name="n", queue="q", title="t", cron="0 * * * *", timezone=["UTC"]).checked()  # type: ignore[arg-type]
    assert caught.value.field == "timezone"


def test_a_schema_of_41_characters_is_refused_before_any_io() -> None:
    # The constructor does no I/O (and port 1 answers nothing): the name is refused before any connection.
    with pytest.raises(InvalidInput) as caught:
        WorkQueue("postgresql://nobody@127.0.0.1:1/nothing", schema="a" * 41)
    assert caught.value.field == "schema"


def test_the_asyncio_queue_refuses_the_same_hostile_input(shared: Shared) -> None:
    async def attempt() -> list[str]:
        fields = []
        cases: list[tuple[str, str, dict[str, Any]]] = [
            ("hostile", "a\x00b", {}),
            ("hostile", "t", {"payload": deep(5000)}),
            ("hostile\n", "t", {}),
        ]
        async with AsyncWorkQueue(shared.url, schema=SCHEMA, agent="hostile-async") as wq:
            for name, title, options in cases:
                try:
                    await wq.enqueue(name, title, **options)
                except InvalidInput as error:
                    fields.append(error.field)
        return fields

    before = counts(shared.url)
    assert asyncio.run(attempt()) == ["title", "payload", "queue"]
    assert counts(shared.url) == before
