"""RedisBudget against a real Redis: the Lua window is SlidingWindow's rule, members change nothing,
and a member that loses Redis keeps to its share and comes back by itself."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from gateway.cluster.members import ASSUMED_MEMBERS, FleetMembers
from gateway.cluster.rate_budget import RedisBudget, share_of, span_us
from gateway.cluster.redis_conn import connect
from gateway.core.rate_limit import Lane, SlidingWindow
from tests.cluster.conftest import RedisServer

EPOCH_US = 1_780_000_000_000_000  # about what Redis TIME says in microseconds


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[SlidingWindow, list[tuple[int, Lane]]]:
    limit = draw(st.integers(1, 8))
    reserve = draw(st.integers(0, limit - 1))
    window_ms = draw(st.integers(1, 1500))
    margin_ms = draw(st.integers(0, 200))
    window = SlidingWindow(limit, window_ms / 1000, margin_ms / 1000, reserve)
    span = span_us(window)
    gaps = st.one_of(
        st.just(0),
        st.integers(0, span // max(1, limit)),
        st.integers(span - 2, span + 2).filter(lambda g: g >= 0),
        st.integers(0, 2 * span),
    )
    arrivals = draw(st.lists(st.tuples(gaps, st.sampled_from(Lane)), min_size=1, max_size=40))
    return window, arrivals


async def replay(
    url: str, window: SlidingWindow, arrivals: list[tuple[int, Lane]]
) -> list[tuple[int, Lane, int, float]]:
    """Each arrival through the Lua script at its time, and the pure window's wait for it."""
    client = connect(url)
    budget = RedisBudget(client, namespace=f"prop-{uuid.uuid4().hex}")
    span = span_us(window)
    # the pure rule in microseconds, so both sides count the same integers
    pure = SlidingWindow(window.limit, span - 1.0, 1.0, window.trade_reserve)
    seen: list[tuple[int, Lane, int, float]] = []
    now = EPOCH_US
    try:
        for gap, lane in arrivals:
            now += gap
            expected = pure.wait(float(now), lane)
            answer = await budget.ask("acct", lane, window, at_us=now)
            if expected <= 0:
                pure.record(float(now))
            seen.append((now, lane, answer, expected))
    finally:
        await client.aclose()
    return seen


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenarios())
def test_the_lua_window_is_the_sliding_window_rule(
    redis_server: RedisServer, scenario: tuple[SlidingWindow, list[tuple[int, Lane]]]
) -> None:
    window, arrivals = scenario
    seen = asyncio.run(replay(redis_server.url, window, arrivals))
    span = span_us(window)
    granted: list[int] = []
    for now, lane, answer, expected in seen:
        # the same decision as SlidingWindow, and a wait rounded up to the millisecond
        if expected <= 0:
            assert answer == 0
        else:
            assert answer == max(1, math.ceil(expected / 1000))
        if answer == 0:
            held = sum(1 for t in granted if t > now - span)
            cap = window.limit - window.trade_reserve if lane is Lane.READ else window.limit
            assert held < cap  # a READ never takes the trading reserve
            granted.append(now)
    # any interval of `span` holds at most `limit` recorded sends
    for i, t in enumerate(granted):
        assert sum(1 for u in granted[: i + 1] if u > t - span) <= window.limit


async def test_server_time_path_grants_exactly_the_limit(redis_client: Redis) -> None:
    budget = RedisBudget(redis_client, namespace="burst")
    window = SlidingWindow(5, 1.0, 0.1, 2)
    answers = [await budget.acquire("a", Lane.TRADE, window, 0.0) for _ in range(8)]
    assert answers[:5] == [0.0] * 5
    assert all(0 < wait <= 1.1 for wait in answers[5:])
    # reads were capped at limit - reserve = 3 all along
    reads = RedisBudget(redis_client, namespace="burst-reads")
    answers = [await reads.acquire("a", Lane.READ, window, 0.0) for _ in range(4)]
    assert answers[:3] == [0.0] * 3 and answers[3] > 0
    # the public pool and another account are other windows
    assert await budget.acquire(None, Lane.TRADE, window, 0.0) == 0.0
    assert await budget.acquire("b", Lane.TRADE, window, 0.0) == 0.0
    keys = sorted(
        k.decode() if isinstance(k, bytes) else k for k in await redis_client.keys("burst:*")
    )
    assert keys == [
        "burst:budget-epoch",  # marks a Redis that kept its data (see the restart test)
        "burst:budget:account:a",
        "burst:budget:account:b",
        "burst:budget:public",
    ]


async def test_joining_and_leaving_members_change_nothing(redis_url: str) -> None:
    window = SlidingWindow(6, 1.0, 0.1, 0)
    clients = [connect(redis_url) for _ in range(4)]
    try:
        members = [FleetMembers(c, namespace="join", ttl_s=5.0, interval_s=1.0) for c in clients]
        budgets = [
            RedisBudget(c, namespace="join", members=m)
            for c, m in zip(clients, members, strict=True)
        ]
        for m in members[:2]:
            await m.join()
        granted = [await b.acquire("a", Lane.READ, window, 0.0) for b in budgets[:2] * 2]
        assert granted == [0.0] * 4
        assert await members[2].join() == 3
        assert await members[3].join() == 4
        granted = [await b.acquire("a", Lane.READ, window, 0.0) for b in budgets]
        assert granted[:2] == [0.0, 0.0]
        assert all(w > 0 for w in granted[2:])  # 6 in the window: the newcomers get no extra
        await members[0].leave()
        assert await members[1].count() == 3
        assert await budgets[1].acquire("a", Lane.READ, window, 0.0) > 0  # nor does a departure
        assert not any(b.degraded for b in budgets)
    finally:
        for c in clients:
            await c.aclose()


async def test_fleet_members_expire_without_heartbeat(redis_client: Redis) -> None:
    quick = FleetMembers(redis_client, namespace="ttl", ttl_s=0.3, interval_s=0.1)
    steady = FleetMembers(redis_client, namespace="ttl", ttl_s=0.3, interval_s=0.1)
    assert quick.live == ASSUMED_MEMBERS and quick.last_count is None
    await quick.join()
    assert await steady.join() == 2
    for _ in range(5):  # `steady` keeps beating, `quick` stopped
        await asyncio.sleep(0.1)
        await steady.heartbeat()
    assert steady.last_count == 1 and steady.live == 1


def test_share_of_keeps_the_fleet_within_the_limit() -> None:
    window = SlidingWindow(10, 1.0, 0.1, 5)
    assert share_of(window, 1) == SlidingWindow(10, 1.0, 0.1, 5)
    third = share_of(window, 3)
    assert (third.limit, third.window_s, third.trade_reserve) == (3, 1.0, 2)
    assert share_of(window, 2).limit == 5
    sparse = share_of(SlidingWindow(2, 1.0, 0.1, 1), 3)  # fewer sends than members
    assert (sparse.limit, sparse.window_s, sparse.trade_reserve) == (1, 1.5, 0)
    for members in range(1, 12):
        share = share_of(window, members)
        assert share.limit * members <= window.limit or share.limit == 1
        assert 0 <= share.trade_reserve < share.limit


async def test_a_member_without_redis_keeps_its_share_and_recovers(
    own_redis_server: RedisServer,
) -> None:
    client = connect(own_redis_server.url, timeout_s=0.2)
    budget = RedisBudget(client, namespace="down", probe_s=0.5)
    window = SlidingWindow(10, 1.0, 0.1, 0)

    async def grants(now: float, n: int) -> list[float]:
        return [await budget.acquire("a", Lane.READ, window, now) for _ in range(n)]

    try:
        assert await grants(100.0, 1) == [0.0]  # via Redis
        own_redis_server.stop()
        # lost: nothing for one span, the fleet's sends it cannot see age out
        [wait] = await grants(100.2, 1)
        assert budget.degraded and budget.outages == 1 and wait == pytest.approx(1.1)
        [wait] = await grants(101.0, 1)
        assert wait == pytest.approx(0.3)
        # then its share: no member count seen, 2 assumed: 5 of 10
        answers = await grants(101.3, 6)
        assert answers[:5] == [0.0] * 5 and answers[5] == pytest.approx(1.1)
        assert budget.fallback_grants == 5
        own_redis_server.start()
        assert (await grants(101.4, 1))[0] > 0  # before the next probe: still alone
        assert budget.degraded
        # the probe finds Redis; its 5 sends made alone still count for one span + probe_s
        [wait] = await grants(101.9, 1)
        assert not budget.degraded and budget.outages == 1
        assert wait == pytest.approx(0.5)
        answers = await grants(102.5, 6)
        assert answers[:5] == [0.0] * 5 and answers[5] > 0  # the share, though Redis has room
        # recovered: the fleet window alone (Redis holds the 5 sends made just now)
        answers = await grants(103.6, 6)
        assert answers[:5] == [0.0] * 5 and answers[5] > 0
        assert await client.zcard("down:budget:account:a") == 10
    finally:
        await client.aclose()


@pytest.mark.parametrize("url", ["http://127.0.0.1:6379", "127.0.0.1:6379"])
def test_connect_refuses_other_schemes(url: str) -> None:
    from gateway.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        connect(url)
    assert info.value.setting == "cluster.redis_url"


def test_passwords_never_show() -> None:
    from gateway.cluster.redis_conn import redacted

    url = "rediss://fleet:hunter2-secret@redis.internal:6380/1"
    assert redacted(url) == "rediss://***@redis.internal:6380/1"
    assert redacted("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    client = connect(url)
    assert "hunter2" not in repr(client) and "hunter2" not in repr(client.connection_pool)
    assert "hunter2" not in repr(RedisBudget(client))


async def test_the_limiter_keeps_its_local_rules_on_a_shared_budget(redis_client: Redis) -> None:
    from gateway.errors import RateLimited
    from gateway.exchange.limiter import RateLimiter

    budget = RedisBudget(redis_client, namespace="rules")
    limiter = RateLimiter(public_rps=0, private_rps=2, trading_reserve=0.5, shared=budget)
    loop = asyncio.get_running_loop()
    key = "rules:budget:account:a"
    # reads may use limit - reserve = 1 send a window; the next read does not fit a short deadline
    await limiter.acquire("a", loop.time() + 1, Lane.READ)
    with pytest.raises(RateLimited) as info:
        await limiter.acquire("a", loop.time() + 0.2, Lane.READ)
    assert info.value.bucket == "account:a"
    # an order still fits (the reserve), and the fleet window holds both sends
    await limiter.acquire("a", loop.time() + 1, Lane.TRADE)
    assert await redis_client.zcard(key) == 2
    # after a 429 nobody asks the fleet until the pause is over
    limiter.pause("a", 0.3)
    before = await redis_client.zcard(key)
    started = loop.time()
    await asyncio.sleep(0.1)
    assert await redis_client.zcard(key) == before
    await limiter.acquire("a", started + 5, Lane.RECONCILE)
    assert loop.time() - started >= 0.3
    assert limiter.degraded is False


async def test_the_heartbeat_loop_survives_an_outage(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.cluster")
    client = connect(own_redis_server.url, timeout_s=0.2)
    member = FleetMembers(client, namespace="beat", ttl_s=1.0, interval_s=0.05)
    beat = asyncio.create_task(member.run())
    try:
        await asyncio.sleep(0.2)
        assert member.last_count == 1
        own_redis_server.stop()
        await asyncio.sleep(0.4)
        assert not beat.done() and member.live == 1  # the last count seen is kept
        own_redis_server.start()
        await asyncio.sleep(0.3)
        assert not beat.done() and await member.count() == 1  # registered again by itself
    finally:
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        await client.aclose()
    warnings = [r for r in caplog.records if "heartbeat failed" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not once per beat
    assert any("works again" in r.getMessage() for r in caplog.records)
