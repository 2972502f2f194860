"""The `api` scenario: enqueue and claim+done through `clawnsole serve` with 8 HTTP clients, beside the library
doing the same with 8 threads in the same run.

The server is the real `clawnsole serve` in a process of its own (as it is deployed: its event loop does not
share a GIL with the clients), on 127.0.0.1 and a free port, over the scratch schema, stopped with SIGTERM
(its graceful stop) at the end. The clients are `ApiClient`s — what the CLI over HTTP and `clawnsole mcp`
use: httpx, one keep-alive connection each — acting with a token of scopes enqueue and work. What is left
between an API figure and the library's is the cost of HTTP: the request, authentication, the audit row,
the JSON.

Needs the `[web]` extra; `web_missing()` says why it cannot run, without importing it.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from clawnsole.bench.report import RATE, Figure
from clawnsole.bench.scenarios import QUEUE, Bench, _clawnsole_command, _tail
from clawnsole.bench.stats import median
from clawnsole.client.api import ApiClient
from clawnsole.models import NewItem
from clawnsole.queue import WorkQueue
from clawnsole.tokens.api import Tokens

CLIENTS = 8
WARM_UP = 5  # operations per client before timing: connections opened, statements prepared, pools filled
# What `clawnsole serve` imports beyond the core dependencies (the `[web]` extra, `mcp` aside).
_WEB_MODULES = ("fastapi", "uvicorn", "starlette", "sse_starlette", "prometheus_client")
_START_TIMEOUT = 60.0
_STOP_TIMEOUT = 20.0


def web_missing() -> str | None:
    """Why the `api` scenario cannot run here (None: it can): the first module of the `[web]` extra not found."""
    for name in _WEB_MODULES:
        if importlib.util.find_spec(name) is None:
            return f"the [web] extra is not installed (no module {name!r}): pip install 'clawnsole[web]'"
    return None


def api(b: Bench) -> None:
    """Enqueue (single POSTs) and claim+done (claim limit 1, then done with the lease token) per second with 8
    HTTP clients, each beside the library's figure with 8 threads on one pool, measured in turn."""
    s = b.sizes
    per_client = max(1, s.api_items // CLIENTS)
    total = per_client * CLIENTS
    b.scratch.reset()
    with _server(b) as (base_url, server_pid), b.queue(connections=CLIENTS) as wq:
        secret = Tokens(wq).create("bench-api", ["enqueue", "work"], queues=[QUEUE]).secret
        clients = [ApiClient(base_url, secret) for _ in range(CLIENTS)]
        try:
            runs: dict[str, list[float]] = {
                "library enqueue": [],
                "api enqueue": [],
                "library claim": [],
                "api claim": [],
            }
            # CPU milliseconds per item of the server process and of this one (the clients), API runs only.
            cpu: dict[str, list[tuple[float, float]]] = {"api enqueue": [], "api claim": []}
            for n in range(s.repeats + 1):  # the first round warms up and is not counted
                count = WARM_UP if n == 0 else per_client
                used: dict[str, tuple[float, float]] = {}
                timed = {"library enqueue": _together([_library_enqueue(wq, count)] * CLIENTS)}
                with _cpu_per_item(server_pid, count * CLIENTS, used, "api enqueue"):
                    timed["api enqueue"] = _together([_api_enqueue(c, count) for c in clients])
                _backlog(b, wq, 2 * count * CLIENTS)
                timed["library claim"] = _together([_library_claim_done(wq, count)] * CLIENTS)
                with _cpu_per_item(server_pid, count * CLIENTS, used, "api claim"):
                    timed["api claim"] = _together([_api_claim_done(c, count) for c in clients])
                if n > 0:
                    for key, seconds in timed.items():
                        runs[key].append(total / seconds)
                    for key, spent in used.items():
                        cpu[key].append(spent)
        finally:
            for client in clients:
                client.close()
    for measure, key in (("enqueue", "enqueue"), ("claim+done", "claim")):
        _figure(b, measure, runs[f"api {key}"], runs[f"library {key}"], total, cpu[f"api {key}"])


def _figure(
    b: Bench, measure: str, api_runs: list[float], library_runs: list[float], items: int, cpu: list[tuple[float, float]]
) -> None:
    """One API figure, with the library's beside it where the ceiling goes (the table's ratio is API/library)."""
    value, library = median(api_runs), median(library_runs)
    server_cpu, clients_cpu = median([c[0] for c in cpu]), median([c[1] for c in cpu])
    b.report.add(
        Figure(
            "api",
            f"{measure}, {CLIENTS} HTTP clients",
            value,
            RATE,
            library,
            f"library, {CLIENTS} threads on one pool, same run",
            {
                "runs": [round(r) for r in api_runs],
                "library_runs": [round(r) for r in library_runs],
                "items": items,
                "server_cpu_ms_per_item": round(server_cpu, 3),
                "clients_cpu_ms_per_item": round(clients_cpu, 3),
                "note": f"vs the library's {library:,.0f}/s; CPU per item: server {server_cpu:.2f} ms,"
                f" clients {clients_cpu:.2f} ms",
            },
        )
    )
    b.log(
        f"  api {measure} {CLIENTS} clients: {value:,.0f}/s ({value / library:.0%} of the library's {library:,.0f}/s)"
    )


def _together(work: list[Callable[[], None]]) -> float:
    """Run each callable in a thread of its own, started together; seconds until the last one finished."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(work) + 1)

    def run(job: Callable[[], None]) -> None:
        try:
            start.wait()
            job()
        except BaseException as error:  # reported to the caller
            errors.append(error)

    threads = [threading.Thread(target=run, args=(job,), daemon=True) for job in work]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"a client failed: {type(errors[0]).__name__}: {errors[0]}") from errors[0]
    return elapsed


def _library_enqueue(wq: WorkQueue, count: int) -> Callable[[], None]:
    def job() -> None:
        for n in range(count):
            wq.enqueue(QUEUE, f"library {n}")

    return job


def _api_enqueue(client: ApiClient, count: int) -> Callable[[], None]:
    def job() -> None:
        for n in range(count):
            client.enqueue(QUEUE, f"api {n}")

    return job


def _library_claim_done(wq: WorkQueue, count: int) -> Callable[[], None]:
    def job() -> None:
        for _ in range(count):
            claimed = wq.claim_next(QUEUE, limit=1)
            if not claimed:
                raise RuntimeError("the library found no item to claim in a backlog sized for every claim")
            wq.done(claimed[0].id, lease_token=str(claimed[0].lease_token))

    return job


def _api_claim_done(client: ApiClient, count: int) -> Callable[[], None]:
    def job() -> None:
        for _ in range(count):
            claimed = client.claim(QUEUE, limit=1)
            if not claimed:
                raise RuntimeError("the API found no item to claim in a backlog sized for every claim")
            client.done(int(claimed[0]["id"]), str(claimed[0]["lease_token"]))

    return job


def _backlog(b: Bench, wq: WorkQueue, at_least: int) -> None:
    """Top the pending items up to `at_least`, so no claim of the measurement comes back empty."""
    missing = at_least - int(b.execute("SELECT count(*) FROM {items} WHERE status = 'pending'")[0][0])
    for start in range(0, max(0, missing), 10_000):
        wq.enqueue_many([NewItem(QUEUE, f"backlog {n}") for n in range(start, min(missing, start + 10_000))])


@contextmanager
def _cpu_per_item(pid: int, items: int, into: dict[str, tuple[float, float]], key: str) -> Iterator[None]:
    """Store in `into[key]` the CPU milliseconds per item the block cost the server process and this one (the
    clients): with both beside the rate, a figure says which side of the HTTP connection it was bound by."""
    server, here = _process_cpu(pid), time.process_time()
    yield
    into[key] = ((_process_cpu(pid) - server) * 1000 / items, (time.process_time() - here) * 1000 / items)


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (Linux `/proc`; 0.0 elsewhere, so the figure is 0)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime and stime fields 14 and 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    """A port free on 127.0.0.1 now (the server binds it a moment later; a clash fails its start loudly)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _server(b: Bench) -> Iterator[tuple[str, int]]:
    """`clawnsole serve` on 127.0.0.1 and a free port over the scratch schema, ready; SIGTERM at the end, and
    its exit checked (a server that does not stop cleanly fails the scenario)."""
    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = Path(tempfile.mkstemp(prefix="clawnsole-bench-serve-", suffix=".log")[1])
    # The database URL goes in the environment, not in argv where `ps` would show a password.
    env = os.environ | {"CLAWNSOLE_DATABASE_URL": b.scratch.url, "CLAWNSOLE_SCHEMA": b.scratch.schema}
    try:
        with open(log, "wb") as stderr:
            process = subprocess.Popen(
                [*_clawnsole_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
            )
        try:
            _wait_ready(process, base_url, log)
            yield base_url, process.pid
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise RuntimeError(f"clawnsole serve did not stop within {_STOP_TIMEOUT:g}s of SIGTERM") from None
        if code != 0:
            raise RuntimeError(f"clawnsole serve exited {code} on SIGTERM: {_tail(log)}")
    finally:
        log.unlink(missing_ok=True)


def _wait_ready(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    """Until `/readyz` answers 200 (database reached, schema current), the process dies, or the deadline."""
    deadline = time.monotonic() + _START_TIMEOUT
    with httpx.Client(base_url=base_url, timeout=5, trust_env=False) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"clawnsole serve exited {process.returncode} at start: {_tail(log)}")
            try:
                if http.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.05)
    raise RuntimeError(f"clawnsole serve was not ready within {_START_TIMEOUT:g}s: {_tail(log)}")
