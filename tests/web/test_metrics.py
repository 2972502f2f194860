"""`/metrics`: Prometheus text that prometheus-client's own parser reads, every family with HELP and TYPE;
values computed from the database and cached a few seconds; a read token (or `--metrics-public`); a token
limited to some queues sees only their samples."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from clawnsole.queue import WorkQueue
from clawnsole.queues.api import Queues
from clawnsole.schedules.api import Schedules
from clawnsole.web.app import create_app
from tests.conftest import SCHEMA
from tests.web.conftest import Api, TokenMaker, serve_in_thread, stop_server
from tests.worker.helpers import wait_for

Client = Callable[[str], httpx.Client]
GAUGES = {
    "clawnsole_items",
    "clawnsole_oldest_pending_seconds",
    "clawnsole_expired_leases",
    "clawnsole_dead_letters",
    "clawnsole_queue_paused",
    "clawnsole_queue_draining",
    "clawnsole_workers_alive",
    "clawnsole_workers_silent",
    "clawnsole_schedule_last_run_timestamp_seconds",
    "clawnsole_schedule_next_run_timestamp_seconds",
    "clawnsole_schedule_active",
    "clawnsole_alerts_firing",
    "clawnsole_attempts_24h",
    "clawnsole_metrics_collect_seconds",
}


@contextmanager
def public_server(api: Api) -> Iterator[httpx.Client]:
    """A server of its own (an empty cache) on the module's database, with `/metrics` open to anyone."""
    server, thread, base = serve_in_thread(create_app(api.db_url, SCHEMA, metrics_public=True))
    try:
        with httpx.Client(base_url=base, timeout=30) as http:
            yield http
    finally:
        stop_server(server, thread)


def _samples(text: str) -> dict[str, list[Sample]]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def _value(samples: dict[str, list[Sample]], name: str, metric: str | None = None, **labels: str) -> float | None:
    found = [
        s.value
        for s in samples.get(name, [])
        if (metric is None or s.name == metric) and labels.items() <= s.labels.items()
    ]
    return found[0] if found else None


def _setup(wq: WorkQueue, queue: str) -> None:
    wq.enqueue(queue, "quick", kind="report")
    [claimed] = wq.claim_next(queue, agent="w")
    wq.done(claimed.id, agent="w", lease_token=claimed.lease_token)
    wq.enqueue(queue, "waiting")
    wq.enqueue(queue, "broken", max_attempts=1)
    [claimed] = wq.claim_next(queue, agent="w")
    wq.fail(claimed.id, "boom", agent="w", lease_token=claimed.lease_token, retry=False)
    Queues(wq).pause(queue)
    Schedules(wq).add(f"nightly-{queue}", queue=queue, title="Nightly", cron="0 3 * * *")


def test_metrics_need_a_read_token_unless_public(
    client: httpx.Client, as_token: Client, token: TokenMaker, api: Api
) -> None:
    assert client.get("/metrics").status_code == 401
    assert as_token(token("metrics-enqueue", ["enqueue"])).get("/metrics").status_code == 403
    response = as_token(token("metrics-read", ["read"])).get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    with public_server(api) as anyone:
        assert anyone.get("/metrics").status_code == 200


def test_every_metric_parses_with_help_and_type_and_says_what_the_database_holds(
    api: Api, web_wq: WorkQueue, queue: str
) -> None:
    _setup(web_wq, queue)
    with public_server(api) as http:
        text = http.get("/metrics").text
    families = list(text_string_to_metric_families(text))
    names = {f.name for f in families}
    assert names >= GAUGES | {"clawnsole_run_seconds_24h"}
    for family in families:
        assert family.documentation, family.name
        assert family.type in ("gauge", "histogram"), family.name
        assert f"# HELP {family.name} " in text and f"# TYPE {family.name} " in text
    samples = _samples(text)
    assert _value(samples, "clawnsole_items", queue=queue, status="pending") == 1
    assert _value(samples, "clawnsole_items", queue=queue, status="failed") == 1
    # Done items are not counted (that would read every finished item); the attempts say what got done.
    assert _value(samples, "clawnsole_items", queue=queue, status="done") is None
    assert _value(samples, "clawnsole_dead_letters", queue=queue) == 1
    assert _value(samples, "clawnsole_queue_paused", queue=queue) == 1
    assert _value(samples, "clawnsole_queue_draining", queue=queue) == 0
    assert (_value(samples, "clawnsole_oldest_pending_seconds", queue=queue) or 0) >= 0
    assert _value(samples, "clawnsole_schedule_active", schedule=f"nightly-{queue}", queue=queue) == 1
    assert _value(samples, "clawnsole_schedule_next_run_timestamp_seconds", schedule=f"nightly-{queue}") is not None
    assert _value(samples, "clawnsole_attempts_24h", queue=queue, kind="report", outcome="done") == 1
    assert _value(samples, "clawnsole_attempts_24h", queue=queue, kind="", outcome="failed") == 1
    done = {"queue": queue, "kind": "report", "outcome": "done"}
    assert _value(samples, "clawnsole_run_seconds_24h", "clawnsole_run_seconds_24h_bucket", le="+Inf", **done) == 1
    assert _value(samples, "clawnsole_run_seconds_24h_gcount", **done) == 1
    dashboard = (Path(__file__).parents[2] / "examples" / "grafana-dashboard.json").read_text()
    sample_names = names | {s.name for f in families for s in f.samples}
    assert set(re.findall(r"clawnsole_\w+", dashboard)) - {"clawnsole"} <= sample_names


def test_scrapes_within_the_ttl_are_served_from_the_cache_then_computed_again(
    api: Api, web_wq: WorkQueue, queue: str
) -> None:
    web_wq.enqueue(queue, "first")
    with public_server(api) as http:
        first = _samples(http.get("/metrics").text)
        assert _value(first, "clawnsole_items", queue=queue, status="pending") == 1
        web_wq.enqueue(queue, "second")
        # At once: the cached page (the database was not asked again).
        assert _value(_samples(http.get("/metrics").text), "clawnsole_items", queue=queue, status="pending") == 1

        def fresh() -> bool:
            return _value(_samples(http.get("/metrics").text), "clawnsole_items", queue=queue, status="pending") == 2

        wait_for(fresh, timeout=15, what="the cache to expire")


def test_a_token_limited_to_a_queue_sees_only_its_samples_and_no_installation_wide_metric(
    as_token: Client, token: TokenMaker, web_wq: WorkQueue, queue: str
) -> None:
    web_wq.enqueue(queue, "mine")
    web_wq.enqueue(f"{queue}-other", "not mine")
    http = as_token(token("metrics-limited", ["read"], queues=[queue]))

    def scraped() -> dict[str, list[Sample]] | None:
        samples = _samples(http.get("/metrics").text)
        return samples if _value(samples, "clawnsole_items", queue=queue, status="pending") == 1 else None

    samples = wait_for(scraped, timeout=15, what="the queue in the metrics")
    assert {s.labels["queue"] for f in samples.values() for s in f} == {queue}
    assert "clawnsole_workers_alive" not in samples
    assert "clawnsole_alerts_firing" not in samples


def test_the_run_time_histogram_counts_each_attempt_in_the_first_bucket_at_or_above_it(
    web_wq: WorkQueue, queue: str
) -> None:
    from clawnsole.errors import InvalidInput
    from clawnsole.stats import histogram

    web_wq.enqueue(queue, "timed", kind="h")
    [claimed] = web_wq.claim_next(queue, agent="w")
    web_wq.done(claimed.id, agent="w", lease_token=claimed.lease_token)
    found = web_wq.run_steps(histogram.run_times(bounds=(1e-9, 3600.0), since="1h"))
    [mine] = [h for h in found if h.queue == queue]
    assert (mine.kind, mine.outcome, mine.count) == ("h", "done", 1)
    assert mine.buckets == ((1e-9, 0), (3600.0, 1), (float("inf"), 1))
    assert 0 < mine.sum < 3600
    for bad in ((), (5.0, 1.0), (0.0, 1.0)):
        with pytest.raises(InvalidInput) as refused:
            web_wq.run_steps(histogram.run_times(bounds=bad))
        assert refused.value.field == "bounds"


def test_the_history_is_computed_again_only_after_its_own_ttl(web_wq: WorkQueue, queue: str, api: Api) -> None:
    import asyncio

    from clawnsole.queue import AsyncWorkQueue
    from clawnsole.web.metrics import HISTORY_TTL, TTL, MetricsCache

    now = [0.0]

    def attempts(families: list[Any]) -> float:
        return sum(
            s.value
            for f in families
            for s in f.samples
            if f.name == "clawnsole_attempts_24h" and s.labels["queue"] == queue and s.labels["outcome"] == "done"
        )

    async def scrape_twice() -> tuple[list[float], list[float]]:
        cache = MetricsCache(clock=lambda: now[0])
        async with AsyncWorkQueue(api.db_url, schema=SCHEMA) as wq:
            first = await cache.families(wq)
            claimed = web_wq.claim_next([queue], lease="60")[0]
            web_wq.done(claimed.id, lease_token=claimed.lease_token)
            now[0] += TTL + 1  # the state is stale, the history not yet
            second = await cache.families(wq)
            now[0] += HISTORY_TTL
            third = await cache.families(wq)
        return [attempts(first), attempts(second), attempts(third)], [
            _pending(first, queue),
            _pending(second, queue),
            _pending(third, queue),
        ]

    web_wq.enqueue(queue, "one")
    done, pending = asyncio.run(scrape_twice())
    assert pending == [1, 0, 0]
    assert done == [0, 0, 1]


def _pending(families: list[Any], queue: str) -> float:
    return sum(
        s.value
        for f in families
        for s in f.samples
        if f.name == "clawnsole_items" and s.labels["queue"] == queue and s.labels["status"] == "pending"
    )
