"""Real worker processes for the reliability scenarios, the load they drain, and the judgement of a run from
the database's event history (never from the workers' own logs, which a killed process cannot finish).

- `Fleet` starts `clawnsole workqueue worker-loop` processes (`--log-format json`, the payload-driven
  handler in tests/reliability/handlers.py), kills and restarts them. Every incarnation of a worker slot
  gets its own agent (`w1.0`, `w1.1`, ...), so the history tells which process held an item and whether it
  was killed.
- `enqueue_load` bulk-enqueues items whose payload says how long they sleep, whether they burn CPU and
  whether they report progress.
- `wait_finished` waits, with a deadline, until every item of a queue is done, failed or cancelled.
- `analyse` reads the history: lost, duplicated (more than one `done`), re-runs (claimed more than once,
  each with its reason), overlapping holders (a second claim with no expiry/release/failure in between).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from clawnsole import NewItem, WorkQueue
from tests.conftest import SCHEMA, Cli
from tests.worker.helpers import wait_for

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
HANDLER = "tests.reliability.handlers:run"
QUEUE = "load"
FINISHED = ("done", "failed", "cancelled")

# The events that end a holder's lease: after one of them another claim of the item is legitimate.
LEASE_ENDS = ("lease_expired", "released", "failed", "retry_scheduled", "done", "cancelled", "requeued")


def connect(db_url: str) -> psycopg.Connection[tuple[Any, ...]]:
    """An autocommit connection of the test's own (not a worker's: its application_name says so)."""
    return psycopg.connect(db_url, autocommit=True, application_name="clawnsole-reliability-test")


# --- worker processes -------------------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """One incarnation of a worker slot: a `worker-loop` process, its JSON event log in a file."""

    slot: str
    agent: str
    process: subprocess.Popen[bytes]
    log: Path
    killed: bool = False

    def records(self) -> list[dict[str, Any]]:
        """The worker's event log so far (a line cut short by a kill is skipped)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def named(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [r for r in self.records() if r.get("event") == event and all(r.get(k) == v for k, v in fields.items())]

    def wait_event(self, event: str, timeout: float = 30.0, **fields: Any) -> dict[str, Any]:
        """The first `event` record with these fields; fails at once if the worker exits without it."""

        def found() -> list[dict[str, Any]]:
            seen = self.named(event, **fields)
            if not seen and self.process.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise AssertionError(f"worker {self.agent} exited ({self.process.returncode}) before {event}: {tail}")
            return seen

        return wait_for(found, timeout, f"{event} {fields} from {self.agent}")[0]

    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """kill -9, and reap it."""
        self.killed = True
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM (a graceful drain) and its exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


@dataclass
class Fleet:
    """Worker processes on one test database, started, killed and restarted by slot.

    Use as a context manager: whatever is still running at the end is killed.
    """

    db_url: str
    log_dir: Path
    queues: Sequence[str] = (QUEUE,)
    handler: str = HANDLER
    concurrency: int = 16
    lease: str = "2"
    poll: str = "1"
    grace: str = "5"
    extra_args: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    incarnations: list[WorkerProcess] = field(default_factory=list)
    current: dict[str, WorkerProcess] = field(default_factory=dict)

    def start(self, slot: str, *, ready: bool = True) -> WorkerProcess:
        """Start the next incarnation of `slot`; by default wait until it reports ready."""
        number = sum(1 for w in self.incarnations if w.slot == slot)
        agent = f"{slot}.{number}"
        log = self.log_dir / f"worker-{agent}.log"
        args = [
            sys.executable,
            "-m",
            "clawnsole",
            "workqueue",
            "worker-loop",
            *[a for q in self.queues for a in ("--queue", q)],
            "--agent",
            agent,
            "--handler",
            self.handler,
            "--concurrency",
            str(self.concurrency),
            "--lease",
            self.lease,
            "--poll",
            self.poll,
            "--grace",
            self.grace,
            "--log-format",
            "json",
            *self.extra_args,
        ]
        with open(log, "wb") as stderr:
            process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=self._env(), cwd=ROOT
            )
        worker = WorkerProcess(slot, agent, process, log)
        self.incarnations.append(worker)
        self.current[slot] = worker
        if ready:
            worker.wait_event("ready")
        return worker

    def start_many(self, count: int, prefix: str = "w") -> list[WorkerProcess]:
        """Start `count` slots at once (they boot in parallel), then wait until all are ready."""
        started = [self.start(f"{prefix}{i}", ready=False) for i in range(1, count + 1)]
        for worker in started:
            worker.wait_event("ready")
        return started

    def restart(self, slot: str, *, ready: bool = False) -> WorkerProcess:
        """kill -9 the slot's current incarnation and start the next one."""
        self.current[slot].kill()
        return self.start(slot, ready=ready)

    def alive(self) -> list[WorkerProcess]:
        return [w for w in self.current.values() if w.alive()]

    def assert_running(self) -> None:
        """Fail at once when a worker the test did not kill has exited (rather than at the drain's deadline)."""
        for worker in self.current.values():
            if not worker.killed and not worker.alive():
                tail = worker.log.read_text(errors="replace")[-2000:]
                raise AssertionError(f"worker {worker.agent} exited ({worker.process.returncode}): {tail}")

    def story(self, item_id: int) -> list[str]:
        """Every worker log record about one item, for a failure message (a test's tmp dir does not last)."""
        lines = []
        for worker in self.incarnations:
            for record in worker.records():
                if record.get("id") == item_id or str(item_id) in str(record.get("ids", "")).split(","):
                    lines.append(json.dumps(record))
        return sorted(lines)

    @property
    def killed_agents(self) -> frozenset[str]:
        return frozenset(w.agent for w in self.incarnations if w.killed)

    def stop(self, timeout: float = 30.0) -> dict[str, int]:
        """SIGTERM every running worker at once, then their exit codes by agent."""
        running = self.alive()
        # A worker still importing (restarted a moment ago) has no SIGTERM handler yet and would die of the
        # signal. It logs `starting` once the handler is in place (before connecting: one waiting for the
        # database counts), so wait for that, and an exit code other than 0 means a drain went wrong.
        for worker in running:
            worker.wait_event("starting", timeout)
        for worker in running:
            worker.process.send_signal(signal.SIGTERM)
        return {w.agent: w.process.wait(timeout) for w in running}

    def close(self) -> None:
        for worker in self.incarnations:
            if worker.alive():
                worker.process.kill()
                worker.process.wait(30)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _env(self) -> dict[str, str]:
        # The test's database and nothing else from the caller's CLAWNSOLE_* settings; the repository on the
        # path so the handler module imports.
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
        return Cli(self.db_url).env(PYTHONPATH=path, **self.env)


# --- load -------------------------------------------------------------------------------------------------


def enqueue_load(
    wq: WorkQueue,
    count: int,
    *,
    queue: str = QUEUE,
    seed: int = 0,
    sleep_ms: tuple[int, int] = (0, 30),
    cpu_share: float = 0.1,
    cpu_loops: int = 20_000,
    progress_share: float = 0.1,
    max_attempts: int = 3,
    batch: int = 1000,
) -> list[int]:
    """Enqueue `count` items in batches; each payload draws a sleep, and CPU work or progress for some."""
    rng = random.Random(seed)
    ids: list[int] = []
    for start in range(0, count, batch):
        items = [
            NewItem(
                queue=queue,
                title=f"load {n}",
                payload={
                    "n": n,
                    "sleep_ms": rng.randint(*sleep_ms),
                    "cpu_loops": cpu_loops if rng.random() < cpu_share else 0,
                    "progress": rng.random() < progress_share,
                },
                max_attempts=max_attempts,
            )
            for n in range(start, min(start + batch, count))
        ]
        ids.extend(wq.enqueue_many(items))
    return ids


def status_counts(db_url: str, queue: str = QUEUE) -> dict[str, int]:
    with connect(db_url) as conn:
        rows = conn.execute(
            f"SELECT status, count(*) FROM {SCHEMA}.items WHERE queue = %s GROUP BY status", [queue]
        ).fetchall()
    return {status: int(n) for status, n in rows}


def wait_finished(
    db_url: str, expected: int, timeout: float, queue: str = QUEUE, while_waiting: Callable[[], None] | None = None
) -> float:
    """Wait until `expected` items of the queue are finished; the seconds it took.

    `while_waiting` runs between polls (fault injection rides on it). On timeout the status counts are in
    the message, so a stuck run says where its items are.
    """
    began = time.monotonic()
    deadline = began + timeout
    with connect(db_url) as conn:
        while True:
            (finished,) = conn.execute(
                f"SELECT count(*) FROM {SCHEMA}.items WHERE queue = %s AND status = ANY(%s)", [queue, list(FINISHED)]
            ).fetchone() or (0,)
            if finished >= expected:
                return time.monotonic() - began
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{finished} of {expected} items finished after {timeout}s: {status_counts(db_url, queue)}"
                )
            if while_waiting is not None:
                while_waiting()
            time.sleep(0.1)


# --- judgement --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rerun:
    """A claim of an item after its first, and why the history says the item went back to the queue."""

    item_id: int
    previous: str | None
    agent: str | None
    reason: str


@dataclass(frozen=True)
class Overlap:
    """Two claims of one item with nothing between them ending the first holder's lease."""

    item_id: int
    first: str | None
    second: str | None


@dataclass
class Analysis:
    """What the history of a queue's items says about a run."""

    items: int
    statuses: Counter[str]
    claims: Counter[int]
    dones: Counter[int]
    lost: list[int]
    reruns: list[Rerun]
    overlaps: list[Overlap]
    # A `done` written by someone other than the item's current holder: the fencing failed.
    foreign_dones: list[tuple[int, str | None, str | None]]

    @property
    def duplicated(self) -> list[int]:
        """Items with more than one `done` event."""
        return sorted(i for i, n in self.dones.items() if n > 1)

    @property
    def rerun_items(self) -> list[int]:
        """Items claimed more than once."""
        return sorted(i for i, n in self.claims.items() if n > 1)

    @property
    def never_claimed(self) -> int:
        return self.items - len(self.claims)

    def reasons(self) -> Counter[str]:
        """How many re-runs had each reason."""
        return Counter(r.reason for r in self.reruns)

    def describe(self) -> str:
        """One line for a report note or an assertion message."""
        reasons = ", ".join(f"{n} {reason}" for reason, n in self.reasons().most_common()) or "none"
        return (
            f"statuses {dict(self.statuses)}; re-run items {len(self.rerun_items)} (reasons: {reasons}); "
            f"overlapping holders {len(self.overlaps)}; foreign done {len(self.foreign_dones)}"
        )


def analyse(db_url: str, queue: str = QUEUE, killed: frozenset[str] = frozenset()) -> Analysis:
    """Judge a run from the history of the queue's items; `killed` names the agents that were kill -9ed."""
    with connect(db_url) as conn:
        statuses = dict(conn.execute(f"SELECT id, status FROM {SCHEMA}.items WHERE queue = %s", [queue]).fetchall())
        events = conn.execute(
            f"""SELECT e.item_id, e.event, e.agent, e.detail FROM {SCHEMA}.item_events e
                 WHERE e.item_id IN (SELECT id FROM {SCHEMA}.items WHERE queue = %s)
                   AND e.event NOT IN ('enqueued', 'progress')
                 ORDER BY e.item_id, e.id""",
            [queue],
        ).fetchall()
    claims: Counter[int] = Counter()
    dones: Counter[int] = Counter()
    reruns: list[Rerun] = []
    overlaps: list[Overlap] = []
    foreign: list[tuple[int, str | None, str | None]] = []
    current: int | None = None
    holder: str | None = None  # the agent holding the item now (None: nobody)
    last_holder: str | None = None  # the agent of the item's latest claim
    ended: str | None = None  # why the latest holder's lease ended
    for item_id, event, agent, detail in events:
        if item_id != current:
            current, holder, last_holder, ended = item_id, None, None, None
        if event == "claimed":
            claims[item_id] += 1
            if holder is not None:
                overlaps.append(Overlap(item_id, holder, agent))
                ended = "claimed again while held (overlapping holders)"
            if claims[item_id] > 1:
                reruns.append(Rerun(item_id, last_holder, agent, ended or "unexplained"))
            holder = last_holder = agent
            ended = None
            continue
        if event == "done":
            dones[item_id] += 1
            if agent != holder:
                foreign.append((item_id, holder, agent))
        if event in LEASE_ENDS:
            ended = _reason(event, detail or {}, last_holder, killed)
            holder = None
    lost = sorted(i for i, s in statuses.items() if s not in FINISHED)
    return Analysis(len(statuses), Counter(statuses.values()), claims, dones, lost, reruns, overlaps, foreign)


def _reason(event: str, detail: dict[str, Any], holder: str | None, killed: frozenset[str]) -> str:
    if event == "lease_expired":
        return "lease expired after its holder was killed" if holder in killed else "lease expired, holder alive"
    if event == "released":
        return f"released ({detail.get('reason', 'no reason')})"
    if event == "retry_scheduled":
        return f"failed and retried ({detail.get('error', '?')})"
    return event


# --- database-side faults and measures --------------------------------------------------------------------


def terminate_worker_backends(db_url: str, *, one: bool = True, rng: random.Random | None = None) -> int:
    """pg_terminate_backend on worker connections of this database (one at random, or all); how many."""
    with connect(db_url) as conn:
        pids = [
            pid
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'clawnsole-worker:%' AND pid <> pg_backend_pid()"
            ).fetchall()
        ]
        if one and pids:
            pids = [(rng or random).choice(pids)]
        killed = 0
        for pid in pids:
            (ok,) = conn.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() or (False,)
            killed += bool(ok)
    return killed


def worker_backends(db_url: str) -> int:
    """How many worker connections this database has now."""
    with connect(db_url) as conn:
        (n,) = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND application_name LIKE 'clawnsole-worker:%'"
        ).fetchone() or (0,)
    return int(n)


class HeldSnapshot:
    """A REPEATABLE READ transaction that has taken its snapshot and stays open until `release()`: VACUUM
    must keep every row version it could still see, as with a forgotten report query or an
    idle-in-transaction client."""

    def __init__(self, db_url: str) -> None:
        self._conn = psycopg.connect(db_url, application_name="clawnsole-reliability-snapshot")
        self._conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        self._conn.execute(f"SELECT 1 FROM {SCHEMA}.items LIMIT 1")
        self.taken = time.monotonic()
        self.held: float | None = None  # seconds it was held, once released

    @property
    def released(self) -> bool:
        return self.held is not None

    def release(self) -> None:
        """End the transaction (idempotent)."""
        if self.held is None:
            self.held = time.monotonic() - self.taken
            self._conn.rollback()
            self._conn.close()


def listening_agents(db_url: str) -> set[str]:
    """The agents whose LISTEN connection to this database is open now (its last statement was LISTEN)."""
    with connect(db_url) as conn:
        rows = conn.execute(
            "SELECT DISTINCT substr(application_name, length('clawnsole-worker:') + 1) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE 'clawnsole-worker:%' "
            "AND query LIKE 'LISTEN %'"
        ).fetchall()
    return {agent for (agent,) in rows}


@contextmanager
def held_snapshot(db_url: str) -> Iterator[HeldSnapshot]:
    """A `HeldSnapshot`, released at the end of the block at the latest."""
    snapshot = HeldSnapshot(db_url)
    try:
        yield snapshot
    finally:
        snapshot.release()


def dead_tuples(db_url: str) -> dict[str, int]:
    """n_dead_tup of the queue's tables (as the statistics last reported them)."""
    with connect(db_url) as conn:
        rows = conn.execute(
            "SELECT relname, n_dead_tup FROM pg_stat_user_tables WHERE schemaname = %s "
            "AND relname IN ('items', 'item_events')",
            [SCHEMA],
        ).fetchall()
    return {name: int(n) for name, n in rows}
