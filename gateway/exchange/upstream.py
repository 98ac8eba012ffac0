"""Upstream: the gateway's view of ALP — accounts, the REST client, a public micro-cache, pair rules."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.core import models, rest_parsing, rest_requests
from gateway.core.rate_limit import Lane
from gateway.core.rest_requests import RestRequest
from gateway.errors import UnknownAccount, UpstreamError
from gateway.exchange.rest_client import AccountSession, RestClient
from gateway.exchange.single_flight import SingleFlight

MISS_REFRESH_S = 10.0  # youngest pair list that a miss refreshes


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    shared: int = 0  # callers that joined an in-flight identical request


class Upstream:
    """Everything RPC handlers need from ALP, with the per-account state kept in one place.

    Public GETs go through a short-lived cache with single-flight: concurrent identical calls make
    one upstream request, and for `public_cache_ttl_s` after it the answer is reused (0 = off).
    """

    def __init__(
        self,
        client: RestClient,
        accounts: Mapping[str, AccountSession],
        default_account: str,
        *,
        public_cache_ttl_s: float = 0.0,
        pairs_ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.accounts = dict(accounts)
        self.default_account = default_account
        self._ttl = public_cache_ttl_s
        self._pairs_ttl = pairs_ttl_s
        self._clock = clock
        self._cache: dict[tuple[str, tuple[tuple[str, str], ...]], tuple[float, Any]] = {}
        self._flights: SingleFlight[tuple[str, tuple[tuple[str, str], ...]], Any] = SingleFlight()
        self._rules: dict[str, models.Pair] = {}
        self._rules_at = -1e18
        self._rules_lock = asyncio.Lock()
        self.cache_stats = CacheStats()

    def account(self, name: str | None) -> AccountSession:
        chosen = name or self.default_account
        session = self.accounts.get(chosen)
        if session is None:
            raise UnknownAccount(chosen or "(none configured)")
        return session

    async def public(self, request: RestRequest, *, deadline: float, request_id: str = "") -> Any:
        if self._ttl <= 0 or not request.idempotent:
            return await self.client.call(request, deadline=deadline, request_id=request_id)
        key = (request.path, request.query)
        cached = self._cache.get(key)
        now = self._clock()
        if cached is not None and cached[0] > now:
            self.cache_stats.hits += 1
            return cached[1]
        if self._flights.running(key):
            self.cache_stats.shared += 1
        else:
            self.cache_stats.misses += 1

        async def fetch() -> Any:
            payload = await self.client.call(request, deadline=deadline, request_id=request_id)
            self._cache[key] = (self._clock() + self._ttl, payload)
            return payload

        return await self._flights.run(key, fetch)

    async def private(
        self,
        account: AccountSession,
        request: RestRequest,
        *,
        deadline: float,
        request_id: str = "",
        lane: Lane = Lane.READ,
    ) -> Any:
        return await self.client.call(
            request, account=account, deadline=deadline, request_id=request_id, lane=lane
        )

    async def pair_rules(self, pair: str, *, deadline: float) -> models.Pair | None:
        """Rules of `pair` from a cached GET /pairs; None when ALP cannot be asked right now.

        Raises KeyError when the pair list is known and does not contain `pair`. A pair missing
        from a list older than MISS_REFRESH_S asks ALP again first: a pair listed since the last
        read must not be refused for a whole `pairs_ttl_s`, and unknown pairs cost at most one
        GET /pairs per MISS_REFRESH_S.
        """
        if not await self._read_rules(self._pairs_ttl, deadline):
            return self._rules.get(pair)
        if pair not in self._rules and not await self._read_rules(MISS_REFRESH_S, deadline):
            return None
        if pair not in self._rules:
            raise KeyError(pair)
        return self._rules[pair]

    async def _read_rules(self, max_age_s: float, deadline: float) -> bool:
        """Refresh the pair list if it is older than `max_age_s`; False when ALP cannot answer."""
        if self._clock() - self._rules_at <= max_age_s:
            return True
        async with self._rules_lock:
            if self._clock() - self._rules_at <= max_age_s:
                return True
            try:
                payload = await self.client.call(rest_requests.pairs(), deadline=deadline)
                pairs = rest_parsing.parse_pairs(payload)
            except UpstreamError:
                return False
            self._rules = {p.name: p for p in pairs}
            self._rules_at = self._clock()
            return True
