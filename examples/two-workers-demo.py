#!/usr/bin/env python3
"""Two workers, one queue: a runnable demo of claiming, fencing and finishing.

It seeds a fresh `demo-two-workers-<timestamp>` queue with three items, starts two worker processes
(`clawnsole workqueue worker-pass`, real OS processes), checks that they claimed different items while
both held a lease at the same time, that one item ended done and one failed, and prints the queue's
final state. It exits 1 if any check fails.

    python examples/two-workers-demo.py

The database is found the way the `clawnsole` command finds it: $CLAWNSOLE_DATABASE_URL (or
$DATABASE_URL), else the embedded PostgreSQL, started on demand. The schema is migrated first, so a fresh
database works. The same file is the workers' `--exec` handler (`--handle`).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime

from clawnsole import WorkQueue
from clawnsole.cli.common import resolve
from clawnsole.db.connect import connect
from clawnsole.db.migrate import migrate
from clawnsole.errors import ClawnsoleError

WORKERS = ("demo-worker-1", "demo-worker-2")
# How long a handler waits for the other worker to hold its item too.
TOGETHER_TIMEOUT = 30.0


def handle() -> int:
    """The `--exec` handler: wait until both workers hold an item, then succeed or fail as told."""
    item = json.load(sys.stdin)
    conninfo, schema = os.environ["CLAWNSOLE_DATABASE_URL"], os.environ["CLAWNSOLE_SCHEMA"]
    with connect(conninfo, autocommit=True) as conn:
        queue = WorkQueue(conn, schema=schema).open()
        deadline = time.monotonic() + TOGETHER_TIMEOUT
        # Our item is held while we wait, so once the other item has been claimed too, both were held at once.
        while sum(i.attempts > 0 for i in queue.list(item["queue"])) < 2:
            if time.monotonic() > deadline:
                print("the other worker never held an item at the same time", file=sys.stderr)
                return 2
            time.sleep(0.05)
    if item["payload"]["outcome"] == "fail":
        print(f"{item['title']}: failing on purpose, as seeded", file=sys.stderr)
        return 3
    print(json.dumps({"handled_by": os.environ["CLAWNSOLE_AGENT"], "item": item["id"]}))
    return 0


def main() -> int:
    conninfo, schema = resolve(None, None)
    migrate(conninfo, schema)
    queue_name = f"demo-two-workers-{datetime.now(UTC):%Y%m%dT%H%M%S%f}"
    with WorkQueue(conninfo, schema=schema, agent="two-workers-demo") as queue:
        # Priorities decide who gets what: the two highest are claimed, the third stays pending.
        succeeds = queue.enqueue(queue_name, "Succeeds", priority=60, payload={"outcome": "done"}).item
        fails = queue.enqueue(queue_name, "Fails", priority=50, payload={"outcome": "fail"}, max_attempts=1).item
        waits = queue.enqueue(queue_name, "Waits its turn", priority=40, payload={"outcome": "done"}).item
        print(f"seeded {queue_name}: items {succeeds.id}, {fails.id}, {waits.id}")

        handler = f"{shlex.quote(sys.executable)} {shlex.quote(os.path.abspath(__file__))} --handle"
        env = os.environ | {"CLAWNSOLE_DATABASE_URL": conninfo, "CLAWNSOLE_SCHEMA": schema}
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "clawnsole",
                    "workqueue",
                    "worker-pass",
                    "--queue",
                    queue_name,
                    "--agent",
                    agent,
                    "--max-items",
                    "1",
                    "--exec",
                    handler,
                    "--timeout",
                    "120",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for agent in WORKERS
        ]
        print(f"started two worker processes: pids {', '.join(str(w.pid) for w in workers)}")
        outputs = [w.communicate(timeout=180) for w in workers]
        for agent, worker, (_, stderr) in zip(WORKERS, workers, outputs, strict=True):
            print(f"\n{agent} exited {worker.returncode}; its log:")
            print("\n".join(f"  {line}" for line in stderr.strip().splitlines()))

        final = {item.id: item for item in queue.list(queue_name)}
        a, b, c = final[succeeds.id], final[fails.id], final[waits.id]
        holders = {i: [e.agent for e in queue.history(i) if e.event == "claimed"] for i in (a.id, b.id)}
        seeded_failure = "exit status 3: Fails: failing on purpose, as seeded"
        checks = [
            ("both workers exited 0", all(w.returncode == 0 for w in workers)),
            (
                "they claimed different items",
                len(holders[a.id]) == len(holders[b.id]) == 1 and {*holders[a.id], *holders[b.id]} == set(WORKERS),
            ),
            # Each handler waits (holding its item) until the other item is claimed: had the two not held
            # their items at the same time, the waiting one would have failed with a different error.
            ("each held its item while the other held one", a.status == "done" and b.last_error == seeded_failure),
            (f"item {a.id} is done", a.status == "done"),
            (f"item {b.id} is failed", b.status == "failed"),
            (f"item {c.id} is still pending", c.status == "pending" and c.attempts == 0),
        ]

    print(f"\nfinal state of {queue_name}:")
    print(f"  {'ID':<8}{'TITLE':<16}{'STATUS':<10}{'WORKER':<16}{'ATTEMPTS':<10}RESULT / ERROR")
    for item in sorted(final.values(), key=lambda i: i.id):
        outcome = json.dumps(item.result) if item.result is not None else (item.last_error or "")
        worker = ",".join(holders.get(item.id, []))
        print(f"  {item.id:<8}{item.title:<16}{item.status:<10}{worker:<16}{item.attempts:<10}{outcome}")
    print()
    for label, passed in checks:
        print(f"  {'ok  ' if passed else 'FAIL'} {label}")
    failed = [label for label, passed in checks if not passed]
    print("\ndemo passed" if not failed else f"\ndemo FAILED: {'; '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--handle"]:
        sys.exit(handle())
    try:
        sys.exit(main())
    except ClawnsoleError as error:  # no database, a schema it cannot migrate, …: one line, not a traceback
        print(f"demo: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
