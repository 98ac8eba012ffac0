"""Prometheus metrics: RPC and upstream observations, plus a collector reading live gateway state."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class GatewayMetrics:
    """Counters and histograms fed by the error barrier and the REST client (labels never carry
    secrets or free text: method names, status codes, paths of a fixed API only)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.rpc_total = Counter(
            "alp_gateway_rpc_total",
            "RPCs by method and status code",
            ("method", "code"),
            registry=self.registry,
        )
        self.rpc_seconds = Histogram(
            "alp_gateway_rpc_seconds",
            "RPC latency (streams: lifetime)",
            ("method",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_total = Counter(
            "alp_gateway_upstream_requests_total",
            "ALP REST calls by path and HTTP status",
            ("method", "path", "status"),
            registry=self.registry,
        )
        self.upstream_seconds = Histogram(
            "alp_gateway_upstream_seconds",
            "ALP REST latency",
            ("path",),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        self.rpc_total.labels(method, code).inc()
        self.rpc_seconds.labels(method).observe(seconds)

    def observe_upstream(self, method: str, path: str, status: int, seconds: float) -> None:
        self.upstream_total.labels(method, path, str(status)).inc()
        self.upstream_seconds.labels(path).observe(seconds)


class StateCollector(Collector):
    """Reads counters kept by the components themselves at scrape time (nothing on hot paths)."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        state = self._snapshot()
        gauges = {
            "alp_gateway_ws_connections": ("open upstream WebSocket connections", "ws_connections"),
            "alp_gateway_ws_topics": ("upstream topics subscribed", "ws_topics"),
            "alp_gateway_streams_active": ("open server streams", "streams_active"),
            "alp_gateway_stream_queue_depth": ("events queued for consumers", "queue_depth"),
        }
        for name, (help_text, key) in gauges.items():
            yield GaugeMetricFamily(name, help_text, value=state.get(key, 0))
        counters = {
            "alp_gateway_token_refreshes": ("ALP token refreshes", "token_refreshes"),
            "alp_gateway_ws_reconnects": ("upstream WebSocket reconnects", "ws_reconnects"),
            "alp_gateway_stream_conflations": (
                "events conflated for slow consumers",
                "conflations",
            ),
            "alp_gateway_consumer_evictions": ("streams ended as too slow", "evictions"),
            "alp_gateway_rate_limiter_waits": (
                "calls that waited for the rate limiter",
                "limiter_waits",
            ),
            "alp_gateway_cache_hits": ("public micro-cache hits", "cache_hits"),
            "alp_gateway_cache_misses": ("public micro-cache misses", "cache_misses"),
            "alp_gateway_upstream_retries": ("upstream retries", "upstream_retries"),
        }
        for name, (help_text, key) in counters.items():
            yield CounterMetricFamily(name, help_text, value=state.get(key, 0))
        # Upstream events dropped because no consumer could be sent them (StreamHub.stats). Only
        # exported when the state carries them: a counter stuck at 0 would hide the drops.
        dropped = {
            "alp_gateway_stream_events_unencodable": (
                "upstream events dropped: not encodable as protobuf",
                "events_unencodable",
            ),
            "alp_gateway_stream_events_oversize": (
                "upstream events dropped: alone over the gRPC message cap",
                "events_oversize",
            ),
        }
        for name, (help_text, key) in dropped.items():
            if key in state:
                yield CounterMetricFamily(name, help_text, value=state[key])
