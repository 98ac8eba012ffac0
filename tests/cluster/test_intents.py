"""Idempotency across a fleet: two gateways share their PlaceOrder intents through Redis."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import grpc
import pytest
from alp.v3 import common_pb2, trading_pb2, trading_pb2_grpc
from redis.asyncio import Redis

from gateway.app import Gateway
from gateway.cluster.intents import RedisIntents, redis_key
from gateway.core.idempotency import Decision
from gateway.sandbox import Sandbox, SandboxConfig
from tests.gateway.conftest import gateway_config
from tests.gateway.status_details import details_of


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def intent_redis() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (scripts/polyglot_deps.sh installs it)"
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.02)
    yield f"redis://127.0.0.1:{port}/0", proc
    proc.kill()
    proc.wait()


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxConfig(market=False)) as running:
        yield running


@pytest.fixture
async def members(
    sandbox: Sandbox, intent_redis: tuple[str, subprocess.Popen[bytes]]
) -> AsyncIterator[list[trading_pb2_grpc.TradingServiceStub]]:
    url, _ = intent_redis
    stubs = []
    async with (
        Gateway(gateway_config(sandbox)) as a,
        Gateway(gateway_config(sandbox)) as b,
    ):
        clients = []
        for gateway in (a, b):
            assert gateway.desk is not None
            client = Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
            clients.append(client)
            gateway.desk.intents = RedisIntents(client, lease_s=10.0)
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{a.port}") as ca,
            grpc.aio.insecure_channel(f"127.0.0.1:{b.port}") as cb,
        ):
            stubs = [trading_pb2_grpc.TradingServiceStub(c) for c in (ca, cb)]
            yield stubs
        for client in clients:
            await client.aclose()


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
    intent_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    a, _ = members
    _, proc = intent_redis
    proc.kill()
    proc.wait()
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


async def test_an_abandoned_intent_is_rechecked_after_its_lease(
    intent_redis: tuple[str, subprocess.Popen[bytes]],
) -> None:
    url, _ = intent_redis
    async with Redis.from_url(url) as client:
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
