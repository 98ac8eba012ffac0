"""SharedTokens against a real Redis and the sandbox's /auth: one token per account for the fleet,
one re-authentication per 401, nothing usable in Redis, and each member alone while Redis is down."""

from __future__ import annotations

import asyncio
import logging
import math

import pytest
from redis.asyncio import Redis

from gateway.cluster.redis_conn import connect
from gateway.cluster.tokens import SharedTokens
from gateway.core import rest_requests
from gateway.core.token_policy import Secret
from gateway.errors import UpstreamTimeout
from gateway.exchange.token_manager import HeldToken
from gateway.sandbox import Sandbox
from tests.cluster.conftest import RedisServer
from tests.cluster.fleet import API_KEY, API_SECRET, fleet


@pytest.mark.parametrize("one_token_store", [True, False], ids=["one-store", "store-per-member"])
async def test_thirty_concurrent_requests_make_one_auth(
    sandbox: Sandbox, redis_url: str, one_token_store: bool
) -> None:
    async with fleet(sandbox, redis_url, one_token_store=one_token_store) as members:
        tokens = await asyncio.gather(*(members[i % 3].tokens.token() for i in range(30)))
        assert sandbox.stats.auth_calls == 1
        assert len(set(tokens)) == 1
        assert sum(m.tokens.refreshes for m in members) == 1


async def test_a_401_anywhere_costs_the_fleet_one_auth(sandbox: Sandbox, redis_url: str) -> None:
    async with fleet(sandbox, redis_url) as members:
        first = await members[0].tokens.token()
        assert [await m.tokens.token() for m in members[1:]] == [first, first]
        # one member is told 401: it drops the token for everyone, one /auth replaces it
        await members[0].tokens.invalidate(first)
        second = await members[0].tokens.token()
        assert second != first and sandbox.stats.auth_calls == 2
        # the others learn on their own 401 and take the replacement without authenticating
        for member in members[1:]:
            await member.tokens.invalidate(first)
            assert await member.tokens.token() == second
        assert sandbox.stats.auth_calls == 2


async def test_real_401s_after_a_revocation_cost_one_auth(sandbox: Sandbox, redis_url: str) -> None:
    async with fleet(sandbox, redis_url) as members:
        for member in members:
            await member.client.call(rest_requests.balances(), account=member.account)
        assert sandbox.stats.auth_calls == 1
        sandbox.authority.revoke_all()  # as after a key rotation at ALP: every token refused
        await asyncio.gather(
            *(
                m.client.call(rest_requests.balances(), account=m.account)
                for m in members
                for _ in range(5)
            )
        )
        assert sandbox.stats.auth_calls == 2
        assert sum(m.client.stats.reauth_on_401 for m in members) >= 3


async def test_redis_holds_nothing_usable(
    sandbox: Sandbox, redis_url: str, redis_client: Redis
) -> None:
    async with fleet(sandbox, redis_url) as members:
        token = await members[0].tokens.token()
        await members[1].tokens.token()
    _, payload, signature = token.split(".")
    needles = [token.encode(), payload.encode(), signature.encode(), API_SECRET.encode()]
    keys = [key async for key in redis_client.scan_iter(match="*")]
    assert keys, "the fleet stored nothing"
    for key in keys:
        dumped = await redis_client.dump(key)
        assert isinstance(dumped, bytes)
        blobs = [key, dumped]
        if await redis_client.type(key) == b"hash":
            blobs += [b for pair in (await redis_client.hgetall(key)).items() for b in pair]
        for blob in blobs:
            for needle in needles:
                assert needle not in blob
            assert API_KEY.encode() not in blob


async def test_a_token_sealed_with_another_secret_is_replaced(
    sandbox: Sandbox, redis_url: str, redis_client: Redis
) -> None:
    async with fleet(sandbox, redis_url) as members:
        first = await members[0].tokens.token()
        intruder = SharedTokens(
            redis_client, "demo", API_KEY, Secret("not-the-secret"), namespace="fleet"
        )
        # same key, wrong secret: cannot open what is stored
        assert await intruder._read() is None
        await intruder._write(HeldToken("forged.jwt.value", 4e9, 1e9))
        # the genuine members cannot open the forgery either: they authenticate and replace it
        second = await members[1].tokens.token()
        assert second not in (first, "forged.jwt.value")
        assert sandbox.stats.auth_calls == 2


@pytest.mark.slow
async def test_one_auth_per_token_lifetime_across_the_fleet(
    sandbox: Sandbox, redis_url: str
) -> None:
    lifetime, duration = 1.2, 3.5
    sandbox.faults.update({"token_lifetime_s": lifetime})
    async with fleet(sandbox, redis_url, refresh_margin_s=60.0) as members:
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + duration

        async def keep_calling(index: int) -> None:
            while loop.time() < stop_at:
                await members[index].tokens.token()
                await asyncio.sleep(0.01)

        await asyncio.gather(*(keep_calling(i % 3) for i in range(9)))
    # refreshed a quarter of a lifetime early at most: one /auth per 0.75 lifetime, fleet-wide
    assert sandbox.stats.auth_calls <= math.ceil(duration / (0.75 * lifetime)) + 1
    assert sandbox.stats.auth_calls == sum(m.tokens.refreshes for m in members)


async def test_a_dead_refresher_blocks_the_others_only_for_its_lease(redis_client: Redis) -> None:
    store = SharedTokens(redis_client, "demo", API_KEY, Secret(API_SECRET), lease_s=0.3, wait_s=2.0)
    await redis_client.set(store.lease_key, "a member that died", px=300)
    fetched: list[str] = []

    async def fetch() -> HeldToken:
        fetched.append("x")
        return HeldToken("a.b.c", 4e9, 1e9)

    loop = asyncio.get_running_loop()
    started = loop.time()
    held = await store.obtain(fetch, lambda held: True)
    assert held is not None and held.token == "a.b.c" and fetched == ["x"]
    assert 0.2 < loop.time() - started < 1.5
    # a waiter's patience is bounded: it gives up with an expected error, saying nothing secret
    impatient = SharedTokens(redis_client, "demo", API_KEY, Secret(API_SECRET), wait_s=0.2)
    await redis_client.delete(store.key)
    await redis_client.set(store.lease_key, "busy", px=5000)
    with pytest.raises(UpstreamTimeout) as info:
        await impatient.obtain(fetch, lambda held: True)
    assert API_SECRET not in str(info.value)


async def test_without_redis_each_member_authenticates_alone_then_shares_again(
    sandbox: Sandbox, own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    own_redis_server.stop()
    async with fleet(sandbox, own_redis_server.url) as members:
        tokens = await asyncio.gather(*(members[i % 3].tokens.token() for i in range(30)))
        assert sandbox.stats.auth_calls == 3 and len(set(tokens)) == 3  # one /auth per member
        assert all(m.shared is not None and m.shared.degraded for m in members)
        own_redis_server.start()
        for member, token in zip(members, tokens[:3], strict=True):
            await member.tokens.invalidate(token)  # each needs a new token now
        fresh = await asyncio.gather(*(members[i % 3].tokens.token() for i in range(30)))
        assert sandbox.stats.auth_calls == 4 and len(set(fresh)) == 1  # one for the fleet again
        assert not any(m.shared is not None and m.shared.degraded for m in members)
        text = caplog.text + "".join(repr(m.shared) + repr(m.tokens) for m in members)
        for secret in (*tokens, *fresh, API_SECRET):
            assert secret not in text
        outages = [r for r in caplog.records if "token store" in r.getMessage()]
        assert len([r for r in outages if r.levelno == logging.WARNING]) == 3  # once per member
        assert repr(HeldToken(fresh[0], 1.0, 0.0)).count(fresh[0]) == 0


async def test_no_redis_url_leaks_credentials() -> None:
    client = connect("redis://user:pa55word@127.0.0.1:1/0", timeout_s=0.1)
    store = SharedTokens(client, "demo", API_KEY, Secret(API_SECRET))
    try:

        async def fetch() -> HeldToken:
            return HeldToken("a.b.c", 4e9, 1e9)

        assert await store.obtain(fetch, lambda held: True) is None  # down: the caller goes alone
        assert "pa55word" not in repr(store) and API_SECRET not in repr(store)
    finally:
        await client.aclose()
