"""A fleet of gateway members in one process: each its own Redis client, HTTP session, RestClient,
RateLimiter (on a RedisBudget) and TokenManager (on SharedTokens), as separate processes would be."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from redis.asyncio import Redis

from gateway.cluster.members import FleetMembers
from gateway.cluster.rate_budget import RedisBudget
from gateway.cluster.redis_conn import connect
from gateway.cluster.tokens import SharedTokens
from gateway.core.token_policy import Secret
from gateway.exchange.limiter import RateLimiter
from gateway.exchange.rest_client import AccountSession, RestClient, RetryPolicy
from gateway.exchange.token_manager import TokenManager
from gateway.sandbox import Sandbox

ACCOUNT, API_KEY, API_SECRET = "demo", "demo-key", "demo-secret"


@dataclass
class Member:
    redis: Redis
    client: RestClient
    limiter: RateLimiter
    budget: RedisBudget | None
    members: FleetMembers
    shared: SharedTokens | None
    tokens: TokenManager
    account: AccountSession


@contextlib.asynccontextmanager
async def fleet(
    sandbox: Sandbox,
    redis_url: str,
    size: int = 3,
    *,
    private_rps: float = 0.0,
    margin_s: float = 0.1,
    trading_reserve: float = 0.0,
    shared_budget: bool = True,
    shared_tokens: bool = True,
    one_token_store: bool = False,
    redis_timeout_s: float = 0.25,
    refresh_margin_s: float = 60.0,
) -> AsyncIterator[list[Member]]:
    secret = Secret(API_SECRET)
    async with contextlib.AsyncExitStack() as stack:
        store: SharedTokens | None = None
        result: list[Member] = []
        for index in range(size):
            redis = connect(redis_url, timeout_s=redis_timeout_s)
            stack.push_async_callback(redis.aclose)
            members = FleetMembers(redis, namespace="fleet", member_id=f"member-{index}")
            budget = (
                RedisBudget(redis, namespace="fleet", members=members) if shared_budget else None
            )
            limiter = RateLimiter(
                public_rps=0,
                private_rps=private_rps,
                trading_reserve=trading_reserve,
                margin_s=margin_s,
                shared=budget,
            )
            session = aiohttp.ClientSession()
            stack.push_async_callback(session.close)
            client = RestClient(
                sandbox.rest_url,
                session,
                limiter=limiter,
                retry=RetryPolicy(attempts=1),
                default_timeout_s=5.0,
            )
            if shared_tokens and (store is None or not one_token_store):
                store = SharedTokens(redis, ACCOUNT, API_KEY, secret, namespace="fleet")
            shared = store if shared_tokens else None

            async def authenticate(client: RestClient = client) -> str:
                return await client.authenticate(API_KEY, secret)

            tokens = TokenManager(
                ACCOUNT,
                API_KEY,
                authenticate,
                refresh_margin_s=refresh_margin_s,
                shared=shared,
            )
            account = AccountSession(ACCOUNT, API_KEY, secret, tokens)
            result.append(Member(redis, client, limiter, budget, members, shared, tokens, account))
        yield result
