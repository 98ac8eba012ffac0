"""Idempotency across a fleet: two gateways with one `cluster.redis_url` share their PlaceOrder
intents, their tokens and their rate budget."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import grpc
import pytest
from alp.v3 import common_pb2, trading_pb2, trading_pb2_grpc
from redis.asyncio import Redis

from gateway.app import Gateway
from gateway.cluster.intents import RedisIntents, redis_key
from gateway.core.idempotency import Decision
from gateway.sandbox import Sandbox
from tests.cluster.conftest import RedisServer
from tests.gateway.conftest import gateway_config
from tests.gateway.status_details import details_of


@pytest.fixture
async def members(
    sandbox: Sandbox, own_redis_server: RedisServer
) -> AsyncIterator[list[trading_pb2_grpc.TradingServiceStub]]:
    """Two gateway processes' worth of members: one sandbox, one Redis, `cluster.redis_url`."""
    config = gateway_config(sandbox, cluster__redis_url=own_redis_server.url)
    async with Gateway(config) as a, Gateway(config) as b:
        assert a.fleet is not None and b.fleet is not None
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as ca,
            grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as cb,
        ):
            yield [trading_pb2_grpc.TradingServiceStub(c) for c in (ca, cb)]


def order(price: str, cid: str) -> trading_pb2.PlaceOrderRequest:
    return trading_pb2.PlaceOrderRequest(
        pair="BTC_USDT",
        side=common_pb2.ORDER_SIDE_BUY,
        client_order_id=cid,
        limit=trading_pb2.LimitOrder(base_amount="0.01", limit_price=price),
    )


def held(sandbox: Sandbox, price: str) -> list[int]:
    return [o.id for o in sandbox.exchange.orders(1001, 1000) if o.price == Decimal(price)]


async def test_a_retry_on_another_member_replays(
    members: list[trading_pb2_grpc.TradingServiceStub], sandbox: Sandbox
) -> None:
    a, b = members
    first = await a.PlaceOrder(order("20001", "fleet-1"), timeout=5)
    again = await b.PlaceOrder(order("20001", "fleet-1"), timeout=5)
    assert again.order_id == first.order_id and held(sandbox, "20001") == [first.order_id]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await b.PlaceOrder(order("20002", "fleet-1"), timeout=5)  # same key, other order
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert held(sandbox, "20002") == []


async def test_simultaneous_duplicates_on_two_members_make_one_order(
    members: list[trading_pb2_grpc.TradingServiceStub], sandbox: Sandbox
) -> None:
    a, b = members
    sandbox.faults.update({"delay_after_s": 0.5, "delay_path_prefix": "/trading"})
    replies = await asyncio.gather(
        *(stub.PlaceOrder(order("20003", "fleet-2"), timeout=5) for stub in (a, b, a, b))
    )
    assert len({r.order_id for r in replies}) == 1
    assert held(sandbox, "20003") == [replies[0].order_id]


async def test_redis_down_refuses_keyed_orders_and_sends_nothing(
    members: list[trading_pb2_grpc.TradingServiceStub],
    sandbox: Sandbox,
    own_redis_server: RedisServer,
) -> None:
    a, _ = members
    own_redis_server.stop()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await a.PlaceOrder(order("20004", "fleet-3"), timeout=5)
    details = details_of(info.value)
    assert details.code is grpc.StatusCode.UNAVAILABLE
    assert details.error_info is not None and details.error_info.reason == "IDEMPOTENCY_UNAVAILABLE"
    assert held(sandbox, "20004") == []
    plain = trading_pb2.PlaceOrderRequest(
        pair="BTC_USDT",
        side=common_pb2.ORDER_SIDE_BUY,
        limit=trading_pb2.LimitOrder(base_amount="0.01", limit_price="20005"),
    )
    assert (await a.PlaceOrder(plain, timeout=5)).order_id > 0  # no key: no store needed


async def test_an_abandoned_intent_is_rechecked_after_its_lease(redis_url: str) -> None:
    async with Redis.from_url(redis_url) as client:
        dying = RedisIntents(client, lease_s=-4.9)  # a lease of 0.1 s: its member "dies"
        key = ("svc", "demo", "orphan-1")
        decision, _ = await dying.begin(key, "fp", time.time())
        assert decision is Decision.PROCEED
        survivor = RedisIntents(client)
        decision, _ = await survivor.begin(key, "fp", time.time())
        assert decision is Decision.WAIT
        await asyncio.sleep(0.2)
        decision, _ = await survivor.begin(key, "fp", time.time())
        assert decision is Decision.RECHECK  # look at ALP's list; never send a second time
        raw = b"".join(k for k in await client.keys("*"))
        assert b"orphan-1" not in raw and redis_key(key).encode() in raw  # keys hold no caller data


async def test_members_hold_one_token_and_report_the_fleet(
    sandbox: Sandbox, own_redis_server: RedisServer
) -> None:
    from alp.v3 import account_pb2, account_pb2_grpc, gateway_service_pb2, gateway_service_pb2_grpc

    config = gateway_config(sandbox, cluster__redis_url=own_redis_server.url)
    async with Gateway(config) as a, Gateway(config) as b:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as ca,
            grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as cb,
        ):
            await asyncio.gather(
                *(
                    account_pb2_grpc.AccountServiceStub(c).ListBalances(
                        account_pb2.ListBalancesRequest()
                    )
                    for c in (ca, cb, ca, cb)
                )
            )
            assert sandbox.stats.auth_calls == 1  # one POST /auth for the whole fleet
            stub = gateway_service_pb2_grpc.GatewayServiceStub(ca)
            for _ in range(100):  # the next heartbeat (every 2 s) counts the second member
                status = await stub.GetStatus(gateway_service_pb2.GetStatusRequest())
                if status.fleet.members == 2:
                    break
                await asyncio.sleep(0.05)
            assert status.fleet.enabled and status.fleet.members == 2
            assert not status.fleet.degraded and status.fleet.member_id
            assert {loop.name for loop in status.loops} >= {"health", "fleet:members"}
            own_redis_server.stop()
            with pytest.raises(grpc.aio.AioRpcError):
                await trading_pb2_grpc.TradingServiceStub(ca).PlaceOrder(
                    order("20009", "fleet-9"), timeout=5
                )
            status = await gateway_service_pb2_grpc.GatewayServiceStub(ca).GetStatus(
                gateway_service_pb2.GetStatusRequest()
            )
            assert status.fleet.degraded and status.serving  # market data keeps flowing


async def test_a_record_on_a_forgotten_intent_creates_nothing(redis_url: str) -> None:
    """Another member verified the order absent and forgot the intent; the first sender's late
    record must not bring back a hash without fingerprint or TTL (every later retry would be
    refused as a CONFLICT, for ever)."""
    async with Redis.from_url(redis_url) as client:
        store = RedisIntents(client)
        key = ("svc", "demo", "gone-1")
        assert (await store.begin(key, "fp", time.time()))[0] is Decision.PROCEED
        await store.forget(key)
        await store.placed(key, (7,), reconciled=False)
        await store.unknown(key, (7,), time.time())
        assert not await client.exists(redis_key(key))
        assert (await store.begin(key, "fp", time.time()))[0] is Decision.PROCEED


async def test_the_in_flight_lease_covers_the_callers_remaining_time(redis_url: str) -> None:
    async with Redis.from_url(redis_url) as client:
        short = RedisIntents(client, lease_s=-4.9)  # 0.1 s unless the call asks for more
        key = ("svc", "demo", "long-1")
        assert (await short.begin(key, "fp", time.time(), lease_s=1.0))[0] is Decision.PROCEED
        await asyncio.sleep(0.3)  # past the store's own lease, within the caller's time
        assert (await short.begin(key, "fp", time.time()))[0] is Decision.WAIT
