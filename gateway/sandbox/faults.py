"""Fault injection for tests and demos: delays, error statuses, rate limits, token lifetime."""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

ERROR_STATUSES = (429, 500, 502, 503, 504)


@dataclass
class FaultSettings:
    delay_s: float = 0.0  # before handling a REST request
    delay_after_s: float = 0.0  # after handling it (the change happened; the answer is late)
    delay_path_prefix: str = ""  # delays apply only to paths starting with this ("" = all)
    error_rate: float = 0.0  # fraction of REST requests answered with `error_status`
    error_status: int = 503
    error_path_prefix: str = ""  # only requests whose path starts with this ("" = all)
    # the error (or a connection reset) comes AFTER the request was applied: the change happened
    error_after_apply: bool = False
    reset_after_apply: bool = False  # answer nothing and drop the connection (paths as errors)
    rate_limit_per_s: float = 0.0  # per API key (private calls); 0 = off
    token_lifetime_s: float | None = None  # overrides the configured lifetime
    seed: int = 1
    rng: random.Random = field(default_factory=lambda: random.Random(1), repr=False)

    def update(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            if key in ("rng",) or not hasattr(self, key):
                raise ValueError(f"unknown fault setting {key!r}")
            if key == "error_status" and int(value) not in ERROR_STATUSES:
                raise ValueError(f"error_status must be one of {ERROR_STATUSES}")
            current = getattr(self, key)
            setattr(self, key, type(current)(value) if current is not None else float(value))
        if "seed" in changes:
            self.rng = random.Random(self.seed)

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "rng"}

    def delays(self, path: str) -> bool:
        return path.startswith("/api/v3" + self.delay_path_prefix)

    def should_fail(self, path: str) -> bool:
        if self.error_rate <= 0 or not path.startswith("/api/v3" + self.error_path_prefix):
            return False
        return self.rng.random() < self.error_rate


class RateLimiter:
    """Sliding one-second window per key."""

    def __init__(self) -> None:
        self._hits: dict[str, deque[float]] = {}

    def allow(self, key: str, limit_per_s: float, now: float) -> bool:
        if limit_per_s <= 0:
            return True
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - 1.0:
            hits.popleft()
        if len(hits) >= limit_per_s:
            return False
        hits.append(now)
        return True


@dataclass
class SandboxStats:
    auth_calls: int = 0
    rest_requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    ws_connections_total: int = 0
    ws_open: int = 0
    ws_subscribe_commands: Counter[str] = field(default_factory=Counter)
    ws_unsubscribe_commands: Counter[str] = field(default_factory=Counter)
    ws_auth_commands: int = 0
    ws_closed_slow: int = 0
    injected_errors: int = 0
    rate_limited: int = 0  # 429s from the per-key rate limit (not injected ones)
    topics_by_connection: dict[int, set[str]] = field(default_factory=dict)
    # (monotonic time, method, path) of the latest REST requests, for rate measurements
    request_log: deque[tuple[float, str, str]] = field(default_factory=lambda: deque(maxlen=10000))

    def topics_per_connection(self) -> list[int]:
        return [len(t) for t in self.topics_by_connection.values()]
