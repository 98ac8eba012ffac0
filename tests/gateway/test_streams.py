"""StreamService end to end: shared upstream subscriptions, private updates, statuses, cleanup."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import grpc
from alp.v3 import common_pb2, stream_pb2, stream_pb2_grpc, trading_pb2, trading_pb2_grpc

from gateway.app import Gateway
from gateway.sandbox import Sandbox

BUY = common_pb2.ORDER_SIDE_BUY
SELL = common_pb2.ORDER_SIDE_SELL


def streams(channel: grpc.aio.Channel) -> stream_pb2_grpc.StreamServiceStub:
    return stream_pb2_grpc.StreamServiceStub(channel)


async def eventually(check: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def first_message(call: Any, *, predicate: Callable[[Any], bool], within: float = 5.0) -> Any:
    async def read() -> Any:
        async for message in call:
            if predicate(message):
                return message
        raise AssertionError("stream ended")

    return await asyncio.wait_for(read(), within)


async def place(
    channel: grpc.aio.Channel,
    side: int,
    amount: str,
    price: str,
    account: str = "demo",
    pair: str = "BTC_USDT",
) -> int:
    reply = await trading_pb2_grpc.TradingServiceStub(channel).PlaceOrder(
        trading_pb2.PlaceOrderRequest(
            pair=pair,
            side=side,
            limit=trading_pb2.LimitOrder(base_amount=amount, limit_price=price),
        ),
        metadata=(("x-alp-account", account),),
    )
    return reply.order_id


async def test_many_subscribers_share_one_upstream_subscription(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway
) -> None:
    calls = [
        streams(channel).StreamTrades(stream_pb2.StreamTradesRequest(pairs=["BTC_USDT"]))
        for _ in range(500)
    ]
    statuses = await asyncio.gather(
        *(first_message(c, predicate=lambda m: m.HasField("status"), within=20) for c in calls)
    )
    assert all(s.status.state == stream_pb2.STREAM_STATE_SUBSCRIBED for s in statuses)
    assert sandbox.stats.ws_subscribe_commands["trade.BTC_USDT"] == 1
    await place(channel, SELL, "0.01", "30000", account="desk-b")
    await place(channel, BUY, "0.01", "30000")
    received = await asyncio.gather(
        *(first_message(c, predicate=lambda m: len(m.trades) > 0, within=20) for c in calls)
    )
    assert all(Decimal(m.trades[0].price) == Decimal("30000") for m in received)
    for call in calls:
        call.cancel()
    await eventually(lambda: sandbox.stats.ws_unsubscribe_commands["trade.BTC_USDT"] == 1)
    assert gateway.hub is not None and gateway.hub.consumer_count() == 0
    assert gateway.streams is not None and gateway.streams.active_streams == 0
    feed = gateway.public_feed
    assert feed is not None
    # once the feed holds no topic and no socket, nothing is left that could unsubscribe again
    await eventually(lambda: feed.listener_count() == 0 and not feed.connections())
    assert sandbox.stats.ws_unsubscribe_commands["trade.BTC_USDT"] == 1


async def test_topics_spread_over_connections_of_twenty(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway
) -> None:
    pairs = [p.name for p in sandbox.exchange.pairs()]
    topics = [
        stream_pb2.Topic(channel=kind, pair=pair)
        for pair in pairs
        for kind in (
            stream_pb2.CHANNEL_TRADES,
            stream_pb2.CHANNEL_BOOK_DIFFS,
            stream_pb2.CHANNEL_DEPTH,
        )
    ][:45]
    assert len(topics) == 45
    call = streams(channel).Subscribe(stream_pb2.SubscribeRequest(topics=topics))
    assert gateway.public_feed is not None
    await eventually(lambda: sum(len(t) for t in gateway.public_feed.connections().values()) == 45)
    sizes = sorted(len(t) for t in gateway.public_feed.connections().values())
    assert sizes == [5, 20, 20]
    await eventually(lambda: sum(sandbox.stats.ws_subscribe_commands.values()) == 45)
    assert max(sandbox.stats.topics_per_connection()) <= 20
    call.cancel()
    await eventually(lambda: not gateway.public_feed.connections())


async def test_tickers_ride_on_one_ticker_star(channel: grpc.aio.Channel, sandbox: Sandbox) -> None:
    calls = [
        streams(channel).StreamTickers(stream_pb2.StreamTickersRequest(pairs=[pair]))
        for pair in ("BTC_USDT", "ETH_USDT", "BTC_USDT")
    ] + [streams(channel).StreamTickers(stream_pb2.StreamTickersRequest())]
    await asyncio.gather(
        *(first_message(c, predicate=lambda m: m.HasField("status")) for c in calls)
    )
    assert sandbox.stats.ws_subscribe_commands["ticker.*"] == 1
    assert not any(
        t.startswith("ticker.") and t != "ticker.*" for t in sandbox.stats.ws_subscribe_commands
    )
    await place(channel, SELL, "0.01", "30000", account="desk-b")
    await place(channel, BUY, "0.01", "30000")
    sandbox.publish_now()
    eth_only = await first_message(calls[1], predicate=lambda m: len(m.tickers) > 0, within=10)
    assert {t.pair for t in eth_only.tickers} <= {"ETH_USDT"}
    btc = await first_message(calls[0], predicate=lambda m: len(m.tickers) > 0, within=10)
    assert {t.pair for t in btc.tickers} == {"BTC_USDT"}
    for call in calls:
        call.cancel()


async def test_private_updates_follow_place_order(channel: grpc.aio.Channel) -> None:
    orders = streams(channel).StreamOrderUpdates(stream_pb2.StreamOrderUpdatesRequest())
    wallets = streams(channel).StreamWalletUpdates(
        stream_pb2.StreamWalletUpdatesRequest(currencies=["USDT"])
    )
    await first_message(orders, predicate=lambda m: m.HasField("status"))
    await first_message(wallets, predicate=lambda m: m.HasField("status"))
    order_id = await place(channel, BUY, "0.01", "25000")
    update = await first_message(orders, predicate=lambda m: len(m.orders) > 0)
    assert update.orders[0].order_id == order_id
    assert update.orders[0].status == common_pb2.ORDER_STATUS_OPEN
    assert Decimal(update.orders[0].limit_price) == Decimal("25000")
    wallet = await first_message(wallets, predicate=lambda m: len(m.wallets) > 0)
    assert wallet.wallets[0].currency == "USDT"
    assert Decimal(wallet.wallets[0].reserve) == Decimal("250")
    orders.cancel()
    wallets.cancel()


async def test_reconnect_emits_status_and_stream_continues(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway
) -> None:
    call = streams(channel).StreamTrades(stream_pb2.StreamTradesRequest(pairs=["BTC_USDT"]))
    await first_message(call, predicate=lambda m: m.HasField("status"))
    for _ in range(3):
        await sandbox.drop_ws_connections()
        reconnecting = await first_message(call, predicate=lambda m: m.HasField("status"))
        assert reconnecting.status.state == stream_pb2.STREAM_STATE_RECONNECTING
        resynced = await first_message(call, predicate=lambda m: m.HasField("status"))
        assert resynced.status.state == stream_pb2.STREAM_STATE_RESYNCED
    await place(channel, SELL, "0.01", "30000", account="desk-b")
    await place(channel, BUY, "0.01", "30000")
    trade = await first_message(call, predicate=lambda m: len(m.trades) > 0)
    assert trade.trades[0].pair == "BTC_USDT"
    assert gateway.public_feed is not None
    assert gateway.public_feed.refcount("trade.BTC_USDT") == 1
    call.cancel()


async def test_order_book_stream_equals_the_exchange(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    await place(channel, BUY, "0.5", "29000", account="desk-b")
    call = streams(channel).StreamOrderBook(stream_pb2.StreamOrderBookRequest(pair="BTC_USDT"))
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}
    last_seq = 0

    async def apply_until(check: Callable[[], bool]) -> None:
        nonlocal last_seq

        async def loop() -> None:
            nonlocal last_seq
            async for message in call:
                for update in message.updates:
                    assert update.sequence == last_seq + 1
                    last_seq = update.sequence
                    if update.snapshot:
                        bids.clear()
                        asks.clear()
                    for side, levels in ((bids, update.bids), (asks, update.asks)):
                        for level in levels:
                            if Decimal(level.amount) == 0:
                                side.pop(Decimal(level.price), None)
                            else:
                                side[Decimal(level.price)] = Decimal(level.amount)
                if check():
                    return

        await asyncio.wait_for(loop(), 10)

    def matches() -> bool:
        view = sandbox.exchange.order_book("BTC_USDT")
        return bids == dict(view.buy) and asks == dict(view.sell)

    await apply_until(matches)
    await place(channel, SELL, "0.2", "29500")
    await place(channel, BUY, "0.1", "29100")
    sandbox.publish_now()
    await apply_until(matches)
    if bids and asks:
        assert max(bids) < min(asks)
    call.cancel()
