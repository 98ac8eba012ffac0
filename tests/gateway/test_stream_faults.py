"""Streams under stress: slow consumers, garbage frames, token expiry, book consistency."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import grpc
import pytest
from alp.v3 import common_pb2, stream_pb2, stream_pb2_grpc, trading_pb2, trading_pb2_grpc

from gateway.app import Gateway
from gateway.sandbox import Sandbox
from tests.gateway.test_streams import eventually, first_message, place

BUY, SELL = common_pb2.ORDER_SIDE_BUY, common_pb2.ORDER_SIDE_SELL


def trade_frame(trade_id: int, pair: str = "BTC_USDT") -> str:
    return json.dumps(["t", int(time.time()), trade_id, pair, "0.1", "30000.5", "buy", "extra"])


@pytest.mark.slow  # 40,000 events at a steady pace
@pytest.mark.parametrize("gateway_overrides", [{"stream__queue_limit": 5000}])
async def test_slow_consumer_ends_alone_and_fast_one_keeps_up(
    gateway: Gateway, sandbox: Sandbox, gateway_overrides: dict[str, Any]
) -> None:
    target = f"127.0.0.1:{gateway.port}"
    options = [("grpc.http2.bdp_probe", 0), ("grpc.max_receive_message_length", 1 << 20)]
    async with (
        grpc.aio.insecure_channel(target, options=options) as slow_channel,
        grpc.aio.insecure_channel(target) as fast_channel,
    ):
        request = stream_pb2.StreamTradesRequest(pairs=["BTC_USDT"])
        slow = stream_pb2_grpc.StreamServiceStub(slow_channel).StreamTrades(request)
        fast = stream_pb2_grpc.StreamServiceStub(fast_channel).StreamTrades(request)
        await first_message(slow, predicate=lambda m: m.HasField("status"))
        await first_message(fast, predicate=lambda m: m.HasField("status"))
        received = 0
        latencies: list[float] = []

        async def read_fast(total: int) -> None:
            nonlocal received
            async for message in fast:
                received += len(message.trades)
                latencies.append(time.monotonic())
                if received >= total:
                    return

        total = 40000
        reader = asyncio.create_task(read_fast(total))
        for start in range(1, total + 1, 100):
            for trade_id in range(start, start + 100):
                await sandbox.inject_ws_frame(trade_frame(trade_id), topic="trade.BTC_USDT")
            await asyncio.sleep(0.01)  # ~10k events/s: a pace a healthy consumer follows easily
        await asyncio.wait_for(reader, 60)
        assert received == total  # nothing lost or duplicated for the consumer that keeps up
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in slow:
                pass
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too slow" in (info.value.details() or "")
    assert gateway.streams is not None and gateway.streams.evictions == 1


async def test_garbage_frames_do_not_disturb_streams(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway
) -> None:
    call = stream_pb2_grpc.StreamServiceStub(channel).StreamTrades(
        stream_pb2.StreamTradesRequest(pairs=["BTC_USDT"])
    )
    await first_message(call, predicate=lambda m: m.HasField("status"))
    for raw in (
        "not json",
        "[]",
        '{"a":1}',
        '["zz", 1, 2]',
        '["t", 1, "x"]',
        '["t",1,2,"BTC_USDT","abc","1","buy"]',
        "\u0000",
        "[" * 500,
    ):
        await sandbox.inject_ws_frame(raw, topic="trade.BTC_USDT")
    await sandbox.inject_ws_frame(trade_frame(424242), topic="trade.BTC_USDT")
    message = await first_message(call, predicate=lambda m: len(m.trades) > 0)
    assert [t.trade_id for t in message.trades] == [424242]
    assert message.trades[0].price == "30000.5"
    assert gateway.public_feed is not None
    stats = gateway.public_feed.codec_stats
    assert stats.malformed + stats.unknown >= 7 and stats.extra_elements >= 1
    call.cancel()


@pytest.mark.slow  # two renewals of a 2 s token
@pytest.mark.parametrize("gateway_overrides", [{"token__refresh_margin_s": 1.0}])
async def test_private_stream_survives_token_expiry(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway, gateway_overrides: dict[str, Any]
) -> None:
    sandbox.faults.update({"token_lifetime_s": 2.0})
    orders = stream_pb2_grpc.StreamServiceStub(channel).StreamOrderUpdates(
        stream_pb2.StreamOrderUpdatesRequest()
    )
    await first_message(orders, predicate=lambda m: m.HasField("status"))
    sockets = set(sandbox.ws.clients)
    seen: list[int] = []
    for renewal in range(3):  # an order before the first renewal of the 2 s token and after two
        if renewal:
            logins = sandbox.stats.ws_auth_commands
            await eventually(lambda n=logins: sandbox.stats.ws_auth_commands > n, within=10)
        order_id = await place(channel, BUY, "0.01", "20000")
        update = await first_message(
            orders, predicate=lambda m, wanted=order_id: any(o.order_id == wanted for o in m.orders)
        )
        seen.append(order_id)
        assert update.orders
    assert len(seen) == 3
    assert sandbox.stats.auth_calls >= 2  # the token itself was renewed
    assert sandbox.stats.ws_auth_commands >= 3
    assert set(sandbox.ws.clients) == sockets  # re-authenticated in place, never reconnected
    orders.cancel()


async def test_drops_during_resubscribe_leave_no_leaks(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway
) -> None:
    pairs = ["BTC_USDT", "ETH_USDT", "LTC_USDT"]
    calls = [
        stream_pb2_grpc.StreamServiceStub(channel).StreamTrades(
            stream_pb2.StreamTradesRequest(pairs=[p])
        )
        for p in pairs
        for _ in range(3)
    ]
    for call in calls:
        await first_message(call, predicate=lambda m: m.HasField("status"))
    for _ in range(5):
        dropped = set(sandbox.ws.clients)
        await sandbox.drop_ws_connections()
        # drop again as soon as the gateway is back: inside its resubscribe
        await eventually(lambda old=dropped: bool(set(sandbox.ws.clients) - old))
    await sandbox.drop_ws_connections()
    assert gateway.public_feed is not None
    feed = gateway.public_feed
    expected = sorted(f"trade.{p}" for p in pairs)

    def upstream_topics() -> list[str]:
        return sorted(t for conn in sandbox.ws.clients for t in conn.topics)

    await eventually(
        lambda: upstream_topics() == expected and all(feed.is_live(t) for t in expected),
        within=10,
    )
    assert upstream_topics() == expected  # each topic once upstream: no duplicate subscriptions
    assert sorted(t for ts in feed.connections().values() for t in ts) == expected
    await asyncio.sleep(0.3)
    assert upstream_topics() == expected  # and it stays that way
    await place(channel, SELL, "0.01", "30000", account="desk-b")
    await place(channel, BUY, "0.01", "30000")
    for call in calls[:3]:
        message = await first_message(call, predicate=lambda m: len(m.trades) > 0)
        assert message.trades[0].pair == "BTC_USDT"
    for call in calls:
        call.cancel()
    await eventually(lambda: not feed.connections())
    assert gateway.hub is not None and gateway.hub.consumer_count() == 0


BOOK_ACTIONS = ["buy", "sell", "cancel", "drop", "take", "publish"]


async def test_book_stream_matches_exchange_through_random_flow(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    import random

    rng = random.Random(11)
    trading = trading_pb2_grpc.TradingServiceStub(channel)
    call = stream_pb2_grpc.StreamServiceStub(channel).StreamOrderBook(
        stream_pb2.StreamOrderBookRequest(pair="BTC_USDT", depth=10)
    )
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}
    last = {"seq": 0}

    def apply(message: Any) -> None:
        for update in message.updates:
            assert update.sequence == last["seq"] + 1
            last["seq"] = update.sequence
            if update.snapshot:
                bids.clear()
                asks.clear()
            for side, levels in ((bids, update.bids), (asks, update.asks)):
                for level in levels:
                    if Decimal(level.amount) == 0:
                        side.pop(Decimal(level.price), None)
                    else:
                        side[Decimal(level.price)] = Decimal(level.amount)
        if bids and asks:
            assert max(bids) < min(asks), "consumer book crossed"

    def matches() -> bool:
        view = sandbox.exchange.order_book("BTC_USDT", 10, 10)
        return bids == dict(view.buy) and asks == dict(view.sell)

    async def settle() -> None:
        sandbox.publish_now()

        async def loop() -> None:
            async for message in call:
                apply(message)
                if matches():
                    return

        if not matches():
            await asyncio.wait_for(loop(), 10)

    await settle()
    open_ids: list[tuple[str, int]] = []
    for step in range(60):
        action = rng.choice(BOOK_ACTIONS)
        account = rng.choice(["demo", "desk-b"])
        price = str(29000 + rng.randint(0, 40) * 25)
        if action in ("buy", "sell"):
            side = BUY if action == "buy" else SELL
            try:
                reply = await trading.PlaceOrder(
                    trading_pb2.PlaceOrderRequest(
                        pair="BTC_USDT",
                        side=side,
                        limit=trading_pb2.LimitOrder(
                            base_amount=f"0.0{rng.randint(1, 9)}", limit_price=price
                        ),
                    ),
                    metadata=(("x-alp-account", account),),
                )
                open_ids.append((account, reply.order_id))
            except grpc.aio.AioRpcError:
                pass
        elif action == "cancel" and open_ids:
            account, order_id = open_ids.pop(rng.randrange(len(open_ids)))
            try:
                await trading.CancelOrders(
                    trading_pb2.CancelOrdersRequest(
                        order_ids=trading_pb2.OrderIdList(ids=[order_id])
                    ),
                    metadata=(("x-alp-account", account),),
                )
            except grpc.aio.AioRpcError as exc:  # filled meanwhile: ALP answers 1011
                assert exc.code() is grpc.StatusCode.NOT_FOUND
        elif action == "drop":
            await sandbox.drop_ws_connections()
        elif action == "take":
            sandbox.market.step(1)
        if step % 10 == 9 or action == "publish":
            await settle()
    await settle()
    assert matches()
    sandbox.exchange.check_invariants()
    call.cancel()


async def test_order_book_with_alp_down_is_unavailable_and_leaks_nothing(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway
) -> None:
    assert gateway.streams is not None
    gateway.streams._seed_timeout = 0.5
    sandbox.faults.update(
        {"error_rate": 1.0, "error_status": 503, "error_path_prefix": "/orderbook"}
    )
    call = stream_pb2_grpc.StreamServiceStub(channel).StreamOrderBook(
        stream_pb2.StreamOrderBookRequest(pair="BTC_USDT")
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in call:
            pass
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE and "snapshot" in (
        info.value.details() or ""
    )
    streams = gateway.streams
    await eventually(lambda: streams.keeper_count() == 0)
    sandbox.faults.update({"error_rate": 0.0})
    call = stream_pb2_grpc.StreamServiceStub(channel).StreamOrderBook(
        stream_pb2.StreamOrderBookRequest(pair="BTC_USDT")
    )
    first = await first_message(call, predicate=lambda m: len(m.updates) > 0)
    assert first.updates[0].snapshot and first.updates[0].sequence == 1
    call.cancel()
