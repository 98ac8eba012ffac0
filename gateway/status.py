"""A snapshot of what the running gateway holds, for GetStatus, metrics and tests (no secrets)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ConnectionState:
    name: str
    connected: bool
    topics: tuple[str, ...]
    connects: int
    disconnects: int


@dataclass(frozen=True)
class AccountState:
    name: str
    token_expires_at: float | None
    token_refreshes: int
    private_stream_open: bool


@dataclass(frozen=True)
class GatewayState:
    serving: bool
    connections: tuple[ConnectionState, ...] = ()
    streams: int = 0
    subscribers: int = 0
    accounts: tuple[AccountState, ...] = ()
    rate_limit_headroom: dict[str, float] = field(default_factory=dict)
    cache_hits: int = 0
    cache_misses: int = 0
    upstream_calls: int = 0
    upstream_retries: int = 0
    ws_frames_rejected: int = 0
    ws_reconnects: int = 0
    queue_depth: int = 0
    conflations: int = 0
    evictions: int = 0
    limiter_waits: int = 0
    token_refreshes: int = 0

    def metrics(self) -> dict[str, float]:
        return {
            "ws_connections": sum(1 for c in self.connections if c.connected),
            "ws_topics": sum(len(c.topics) for c in self.connections),
            "streams_active": self.streams,
            "queue_depth": self.queue_depth,
            "token_refreshes": self.token_refreshes,
            "ws_reconnects": self.ws_reconnects,
            "conflations": self.conflations,
            "evictions": self.evictions,
            "limiter_waits": self.limiter_waits,
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "upstream_retries": self.upstream_retries,
        }
