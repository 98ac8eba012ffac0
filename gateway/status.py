"""A snapshot of what the running gateway holds, for GetStatus, metrics and tests (no secrets)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Health:
    """The verdict of the upstream checks, and what each health service answers from it.

    Health services are not per account, so the account services (AccountService, TradingService)
    stay SERVING while at least one configured account works; which account ALP refuses, and why,
    is in `refused` (GatewayState.accounts, metrics, log lines). A 429 from ALP is not an outage:
    it proves ALP reachable, and leaves the accounts' verdicts as they were.
    """

    checked: bool = False  # a first upstream check has finished
    reachable: bool = False  # ALP answered the last check (a 429 counts as an answer)
    draining: bool = False
    reason: str = "first upstream check pending"  # why not serving (no secrets: ALP's words)
    accounts: tuple[str, ...] = ()  # configured ALP accounts
    refused: Mapping[str, str] = field(default_factory=dict)  # account -> ALP's refusal
    failing_loops: tuple[str, ...] = ()  # supervised background work failing again and again

    @property
    def serving(self) -> bool:
        """Overall ("") and the market data services: ALP answers."""
        return self.checked and self.reachable and not self.draining and not self.failing_loops

    @property
    def accounts_serving(self) -> bool:
        """AccountService and TradingService: ALP answers and accepts at least one account."""
        return self.serving and any(a not in self.refused for a in self.accounts)

    def why(self) -> str:
        """One short line for /readyz: "serving" or why not."""
        if self.draining:
            return "draining"
        if self.serving:
            return "serving"
        if self.failing_loops and self.checked and self.reachable:
            return "background work failing: " + ", ".join(self.failing_loops[:5])
        return self.reason

    def checked_as(self, reachable: bool, reason: str, refused: Mapping[str, str | None]) -> Health:
        """After a check: `refused` maps account -> ALP's refusal, "" accepted, None unknown."""
        merged = dict(self.refused)
        for account, refusal in refused.items():
            if refusal is None:
                continue  # rate limited or no answer: the last verdict stands
            if refusal:
                merged[account] = refusal
            else:
                merged.pop(account, None)
        return replace(self, checked=True, reachable=reachable, reason=reason, refused=merged)


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
    refused: str = ""  # ALP's refusal of this account's key at the last check ("" = accepted)


@dataclass(frozen=True)
class LoopState:
    name: str
    state: str
    restarts: int
    last_error: str


@dataclass(frozen=True)
class FleetState:
    enabled: bool = False
    member_id: str = ""
    members: int = 0
    degraded: bool = False
    topics_held: tuple[str, ...] = ()
    topics_followed: int = 0
    topic_leader: str = ""


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
    events_unencodable: int = 0
    events_oversize: int = 0
    services: Mapping[str, bool] = field(default_factory=dict)  # health service -> SERVING
    loops: tuple[LoopState, ...] = ()
    fleet: FleetState = FleetState()

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
            "events_unencodable": self.events_unencodable,
            "events_oversize": self.events_oversize,
            "fleet_topics_held": len(self.fleet.topics_held),
            "fleet_topics_followed": self.fleet.topics_followed,
        }
