"""`/metrics`: the queue's state and the event history as Prometheus metrics, read from the database.

Every value is computed from PostgreSQL at scrape time by the same library calls the CLI, the API and the
dashboard make (`Stats.overview`, `workers`, `schedule list`, `alert list`, `stats`), then cached: the state
for `TTL` seconds, the day of history for `HISTORY_TTL`. Any number of scrapers (two Prometheus replicas, a
dashboard refreshing) costs the database one round every few seconds, and each read of the state is served by
an index: a million finished items cost a scrape nothing. The families go through their own
`CollectorRegistry`, never the process-global one, so nothing
else in the process (or a second app in a test) leaks into the page.

The history metrics cover a window (`WINDOW`, the last day) and are gauges, not counters: retention deletes
old events, so a count "since the beginning" would fall, and Prometheus would read the fall as a reset. Graph
them as they are (no `rate()`); `histogram_quantile` works on the run-time buckets directly.

A token limited to some queues sees only the samples labelled with one of them: families without a queue
label (workers, alerts) are about the whole installation and are left out for such a token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from clawnsole.alerts.api import AsyncAlerts
from clawnsole.incidents.api import AsyncIncidents
from clawnsole.queue import AsyncWorkQueue
from clawnsole.schedules.api import AsyncSchedules
from clawnsole.stats import histogram
from clawnsole.stats.api import AsyncStats

# Seconds the state families are served again before the database is asked anew.
TTL = 5.0
# The history families read a day of events: at most once a minute.
HISTORY_TTL = 60.0
# The window of the history metrics, in seconds (the stats statements' own default: one day).
WINDOW = 86_400.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Families about the whole installation rather than a queue: left out for a token limited to some queues.
GLOBAL = frozenset(
    {
        "clawnsole_workers_alive",
        "clawnsole_workers_silent",
        "clawnsole_alerts_firing",
        "clawnsole_metrics_collect_seconds",
    }
)


def _label(value: str | None) -> str:
    return "" if value is None else value


def _gauge(name: str, help_text: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, labels=list(labels))


# The statuses `clawnsole_items` counts: each has an index of its own, so a scrape never reads the finished
# items (done items are not counted: on a big installation that alone took seconds; see the attempts).
COUNTED = ("pending", "waiting", "claimed", "failed", "cancelled")


async def collect(queue: AsyncWorkQueue) -> list[Metric]:
    """Every metric family, computed now from the database."""
    return [*(await collect_state(queue)), *(await collect_history(queue))]


async def collect_state(queue: AsyncWorkQueue) -> list[Metric]:
    """The families of what is true now: items by status, backlog age, leases, queue controls, workers,
    schedules, alerts. Each read is served by an index (`Stats.overview` for the queues)."""
    started = time.monotonic()
    overview = await AsyncStats(queue).overview()
    workers = await AsyncIncidents(queue).workers()
    schedules = await AsyncSchedules(queue).list()
    firing = await AsyncAlerts(queue).alerts(state="firing")

    items = _gauge("clawnsole_items", f"Items by queue and status, now ({', '.join(COUNTED)}).", ["queue", "status"])
    oldest = _gauge(
        "clawnsole_oldest_pending_seconds", "Age of the oldest due pending item of the queue (0: none).", ["queue"]
    )
    expired = _gauge("clawnsole_expired_leases", "Claimed items whose lease has expired, by queue.", ["queue"])
    dead = _gauge("clawnsole_dead_letters", "Dead letters (failed items) by queue.", ["queue"])
    paused = _gauge("clawnsole_queue_paused", "1 when the queue is paused (no claims), else 0.", ["queue"])
    draining = _gauge("clawnsole_queue_draining", "1 when the queue is draining (no enqueues), else 0.", ["queue"])
    for row in overview:
        for status in COUNTED:
            items.add_metric([row.queue, status], getattr(row, status))
        oldest.add_metric([row.queue], row.oldest_pending_seconds or 0.0)
        expired.add_metric([row.queue], row.expired)
        dead.add_metric([row.queue], row.failed)
        paused.add_metric([row.queue], 1 if row.state == "paused" else 0)
        draining.add_metric([row.queue], 1 if row.state == "draining" else 0)

    alive = _gauge("clawnsole_workers_alive", "Registered workers heartbeating now.")
    alive.add_metric([], sum(1 for w in workers if w.gone is None))
    silent = _gauge("clawnsole_workers_silent", "Workers gone silent (no heartbeat for 3 intervals), not stopped.")
    silent.add_metric([], sum(1 for w in workers if w.gone == "silent"))

    last_run = _gauge(
        "clawnsole_schedule_last_run_timestamp_seconds",
        "Unix time a schedule last fired (absent: never).",
        ["schedule", "queue"],
    )
    next_run = _gauge(
        "clawnsole_schedule_next_run_timestamp_seconds", "Unix time a schedule fires next.", ["schedule", "queue"]
    )
    schedule_active = _gauge(
        "clawnsole_schedule_active", "1 when a schedule is active, 0 paused.", ["schedule", "queue"]
    )
    for schedule in schedules:
        labels = [schedule.name, schedule.queue]
        if schedule.last_run_at is not None:
            last_run.add_metric(labels, schedule.last_run_at.timestamp())
        next_run.add_metric(labels, schedule.next_run_at.timestamp())
        schedule_active.add_metric(labels, 1 if schedule.status == "active" else 0)

    alerts = _gauge("clawnsole_alerts_firing", "Alerts firing now, by rule and severity.", ["rule", "severity"])
    by_rule: dict[tuple[str, str], int] = {}
    for alert in firing:
        by_rule[(alert.rule, alert.severity)] = by_rule.get((alert.rule, alert.severity), 0) + 1
    for (rule, severity), n in sorted(by_rule.items()):
        alerts.add_metric([rule, severity], n)

    took = _gauge("clawnsole_metrics_collect_seconds", "Seconds the last computation of the state metrics took.")
    took.add_metric([], time.monotonic() - started)
    return [
        items, oldest, expired, dead, paused, draining, alive, silent, last_run, next_run, schedule_active,
        alerts, took,
    ]  # fmt: skip


async def collect_history(queue: AsyncWorkQueue) -> list[Metric]:
    """The families of the event history's last `WINDOW`: attempts by outcome and the run-time histogram.
    They read a day of events, so they are computed at most every `HISTORY_TTL` seconds."""
    attempts = await AsyncStats(queue).stats(since=WINDOW)
    runs = await queue.run_steps(histogram.run_times(since=WINDOW))
    outcomes = _gauge(
        "clawnsole_attempts_24h",
        "Attempts over the last 24 h by queue, kind and outcome (claimed, done, failed, retried).",
        ["queue", "kind", "outcome"],
    )
    for row in attempts:
        for outcome in ("claimed", "done", "failed", "retried"):
            outcomes.add_metric([row.queue, _label(row.kind), outcome], getattr(row, outcome))

    run_time = GaugeHistogramMetricFamily(
        "clawnsole_run_seconds_24h",
        "Run time (claim to outcome) of the attempts that ended in the last 24 h, by queue, kind and outcome.",
        labels=["queue", "kind", "outcome"],
    )
    for hist in runs:
        buckets = [("+Inf" if bound == float("inf") else repr(bound), float(n)) for bound, n in hist.buckets]
        run_time.add_metric([hist.queue, _label(hist.kind), hist.outcome], buckets, hist.sum)
    return [outcomes, run_time]


def visible(families: Iterable[Metric], can_see: Callable[[str], bool] | None) -> list[Metric]:
    """The families as a principal may see them: `can_see` None sees everything; otherwise only the samples
    labelled with a queue it may see, and none of the installation-wide families."""
    if can_see is None:
        return list(families)
    kept = []
    for family in families:
        if family.name in GLOBAL:
            continue
        copy = Metric(family.name, family.documentation, family.type, family.unit)
        copy.samples = [s for s in family.samples if can_see(s.labels.get("queue", ""))]
        kept.append(copy)
    return kept


@dataclass(eq=False)  # the registry keys its collectors by identity
class _Fixed:
    """A collector that yields families computed elsewhere (the registry only renders them)."""

    families: list[Metric]

    def collect(self) -> Iterator[Metric]:
        yield from self.families


def render(families: Iterable[Metric]) -> bytes:
    """The text exposition of these families, through a registry of their own."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(list(families)))
    return generate_latest(registry)


class _Tier:
    """One computation's families, served again for `ttl` seconds; one computation at a time, so a burst of
    scrapes when it runs out costs one round of queries, not one per scrape."""

    def __init__(
        self, compute: Callable[[AsyncWorkQueue], Awaitable[list[Metric]]], ttl: float, clock: Callable[[], float]
    ) -> None:
        self._compute = compute
        self._ttl = ttl
        self._clock = clock
        self._families: list[Metric] | None = None
        self._at = 0.0
        self._lock = asyncio.Lock()

    async def families(self, queue: AsyncWorkQueue) -> list[Metric]:
        if self._fresh():
            assert self._families is not None
            return self._families
        async with self._lock:
            if not self._fresh():
                self._families = await self._compute(queue)
                self._at = self._clock()
            assert self._families is not None
            return self._families

    def _fresh(self) -> bool:
        return self._families is not None and self._clock() - self._at < self._ttl


class MetricsCache:
    """The families of the last computations: the state families for `ttl` seconds, the history families
    (a day of events) for `history_ttl`."""

    def __init__(
        self, ttl: float = TTL, history_ttl: float = HISTORY_TTL, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._state = _Tier(collect_state, ttl, clock)
        self._history = _Tier(collect_history, history_ttl, clock)

    async def families(self, queue: AsyncWorkQueue) -> list[Metric]:
        """The cached families, each tier computed again when older than its TTL."""
        return [*(await self._state.families(queue)), *(await self._history.families(queue))]


def page(families: list[Metric], can_see: Callable[[str], bool] | None) -> bytes:
    """The `/metrics` body for a principal (see `visible`)."""
    return render(visible(families, can_see))


__all__ = [
    "CONTENT_TYPE",
    "COUNTED",
    "GLOBAL",
    "HISTORY_TTL",
    "TTL",
    "WINDOW",
    "MetricsCache",
    "collect",
    "collect_history",
    "collect_state",
    "page",
    "render",
    "visible",
]
