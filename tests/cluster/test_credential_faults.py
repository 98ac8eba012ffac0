"""Credentials and rate limits under faults a review found unhandled: a slow /auth (slots spent
before the token, waiters past their deadline, cancelled callers killing the refresh), a Redis
restarted without its data, one that refuses writes, one that hangs, an absurd Retry-After.

Real servers only: the sandbox (fault injection), real redis-server processes (tests/cluster/conftest.py)
and, for an upstream answer the sandbox never gives, a tiny aiohttp server on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from gateway.core import rest_requests
from gateway.core.token_policy import Secret
from gateway.errors import RateLimited, UpstreamError
from gateway.exchange.limiter import RateLimiter
from gateway.exchange.rest_client import AccountSession, RestClient, RetryPolicy
from gateway.exchange.token_manager import TokenManager
from gateway.sandbox import Sandbox
from tests.cluster.conftest import RedisServer
from tests.cluster.fleet import fleet

pytestmark = pytest.mark.slow  # fault windows of seconds each; `make test` runs them

ACCOUNT, API_KEY, API_SECRET = "demo", "demo-key", "demo-secret"


def private_sends(sandbox: Sandbox) -> list[float]:
    return sorted(t for t, _, p in sandbox.stats.request_log if p.startswith("/api/v3/accounts"))


def busiest(times: list[float], window: float = 1.0) -> int:
    """Most sends within any `window` seconds (half-open, as the sandbox counts)."""
    best, first = 0, 0
    for last, t in enumerate(times):
        while t - times[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


@contextlib.asynccontextmanager
async def single_member(
    sandbox: Sandbox, *, private_rps: float = 0.0, timeout_s: float = 5.0
) -> AsyncIterator[tuple[RestClient, AccountSession]]:
    """One gateway process without a fleet: RestClient + RateLimiter + TokenManager."""
    secret = Secret(API_SECRET)
    async with aiohttp.ClientSession() as session:
        client = RestClient(
            sandbox.rest_url,
            session,
            limiter=RateLimiter(public_rps=0, private_rps=private_rps, trading_reserve=0.0),
            retry=RetryPolicy(attempts=1),
            default_timeout_s=timeout_s,
        )

        async def authenticate() -> str:
            return await client.authenticate(API_KEY, secret)

        tokens = TokenManager(ACCOUNT, API_KEY, authenticate, refresh_margin_s=60.0)
        yield client, AccountSession(ACCOUNT, API_KEY, secret, tokens)


async def settle(coro: object) -> BaseException | object:
    try:
        return await coro  # type: ignore[misc]  # any awaitable
    except Exception as exc:  # the outcome is what the test inspects
        return exc


# -- 1. a slot is taken before the token: a slow /auth turns held slots into one burst ------------


@pytest.mark.parametrize("shared", [False, True], ids=["one-process", "fleet-budget"])
async def test_slow_auth_turns_rate_slots_into_a_burst(
    sandbox: Sandbox, redis_url: str, shared: bool
) -> None:
    """rest_client.call acquires the limiter slot, then _send awaits tokens.token(): while /auth is
    slow, every caller's slot is recorded at acquire time and all of them send together when the
    token arrives. ALP (the sandbox, 2/s sliding window) then answers 429s."""
    limit = 2
    sandbox.faults.update({"rate_limit_per_s": limit, "delay_s": 2.5, "delay_path_prefix": "/auth"})
    if shared:
        async with fleet(sandbox, redis_url, size=1, private_rps=limit) as members:
            await members[0].members.join()
            client, account = members[0].client, members[0].account
            outcomes = await asyncio.gather(
                *(
                    settle(
                        client.call(
                            rest_requests.balances(),
                            account=account,
                            deadline=time.monotonic() + 10.0,
                        )
                    )
                    for _ in range(6)
                )
            )
    else:
        async with single_member(sandbox, private_rps=limit) as (client, account):
            outcomes = await asyncio.gather(
                *(
                    settle(
                        client.call(
                            rest_requests.balances(),
                            account=account,
                            deadline=time.monotonic() + 10.0,
                        )
                    )
                    for _ in range(6)
                )
            )
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert sandbox.stats.rate_limited == 0, (
        f"{sandbox.stats.rate_limited} x 429; busiest second: "
        f"{busiest(private_sends(sandbox))} sends (limit {limit}); failures: {failures!r}"
    )
    assert busiest(private_sends(sandbox)) <= limit


# -- 2. the token wait ignores the caller's deadline, and queued waiters retry /auth one by one ---


async def test_token_waiters_are_held_past_their_deadline_by_a_slow_auth(sandbox: Sandbox) -> None:
    """TokenManager.token() has no deadline and its lock queues callers: each waiter, after the
    previous /auth failed (timed out), starts its own /auth. With /auth timing out at 1 s, three
    callers with a 0.8 s deadline finish after ~1, ~2 and ~3 s."""
    sandbox.faults.update({"delay_s": 1.5, "delay_path_prefix": "/auth"})
    async with single_member(sandbox, timeout_s=1.0) as (client, account):
        loop = asyncio.get_running_loop()
        started = loop.time()
        ended: list[float] = []

        async def one() -> None:
            with contextlib.suppress(UpstreamError):
                await client.call(
                    rest_requests.balances(), account=account, deadline=time.monotonic() + 0.8
                )
            ended.append(loop.time() - started)

        await asyncio.gather(*(one() for _ in range(3)))
    assert max(ended) <= 0.8 + 0.4, (
        f"callers with a 0.8 s deadline ended after {[round(e, 2) for e in ended]} s; "
        f"/auth calls: {sandbox.stats.auth_calls}"
    )


# -- 3. Redis restarted without persistence: the fleet window is forgotten, nothing notices ------


async def test_redis_restart_without_persistence_forgets_the_fleet_window(
    sandbox: Sandbox, own_redis_server: RedisServer
) -> None:
    """The budget's sorted set lives only in Redis. A restart between two calls is hidden by the
    client's one retry (the dead pooled connection reconnects), so RedisBudget never enters its
    recovery mode and grants a whole second window within the same second."""
    limit = 4
    sandbox.faults.update({"rate_limit_per_s": limit})
    async with fleet(sandbox, own_redis_server.url, size=1, private_rps=limit) as members:
        member = members[0]
        await member.members.join()
        await member.tokens.token()

        async def burst() -> list[object]:
            return await asyncio.gather(
                *(
                    settle(
                        member.client.call(
                            rest_requests.balances(),
                            account=member.account,
                            deadline=time.monotonic() + 0.2,  # take a slot now or not at all
                        )
                    )
                    for _ in range(limit)
                )
            )

        first = await burst()
        assert not any(isinstance(o, BaseException) for o in first)
        await asyncio.to_thread(own_redis_server.stop)
        await asyncio.to_thread(own_redis_server.start)
        restarted = time.monotonic()
        second = await burst()
        elapsed = time.monotonic() - restarted
        assert member.budget is not None
    granted = [o for o in second if not isinstance(o, RateLimited)]
    assert sandbox.stats.rate_limited == 0 and busiest(private_sends(sandbox)) <= limit, (
        f"after a restart {len(granted)} more sends within {elapsed:.2f} s; "
        f"busiest second {busiest(private_sends(sandbox))} (limit {limit}); "
        f"429s: {sandbox.stats.rate_limited}; budget outages seen: {member.budget.outages}"
    )


# -- 4. Redis answers PING but refuses the budget script: the member never sends again ----------


async def test_redis_refusing_writes_stops_the_member_instead_of_its_share(
    sandbox: Sandbox, own_redis_server: RedisServer
) -> None:
    """A Redis that answers PING but refuses writes (a read-only replica after a failover; also
    OOM under maxmemory, or WRONGTYPE): RedisBudget's probe sees PONG, `_answered` ends the
    outage, the script fails, `_lost` starts a new outage and a new one-span pause. Probes come
    every probe_s (0.5 s) < one span (1.1 s), so the pause never ends: the member sends nothing,
    where the README promises `limit / members last seen` after one window."""
    limit = 4
    async with fleet(sandbox, own_redis_server.url, size=1, private_rps=limit) as members:
        member = members[0]
        assert await member.members.join() == 1
        await member.tokens.token()
        # the Redis becomes a replica of a master that is not there: reads and PING work
        await member.redis.execute_command("REPLICAOF", "127.0.0.1", "1")
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + 4.0
        sent: list[float] = []
        refused: list[BaseException] = []

        async def caller() -> None:
            while loop.time() < stop_at:
                try:
                    await member.client.call(
                        rest_requests.balances(),
                        account=member.account,
                        deadline=time.monotonic() + 1.5,
                    )
                    sent.append(loop.time())
                except RateLimited as exc:
                    refused.append(exc)
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(caller() for _ in range(3)))
        assert member.budget is not None
        outages = member.budget.outages
        with contextlib.suppress(Exception):
            await member.redis.execute_command("REPLICAOF", "NO", "ONE")
    # one span of silence, then ~limit per second for the remaining ~2.9 s: expect several sends
    assert len(sent) >= limit, (
        f"{len(sent)} sends in 4 s (share {limit}/s after a 1.1 s pause); "
        f"{len(refused)} RateLimited; budget outages counted: {outages}"
    )


# -- 5. a Redis that stops answering (blackholed, not refused) holds callers past their deadline --


async def test_a_hung_redis_holds_rate_limited_callers_past_their_deadline(
    sandbox: Sandbox, own_redis_server: RedisServer
) -> None:
    """RateLimiter.acquire awaits RedisBudget.acquire without its deadline; that call holds the
    pool's lock over a Redis round trip (socket timeout, then the client's one retry) and, while
    degraded, repeats a PING probe every probe_s under the same lock. With a SIGSTOPped Redis and
    a 0.25 s client timeout, callers with a 0.3 s deadline come back long after it."""
    async with fleet(
        sandbox, own_redis_server.url, size=1, private_rps=10, redis_timeout_s=0.25
    ) as members:
        member = members[0]
        await member.members.join()
        await member.tokens.token()
        process = own_redis_server._process
        assert process is not None
        os.kill(process.pid, signal.SIGSTOP)
        try:
            loop = asyncio.get_running_loop()
            stop_at = loop.time() + 3.0
            late: list[float] = []

            async def caller() -> None:
                while loop.time() < stop_at:
                    deadline = time.monotonic() + 0.3
                    with contextlib.suppress(UpstreamError, RateLimited):
                        await member.client.call(
                            rest_requests.balances(), account=member.account, deadline=deadline
                        )
                    late.append(time.monotonic() - deadline)
                    await asyncio.sleep(0.01)

            await asyncio.gather(*(caller() for _ in range(3)))
        finally:
            os.kill(process.pid, signal.SIGCONT)
    assert max(late) <= 0.15, (
        f"{len(late)} calls, {sum(1 for x in late if x > 0.15)} ended > 0.15 s after their "
        f"0.3 s deadline; worst {max(late):.2f} s late"
    )


# -- 6. an upstream Retry-After the parser should not accept pauses a pool for ever -------------


async def test_a_non_numeric_retry_after_does_not_wedge_the_pool() -> None:
    """parse_error_body reads Retry-After with Decimal(), which accepts "Infinity" (and "1e9");
    RateLimiter.pause() takes it uncapped, so one 429 refuses every later call of the pool
    (RateLimited at once) for ever. RFC 9110 delay-seconds is a plain non-negative integer."""
    answers = {"n": 0}

    async def handler(request: web.Request) -> web.Response:
        answers["n"] += 1
        if answers["n"] == 1:
            return web.json_response(
                {"code": "TOO_MANY_REQUESTS", "message": "slow down"},
                status=429,
                headers={"Retry-After": "Infinity"},
            )
        return web.json_response({"time": 1_700_000_000_000})

    app = web.Application()
    app.router.add_get("/api/v3/time", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession() as session:
            client = RestClient(
                f"http://127.0.0.1:{port}/api/v3",
                session,
                limiter=RateLimiter(public_rps=10, private_rps=0),
                retry=RetryPolicy(attempts=1),
            )
            with contextlib.suppress(UpstreamError):
                await client.call(rest_requests.server_time())
            await asyncio.sleep(1.5)  # longer than the 1 s a 429 without usable Retry-After costs
            outcome = await settle(
                client.call(rest_requests.server_time(), deadline=time.monotonic() + 5.0)
            )
    finally:
        await runner.cleanup()
    assert not isinstance(outcome, BaseException), (
        f"1.5 s after one 429 the pool still refuses: {outcome!r}; server saw {answers['n']} calls"
    )


# -- 7. the caller doing the single-flight /auth is cancelled: the refresh dies with it ----------


async def test_cancelled_callers_never_let_a_slow_auth_finish(sandbox: Sandbox) -> None:
    """TokenManager.token() runs POST /auth inside the first caller's task. A caller that goes
    away (gRPC deadline or client cancel: its task is cancelled) takes the refresh down with it,
    the next waiter starts a new /auth, and so on: while /auth takes longer than callers wait,
    the account never gets a token although ALP answers every /auth."""
    sandbox.faults.update({"delay_s": 1.2, "delay_path_prefix": "/auth"})
    async with single_member(sandbox, timeout_s=5.0) as (client, account):
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + 4.0
        succeeded: list[float] = []
        cancelled = 0

        async def caller() -> None:
            nonlocal cancelled
            while loop.time() < stop_at:
                try:
                    async with asyncio.timeout(0.8):  # the caller gives up (its task is cancelled)
                        await client.call(rest_requests.balances(), account=account)
                    succeeded.append(loop.time())
                except TimeoutError:
                    cancelled += 1

        await asyncio.gather(*(caller() for _ in range(3)))
    assert succeeded, (
        f"no call succeeded in 4 s with /auth answering in 1.2 s; {cancelled} callers cancelled, "
        f"/auth answered {sandbox.stats.auth_calls} times, token held: "
        f"{account.tokens.current() is not None}"
    )
