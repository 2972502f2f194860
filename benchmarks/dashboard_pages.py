"""Page times of the dashboard on a big queue: loads N items (default 1,000,000) into a database of its own,
serves it with `clawnsole serve`'s app, signs in and reads every page, and prints each page's server time
(the `Server-Timing` header: time to first byte inside the server) beside the 300 ms target.

    python benchmarks/dashboard_pages.py --database-url postgresql://root@127.0.0.1:5432/test
    python benchmarks/dashboard_pages.py --items 100000 --rounds 5        # a quick run

The items are written by SQL in bulk (the library would take minutes for a million): 96 % done over the last
30 days with their history, 2 % pending, 1 % failed, 0.5 % cancelled, 0.3 % waiting, 0.2 % claimed.
The database is kept (`--keep`) or dropped at the end; `--reuse` measures a database loaded earlier.
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import sys
import threading
import time

import httpx
import psycopg
import uvicorn
from psycopg import sql

from clawnsole import feed
from clawnsole.db.migrate import migrate
from clawnsole.queue import WorkQueue
from clawnsole.schedules.api import Schedules
from clawnsole.tokens.api import Tokens
from clawnsole.web.app import create_app

SCHEMA = "clawnsole"
DB = "clawnsole_dashboard_bench"
TARGET_MS = 300.0
QUEUES = 10

LOAD = """
INSERT INTO {schema}.items (queue, kind, title, payload, status, attempts, created_at, updated_at, run_at,
                            claimed_at, finished_at, last_error, result, claimed_by, lease_token,
                            lease_expires_at, waiting_for)
SELECT 'queue-' || (n %% %(queues)s), 'kind-' || (n %% 7), 'Rebuild the index for tenant ' || n,
       jsonb_build_object('tenant', n), s.status,
       CASE WHEN s.status IN ('pending', 'waiting') THEN 0 ELSE 1 END,
       t.at, t.at, t.at,
       CASE WHEN s.status IN ('done', 'failed', 'claimed') THEN t.at + interval '1 second' END,
       CASE WHEN s.status IN ('done', 'failed', 'cancelled') THEN t.at + interval '3 seconds' END,
       CASE WHEN s.status = 'failed' THEN 'exit status ' || (n %% 4 + 1) || ': timeout talking to the index' END,
       CASE WHEN s.status = 'done' THEN '{{"ok": true}}'::jsonb END,
       CASE WHEN s.status = 'claimed' THEN 'worker-' || (n %% 4) END,
       CASE WHEN s.status = 'claimed' THEN gen_random_uuid() END,
       CASE WHEN s.status = 'claimed' THEN now() + interval '5 minutes' END,
       CASE WHEN s.status = 'waiting' THEN 1 ELSE 0 END
  FROM generate_series(1, %(items)s) AS n,
       LATERAL (SELECT CASE WHEN n %% 1000 < 960 THEN 'done' WHEN n %% 1000 < 980 THEN 'pending'
                            WHEN n %% 1000 < 990 THEN 'failed' WHEN n %% 1000 < 995 THEN 'cancelled'
                            WHEN n %% 1000 < 998 THEN 'waiting' ELSE 'claimed' END AS status) s,
       LATERAL (SELECT now() - (%(items)s - n) * (interval '30 days' / %(items)s) AS at) t
"""
EVENTS = """
INSERT INTO {schema}.item_events (item_id, at, event, agent)
SELECT id, created_at, 'enqueued', NULL FROM {schema}.items
UNION ALL
SELECT id, claimed_at, 'claimed', 'worker-' || (id % 4) FROM {schema}.items WHERE claimed_at IS NOT NULL
UNION ALL
SELECT id, finished_at, CASE status WHEN 'done' THEN 'done' WHEN 'failed' THEN 'failed' ELSE 'cancelled' END,
       'worker-' || (id % 4)
  FROM {schema}.items WHERE finished_at IS NOT NULL
 ORDER BY 2
"""


def load(server_url: str, items: int) -> str:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB)))
    url = psycopg.conninfo.make_conninfo(server_url, dbname=DB)
    migrate(url, SCHEMA)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        schema = sql.Identifier(SCHEMA)
        conn.execute(sql.SQL(LOAD).format(schema=schema), {"items": items, "queues": QUEUES})
        conn.execute(sql.SQL(EVENTS).format(schema=schema))
        conn.execute("VACUUM ANALYZE")
    print(f"loaded {items:,} items and their history in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    with WorkQueue(url, schema=SCHEMA) as wq:
        schedules = Schedules(wq)
        for n in range(5):
            schedules.add(f"nightly-{n}", cron=f"{n} 3 * * *", queue=f"queue-{n}", title=f"Nightly rebuild {n}")
    return url


def serve(url: str) -> tuple[uvicorn.Server, str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(url, SCHEMA), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{sock.getsockname()[1]}"


def server_ms(response: httpx.Response) -> float:
    match = re.search(r"app;dur=([0-9.]+)", response.headers.get("server-timing", ""))
    return float(match.group(1)) if match else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="postgresql://root@127.0.0.1:5432/test")
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the database for --reuse")
    parser.add_argument("--reuse", action="store_true", help="measure the database a --keep run left")
    args = parser.parse_args()
    url = (
        psycopg.conninfo.make_conninfo(args.database_url, dbname=DB)
        if args.reuse
        else load(args.database_url, args.items)
    )
    with WorkQueue(url, schema=SCHEMA) as wq:
        tokens = Tokens(wq)
        name = f"bench-{int(time.time())}"
        secret = tokens.create(name, ["admin"]).secret
        some = wq.run_steps(feed.item_page(status="failed", limit=1)).items[0].id
    server, base = serve(url)
    try:
        with httpx.Client(base_url=base, timeout=60) as http:
            http.post("/sign-in", data={"token": secret, "next": "/"})
            pages = [
                "/",
                "/queues/queue-3",
                "/items",
                "/items?status=failed",
                "/items?queue=queue-3&status=pending",
                "/items?kind=kind-2",
                "/items?text=tenant%2042",
                f"/items/{some}",
                "/dead-letters",
                "/dead-letters?queue=queue-3",
                "/leases",
                "/schedules",
                "/schedules/nightly-1",
                "/alerts",
                "/audit",
            ]
            print(f"{'page':<40} {'status':>6} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  target {TARGET_MS:.0f} ms")
            worst = 0.0
            for path in pages:
                times = []
                status = 0
                for _ in range(args.rounds):
                    response = http.get(path)
                    status = response.status_code
                    times.append(server_ms(response))
                times.sort()
                p50 = statistics.median(times)
                p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
                worst = max(worst, p95) if status == 200 else worst
                flag = "" if status != 200 or p95 < TARGET_MS else "  OVER"
                print(f"{path:<40} {status:>6} {p50:>8.1f} {p95:>8.1f} {times[-1]:>8.1f}{flag}")
            print(f"worst p95 of the pages that answered 200: {worst:.1f} ms (target {TARGET_MS:.0f} ms)")
    finally:
        server.should_exit = True
        if not args.keep and not args.reuse:
            time.sleep(0.5)
            with psycopg.connect(args.database_url, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DB)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
