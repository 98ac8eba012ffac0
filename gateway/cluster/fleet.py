"""Fleet: the Redis-backed pieces one gateway process shares with the other members.

Built by the composition root when `cluster.redis_url` is set; each piece falls back to a safe
local decision while Redis is unreachable (see the modules) and recovers by itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

from redis.asyncio import Redis

from gateway.cluster.intents import RedisIntents
from gateway.cluster.members import FleetMembers
from gateway.cluster.rate_budget import RedisBudget
from gateway.cluster.redis_conn import REDIS_ERRORS, connect
from gateway.cluster.tokens import SharedTokens
from gateway.cluster.topic_share import SharedFeed, UpstreamTopics
from gateway.core.token_policy import Secret
from gateway.exchange.ws_private import AccountFeed
from gateway.exchange.ws_public import PublicFeed
from gateway.supervisor import Supervisor


@dataclass
class Fleet:
    redis: Redis
    members: FleetMembers
    budget: RedisBudget
    intents: RedisIntents
    tokens: dict[str, SharedTokens] = field(default_factory=dict)

    @classmethod
    def open(cls, url: str, *, idempotency_window_s: float, order_lease_s: float) -> Fleet:
        redis = connect(url, client_name="alp-gateway")
        members = FleetMembers(redis)
        return cls(
            redis,
            members,
            RedisBudget(redis, members=members),
            RedisIntents(redis, window_s=idempotency_window_s, lease_s=order_lease_s),
        )

    def shared_tokens(
        self, account: str, api_key: str, api_secret: Secret, *, lease_s: float
    ) -> SharedTokens:
        tokens = SharedTokens(
            self.redis, account, api_key, api_secret, lease_s=lease_s, wait_s=lease_s + 2.0
        )
        self.tokens[account] = tokens
        return tokens

    def shared_feed(
        self,
        public: PublicFeed,
        private: Callable[[str], AccountFeed],
        *,
        accounts: tuple[str, ...],
        supervisor: Supervisor,
        lease_s: float,
        linger_s: float,
    ) -> SharedFeed:
        return SharedFeed(
            UpstreamTopics(public, private, accounts),
            self.redis,
            self.members.member_id,
            supervisor=supervisor,
            lease_s=lease_s,
            linger_s=linger_s,
        )

    def intents_degraded(self) -> bool:
        return self.intents.degraded

    async def close(self) -> None:
        """Leave the fleet (best effort: a member Redis cannot hear drops out by its TTL)."""
        with contextlib.suppress(*REDIS_ERRORS):
            await self.members.leave()
        await self.redis.aclose()
