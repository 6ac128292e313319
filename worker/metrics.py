"""Prometheus metrics of one worker, served at /metrics.

Counters are bumped once per event batch, not once per client, so that
fan-out to thousands of connections does not pay for bookkeeping.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Lag from the publish in Redis to this worker's writes: sub-millisecond on a
# quiet host, up to seconds when a worker is saturated.
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(
        self, connections: Callable[[], float], http_connections: Callable[[], float]
    ) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge(
            "ws_counter_connections", "Open WebSocket connections.", registry=registry
        )
        self.connections.set_function(connections)
        self.http_connections = Gauge(
            "ws_counter_http_connections",
            "Open plain HTTP connections (the HTTP API, probes, the page).",
            registry=registry,
        )
        self.http_connections.set_function(http_connections)
        self.handshakes = Counter(
            "ws_counter_handshakes",
            "WebSocket handshakes by outcome: accepted, or the HTTP status of the refusal.",
            ["outcome"],
            registry=registry,
        )
        self.http_requests = Counter(
            "ws_counter_http_requests",
            "Plain HTTP requests (API, probes, page, client module) by response status.",
            ["status"],
            registry=registry,
        )
        increments = Counter(
            "ws_counter_increments",
            "Increments by outcome.",
            ["outcome"],
            registry=registry,
        )
        self.applied = increments.labels("applied")
        self.duplicate = increments.labels("duplicate")
        self.failed = increments.labels("failed")
        self.invalid = increments.labels("invalid")
        self.rate_limited = increments.labels("rate_limited")
        self.forbidden = increments.labels("forbidden")
        self.totals_sent = Counter(
            "ws_counter_totals_sent", "Total messages written to clients.", registry=registry
        )
        self.totals_conflated = Counter(
            "ws_counter_totals_conflated",
            "Totals replaced by a newer one before a slow client could take them.",
            registry=registry,
        )
        self.slow_clients_closed = Counter(
            "ws_counter_slow_clients_closed",
            "Connections closed with 1008 for not reading.",
            registry=registry,
        )
        self.redis_reconnects = Counter(
            "ws_counter_redis_reconnects",
            "Times the pub/sub connection to Redis was lost and made again.",
            registry=registry,
        )
        self.redis_out_of_memory = Counter(
            "ws_counter_redis_out_of_memory",
            "Increments refused because Redis is at its maxmemory (noeviction) and refuses"
            " writes. Any increase means the service refuses increments: free or add memory.",
            registry=registry,
        )
        self.rollbacks = Counter(
            "ws_counter_rollbacks",
            "Times Redis went back in time within an epoch (a failover lost states)"
            " and the counter was given a new epoch.",
            registry=registry,
        )
        self.fanout_lag = Histogram(
            "ws_counter_fanout_lag_seconds",
            "From the publish inside Redis to this worker writing the total to its clients.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
