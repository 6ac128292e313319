"""Prometheus metrics of one worker, served at /metrics.

Counters are bumped once per event batch, not once per client, so that
fan-out to thousands of connections does not pay for bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sized
from typing import Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Lag from the publish in Redis to this worker's writes: sub-millisecond on a
# quiet host, up to seconds when a worker is saturated.
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class WorkerState(Protocol):
    """What the gauges read from the worker, when scraped."""

    @property
    def http_connections(self) -> Sized: ...

    def connection_count(self) -> int: ...

    @property
    def ready(self) -> bool: ...

    @property
    def redis_up(self) -> bool: ...


class Metrics:
    """Every metric of the worker, by theme: connections, increments, fan-out, Redis."""

    def __init__(self, worker: WorkerState, max_connections: int, build: str = "pure") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        Gauge(
            "ws_counter_build_info",
            "1, labelled with the build this worker runs: compiled (mypyc) or pure (Python).",
            ("build",),
            registry=self.registry,
        ).labels(build).set(1)
        # A full collection stalls every client of the worker: its rate is worth a graph.
        GCCollector(registry=self.registry)
        self._connection_metrics(worker, max_connections)
        self._increment_metrics()
        self._fanout_metrics()
        self._redis_metrics(worker)

    def _counter(self, name: str, help: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, help, labels, registry=self.registry)

    def _gauge(self, name: str, help: str, value: Callable[[], float]) -> Gauge:
        gauge = Gauge(name, help, registry=self.registry)
        gauge.set_function(value)
        return gauge

    def _connection_metrics(self, worker: WorkerState, max_connections: int) -> None:
        self.connections = self._gauge(
            "ws_counter_connections", "Open WebSocket connections.", worker.connection_count
        )
        self.http_connections = self._gauge(
            "ws_counter_http_connections",
            "Open plain HTTP connections (the HTTP API, probes, the page).",
            lambda: len(worker.http_connections),
        )
        self._gauge(
            "ws_counter_max_connections",
            "WS_MAX_CONNECTIONS: WebSocket and plain HTTP connections together beyond which"
            " handshakes get 503.",
            lambda: max_connections,
        )
        self._gauge(
            "ws_counter_ready",
            "1 while /readyz answers 200: subscribed to Redis, not draining, not misconfigured.",
            lambda: worker.ready,
        )
        self.handshakes = self._counter(
            "ws_counter_handshakes",
            "WebSocket handshakes by outcome: accepted, or the HTTP status of the refusal.",
            ("outcome",),
        )
        self.rebalanced = self._counter(
            "ws_counter_rebalanced",
            "Connections closed with 1012 because this worker held more than the fleet's"
            " mean (WS_REBALANCE_RATE): they reconnect through the balancer.",
        )
        self.http_requests = self._counter(
            "ws_counter_http_requests",
            "Plain HTTP requests (API, probes, page, client module) by response status.",
            ("status",),
        )

    def _increment_metrics(self) -> None:
        increments = self._counter("ws_counter_increments", "Increments by outcome.", ("outcome",))
        self.applied = increments.labels("applied")
        self.duplicate = increments.labels("duplicate")
        self.failed = increments.labels("failed")
        self.invalid = increments.labels("invalid")
        self.rate_limited = increments.labels("rate_limited")
        self.forbidden = increments.labels("forbidden")

    def _fanout_metrics(self) -> None:
        self.totals_sent = self._counter(
            "ws_counter_totals_sent", "Total messages written to clients."
        )
        self.totals_conflated = self._counter(
            "ws_counter_totals_conflated",
            "Totals replaced by a newer one before a slow client could take them.",
        )
        self.slow_clients_closed = self._counter(
            "ws_counter_slow_clients_closed", "Connections closed with 1008 for not reading."
        )
        self.increment_seconds = Histogram(
            "ws_counter_increment_seconds",
            "Per call to Redis: from the arrival of its oldest increment at this worker to"
            " the outcome (the slowest ack of each call, Redis' round trip included).",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.fanout_lag = Histogram(
            "ws_counter_fanout_lag_seconds",
            "From the publish inside Redis to this worker writing the total to its clients.",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )

    def _redis_metrics(self, worker: WorkerState) -> None:
        self._gauge(
            "ws_counter_redis_up",
            "1 while the worker's subscription to Redis stands and Redis accepts its"
            " credentials; 0 while Redis is unavailable or refuses it.",
            lambda: worker.redis_up,
        )
        self.redis_reconnects = self._counter(
            "ws_counter_redis_reconnects",
            "Times the pub/sub connection to Redis was lost and made again.",
        )
        self.redis_out_of_memory = self._counter(
            "ws_counter_redis_out_of_memory",
            "Increments refused because Redis is at its maxmemory (noeviction) and refuses"
            " writes. Any increase means the service refuses increments: free or add memory.",
        )
        self.rollbacks = self._counter(
            "ws_counter_rollbacks",
            "Times Redis went back in time within an epoch (a failover lost states)"
            " and the counter was given a new epoch.",
        )

    def count_task_failures(self, failures: Callable[[], Mapping[str, int]]) -> None:
        """Export ``failures()`` (worker.tasks.FAILURES) as ws_counter_task_failures_total."""
        self.registry.register(_MappingCollector(_task_failures, failures))

    def export_certificate_expiry(self, expiry: Callable[[], Mapping[str, float]]) -> None:
        """Export ``expiry()`` (ws_counter.worker.store.certificates.EXPIRY) as
        ws_counter_redis_certificate_expiry_timestamp_seconds."""
        self.registry.register(_MappingCollector(_certificate_expiry, expiry))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _MappingCollector(Collector):
    """One labelled family read from a mapping (label value -> number) when scraped, so
    that any code may report into a module-level mapping without holding the metrics
    (worker.tasks.FAILURES, ws_counter.worker.store.certificates.EXPIRY)."""

    def __init__(
        self,
        family: Callable[[], CounterMetricFamily | GaugeMetricFamily],
        values: Callable[[], Mapping[str, float]],
    ) -> None:
        self._family = family
        self._values = values

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for label, value in sorted(self._values().items()):
            family.add_metric([label], value)
        yield family

    def describe(self) -> Iterator[Metric]:
        return self.collect()


def _task_failures() -> CounterMetricFamily:
    return CounterMetricFamily(
        "ws_counter_task_failures",
        "Background tasks that failed (logged as task_failed), by task; a task meant to"
        " run for ever is then restarted with backoff.",
        labels=["task"],
    )


def _certificate_expiry() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "ws_counter_redis_certificate_expiry_timestamp_seconds",
        "When a certificate of the TLS link to Redis expires (Unix time), as the worker"
        ' last verified it: Redis\' own (certificate="redis") and each CA it trusts.'
        " Absent on plain TCP.",
        labels=["certificate"],
    )
