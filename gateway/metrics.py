"""Prometheus metrics: RPC and upstream observations, plus collectors reading live gateway state."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from importlib import metadata
from typing import Any, Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from gateway.status import GatewayState

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# grpc_code as go-grpc-prometheus writes it (Go's codes.Code.String()), so dashboards and alerts
# written for Go and Java gRPC servers work unchanged.
GO_CODE_NAMES: Final = {
    "OK": "OK",
    "CANCELLED": "Canceled",
    "UNKNOWN": "Unknown",
    "INVALID_ARGUMENT": "InvalidArgument",
    "DEADLINE_EXCEEDED": "DeadlineExceeded",
    "NOT_FOUND": "NotFound",
    "ALREADY_EXISTS": "AlreadyExists",
    "PERMISSION_DENIED": "PermissionDenied",
    "RESOURCE_EXHAUSTED": "ResourceExhausted",
    "FAILED_PRECONDITION": "FailedPrecondition",
    "ABORTED": "Aborted",
    "OUT_OF_RANGE": "OutOfRange",
    "UNIMPLEMENTED": "Unimplemented",
    "INTERNAL": "Internal",
    "UNAVAILABLE": "Unavailable",
    "DATA_LOSS": "DataLoss",
    "UNAUTHENTICATED": "Unauthenticated",
}


def gateway_version() -> str:
    try:
        return metadata.version("alp-gateway")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def split_method(method: str) -> tuple[str, str]:
    """The service and method of a gRPC path: /alp.v3.MarketDataService/ListPairs."""
    service, _, name = method.lstrip("/").rpartition("/")
    return service or "unknown", name


class GatewayMetrics:
    """Counters and histograms fed by the error barrier and the REST client (labels never carry
    secrets or free text: method names, status codes, paths of a fixed API only).

    The grpc_server_* families are go-grpc-prometheus's; grpc_server_handling_seconds observes
    unary calls only (a stream's lifetime says nothing about latency). The process and platform
    collectors of prometheus_client report on this registry, which is the one /metrics serves.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        Gauge(
            "alp_gateway_build_info",
            "the running gateway's version (value 1)",
            ("version",),
            registry=self.registry,
        ).labels(gateway_version()).set(1)
        grpc_labels = ("grpc_type", "grpc_service", "grpc_method")
        self.grpc_started = self._counter(
            "grpc_server_started_total", "RPCs started on the server", grpc_labels
        )
        self.grpc_handled = self._counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, whatever their status",
            (*grpc_labels, "grpc_code"),
        )
        self.grpc_seconds = self._latency(
            "grpc_server_handling_seconds", "time to answer a unary RPC", grpc_labels
        )
        self._grpc_labels: dict[tuple[str, str], tuple[str, str, str]] = {}
        self.rpc_total = self._counter(
            "alp_gateway_rpc_total", "RPCs by method and status code", ("method", "code")
        )
        self.rpc_seconds = self._latency(
            "alp_gateway_rpc_seconds", "RPC latency (streams: lifetime)", ("method",)
        )
        self.upstream_total = self._counter(
            "alp_gateway_upstream_requests_total",
            "ALP REST calls by path and HTTP status",
            ("method", "path", "status"),
        )
        self.upstream_seconds = self._latency(
            "alp_gateway_upstream_seconds", "ALP REST latency", ("path",)
        )

    def _counter(self, name: str, documentation: str, labels: Sequence[str]) -> Counter:
        return Counter(name, documentation, labels, registry=self.registry)

    def _latency(self, name: str, documentation: str, labels: Sequence[str]) -> Histogram:
        return Histogram(
            name, documentation, labels, buckets=LATENCY_BUCKETS, registry=self.registry
        )

    def _labels(self, method: str, kind: str) -> tuple[str, str, str]:
        labels = self._grpc_labels.get((method, kind))
        if labels is None:  # methods are the server's own: a bounded set
            labels = self._grpc_labels[(method, kind)] = (kind, *split_method(method))
        return labels

    def rpc_started(self, method: str, kind: str) -> None:
        self.grpc_started.labels(*self._labels(method, kind)).inc()

    def rpc_handled(self, method: str, kind: str, code: str, seconds: float) -> None:
        labels = self._labels(method, kind)
        self.grpc_handled.labels(*labels, GO_CODE_NAMES.get(code, "Unknown")).inc()
        if kind == "unary":
            self.grpc_seconds.labels(*labels).observe(seconds)
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
            "alp_gateway_fleet_topics_held": (
                "public topics this fleet member holds (subscribed upstream, relayed to members)",
                "fleet_topics_held",
            ),
            "alp_gateway_fleet_topics_followed": (
                "public topics this fleet member reads from another member's relay",
                "fleet_topics_followed",
            ),
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


class HealthCollector(Collector):
    """Serving state per health service, ALP's verdict and token expiry per account (the seconds
    left, never the token), read from the gateway's state at scrape time."""

    def __init__(
        self, state: Callable[[], GatewayState], clock: Callable[[], float] = time.time
    ) -> None:
        self._state = state
        self._clock = clock

    def collect(self) -> Iterator[Any]:
        state, now = self._state(), self._clock()
        serving = GaugeMetricFamily(
            "alp_gateway_serving", "1 while health reports SERVING (overall), else 0"
        )
        serving.add_metric((), 1.0 if state.serving else 0.0)
        yield serving
        services = GaugeMetricFamily(
            "alp_gateway_service_serving",
            "1 while the health service reports SERVING, else 0",
            labels=("service",),
        )
        for name, up in state.services.items():
            if name:
                services.add_metric((name,), 1.0 if up else 0.0)
        yield services
        accepted = GaugeMetricFamily(
            "alp_gateway_account_up",
            "1 while ALP accepted the account's key at the last check, else 0",
            labels=("account",),
        )
        expiry = GaugeMetricFamily(
            "alp_gateway_token_expiry_seconds",
            "seconds until the account's ALP token expires (absent while none is held)",
            labels=("account",),
        )
        for account in state.accounts:
            accepted.add_metric((account.name,), 0.0 if account.refused else 1.0)
            if account.token_expires_at is not None:
                expiry.add_metric((account.name,), account.token_expires_at - now)
        yield accepted
        yield expiry
