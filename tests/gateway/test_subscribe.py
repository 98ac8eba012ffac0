"""Subscribe: every channel kind in one stream, per-topic policies (conflate, resnapshot, lossless).

The first tests drive a PER_TOPIC Delivery with scripted offers; the rest run over real sockets
against the sandbox and read what a consumer reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import grpc
import pytest
from alp.v3 import common_pb2, stream_pb2, stream_pb2_grpc

from gateway.app import Gateway
from gateway.errors import SlowConsumer
from gateway.rpc import stream_encode as enc
from gateway.rpc.delivery import Delivery, Lane, Policy
from gateway.sandbox import Sandbox
from tests.gateway.test_streams import eventually, place

BUY, SELL = common_pb2.ORDER_SIDE_BUY, common_pb2.ORDER_SIDE_SELL
SUBSCRIBED = stream_pb2.STREAM_STATE_SUBSCRIBED
FILLED = common_pb2.ORDER_STATUS_FILLED
C = stream_pb2  # channel enum values: C.CHANNEL_TRADES, ...
SLOW_OPTIONS = [("grpc.http2.bdp_probe", 0), ("grpc.max_receive_message_length", 1 << 20)]


# -- PER_TOPIC delivery, scripted ------------------------------------------------------------------
def _event(kind: int, message: Any) -> bytes:
    return enc.subscribe_chunk(kind, message.SerializeToString())


def _trade(trade_id: int) -> bytes:
    return _event(enc.KIND_TRADE, stream_pb2.TradeEvent(trade_id=trade_id))


def _ticker(pair: str, close: int) -> bytes:
    return _event(enc.KIND_TICKER, stream_pb2.TickerUpdate(pair=pair, close=str(close)))


def _book(sequence: int, *, snapshot: bool = False) -> bytes:
    update = stream_pb2.OrderBookUpdate(pair="BTC_USDT", sequence=sequence, snapshot=snapshot)
    return _event(enc.KIND_ORDER_BOOK, update)


def _per_topic(limit: int) -> Delivery:
    return Delivery(
        "subscribe", Policy.PER_TOPIC, limit=limit, skipped_field=enc.SUBSCRIBE_SKIPPED_FIELD
    )


async def _next(messages: AsyncIterator[bytes]) -> stream_pb2.SubscribeResponse:
    raw = await asyncio.wait_for(anext(messages), 2)
    return stream_pb2.SubscribeResponse.FromString(raw)


def _summary(message: stream_pb2.SubscribeResponse) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for event in message.events:
        kind = event.WhichOneof("event")
        if kind == "trade":
            out.append((kind, event.trade.trade_id))
        elif kind == "ticker":
            out.append((kind, (event.ticker.pair, event.ticker.close)))
        elif kind == "order_book":
            out.append((kind, (event.order_book.sequence, event.order_book.snapshot)))
        else:
            out.append((kind, None))
    return out


async def test_keyed_topics_conflate_per_kind_and_pair_lossless_ones_keep_everything() -> None:
    delivery = _per_topic(limit=3)
    delivery.offer(_trade(1))
    for close in range(100):  # far more than `limit`: conflated entries never overflow
        delivery.offer(_ticker("BTC_USDT", close), key=(enc.KIND_TICKER, "BTC_USDT"))
    delivery.offer(_trade(2))
    delivery.offer(_ticker("ETH_USDT", 7), key=(enc.KIND_TICKER, "ETH_USDT"))
    # same pair, another kind: its own key
    depth = stream_pb2.DepthSnapshot(pair="BTC_USDT", total_asks="1")
    delivery.offer(_event(enc.KIND_DEPTH, depth), key=(enc.KIND_DEPTH, "BTC_USDT"))
    delivery.offer(_ticker("BTC_USDT", 100), key=(enc.KIND_TICKER, "BTC_USDT"))
    delivery.offer(_trade(3))
    assert delivery.conflated == 100
    messages = delivery.messages()
    message = await _next(messages)
    # newest per key, moved to where it arrived: a subsequence of the arrival order
    assert _summary(message) == [
        ("trade", 1),
        ("trade", 2),
        ("ticker", ("ETH_USDT", "7")),
        ("depth", None),
        ("ticker", ("BTC_USDT", "100")),
        ("trade", 3),
    ]
    assert message.skipped == 100
    delivery.offer(_ticker("BTC_USDT", 101), key=(enc.KIND_TICKER, "BTC_USDT"))
    assert (await _next(messages)).skipped == 0  # skipped counts since the previous message


async def test_a_lossless_topic_overflowing_ends_the_stream() -> None:
    delivery = _per_topic(limit=3)
    for close in range(10):
        delivery.offer(_ticker("BTC_USDT", close), key=(enc.KIND_TICKER, "BTC_USDT"))
    for trade_id in range(5):
        delivery.offer(_trade(trade_id))
    with pytest.raises(SlowConsumer) as info:
        await _next(delivery.messages())
    assert info.value.lost == 5
    assert "too slow on subscribe" in str(info.value)


async def test_statuses_are_lossless_events_of_the_stream() -> None:
    delivery = _per_topic(limit=10)
    delivery.offer(_trade(1))
    delivery.offer_status(enc.subscribe_status_message(enc.status_payload("reconnecting", ("t",))))
    delivery.offer(_ticker("BTC_USDT", 1), key=(enc.KIND_TICKER, "BTC_USDT"))
    messages = delivery.messages()
    assert [_summary(await _next(messages)) for _ in range(3)] == [
        [("trade", 1)],
        [("status", None)],
        [("ticker", ("BTC_USDT", "1"))],
    ]


async def test_a_book_lane_resnapshots_inside_the_stream_and_never_ends_it() -> None:
    delivery = _per_topic(limit=4)
    snapshots: list[int] = []

    def resnapshot() -> list[bytes]:
        snapshots.append(1)
        return [_book(100, snapshot=True)]

    own = Delivery("order_book.BTC_USDT", Policy.RESNAPSHOT, limit=4, resnapshot=resnapshot)
    lane = Lane(delivery, own)
    lane.offer(_book(1, snapshot=True))
    delivery.offer(_trade(1))
    for sequence in range(2, 5):
        lane.offer(_book(sequence))
    assert not snapshots  # 4 pending: at the limit, not over it
    delivery.offer(_trade(2))
    lane.offer(_book(5))  # the 5th: the backlog gives way to one fresh snapshot
    lane.offer(_book(101))
    lane.offer_status(enc.subscribe_status_message(enc.status_payload("resynced", ("x",))))
    assert snapshots == [1] and delivery.resnapshots == 1
    messages = delivery.messages()
    message = await _next(messages)
    assert _summary(message) == [
        ("trade", 1),
        ("trade", 2),
        ("order_book", (100, True)),
        ("order_book", (101, False)),
    ]
    assert message.skipped == 5  # the four dropped updates and the one the snapshot replaced
    status = await _next(messages)
    assert status.events[0].status.state == stream_pb2.STREAM_STATE_RESYNCED
    lane.end(RuntimeError("refused"))  # the lane ends its stream
    with pytest.raises(RuntimeError):
        await _next(messages)


def test_a_lane_belongs_to_a_per_topic_stream() -> None:
    own = Delivery("book", Policy.RESNAPSHOT, limit=4, resnapshot=list)
    with pytest.raises(ValueError):
        Lane(Delivery("trades", Policy.LOSSLESS, limit=4), own)
    with pytest.raises(ValueError):
        Lane(_per_topic(4), Delivery("trades", Policy.LOSSLESS, limit=4))


# -- over real sockets -----------------------------------------------------------------------------
def topic(channel: int, pair: str = "", depth: int = 0) -> stream_pb2.Topic:
    return stream_pb2.Topic(channel=channel, pair=pair, depth=depth)  # type: ignore[arg-type]


def subscribe(channel: grpc.aio.Channel, topics: list[stream_pb2.Topic]) -> Any:
    return stream_pb2_grpc.StreamServiceStub(channel).Subscribe(
        stream_pb2.SubscribeRequest(topics=topics), metadata=(("x-alp-account", "demo"),)
    )


class Reader:
    """Reads a Subscribe call in the background: every event by kind, statuses, skipped."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.events: list[stream_pb2.SubscribeEvent] = []
        self.skipped = 0
        self.messages = 0
        self.error: BaseException | None = None
        self._task = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.call:
                self.messages += 1
                self.skipped += message.skipped
                self.events.extend(message.events)
        except (Exception, asyncio.CancelledError) as exc:  # kept for the test to look at
            self.error = exc

    def of(self, kind: str) -> list[Any]:
        return [getattr(e, kind) for e in self.events if e.WhichOneof("event") == kind]

    def subscribed(self) -> set[str]:
        return {t for s in self.of("status") if s.state == SUBSCRIBED for t in s.topics}

    async def until(self, check: Callable[[], bool], within: float = 10.0) -> None:
        await eventually(lambda: check() or self.error is not None, within)
        if self.error is not None and not check():
            raise AssertionError(f"stream ended: {self.error!r}")

    async def stop(self) -> None:
        self.call.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def reading(call: Any) -> AsyncIterator[Reader]:
    reader = Reader(call)
    try:
        yield reader
    finally:
        await reader.stop()


def decimals(levels: Any) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(level.price), Decimal(level.amount)) for level in levels]


async def test_one_stream_carries_every_kind_with_its_values(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway
) -> None:
    sandbox.ws.quirks = dataclasses.replace(sandbox.ws.quirks, diff_silent=False)
    await place(channel, BUY, "0.5", "29000", account="desk-b")  # a book that is not empty
    topics = [
        topic(C.CHANNEL_TRADES, "BTC_USDT"),
        topic(C.CHANNEL_TICKERS, "BTC_USDT"),
        topic(C.CHANNEL_DEPTH, "BTC_USDT"),
        topic(C.CHANNEL_BOOK_DIFFS, "BTC_USDT"),
        topic(C.CHANNEL_ORDER_BOOK, "BTC_USDT", depth=5),
        topic(C.CHANNEL_ORDER_UPDATES),
        topic(C.CHANNEL_WALLET_UPDATES),
    ]
    async with reading(subscribe(channel, topics)) as reader:
        expected_topics = {
            "trade.BTC_USDT",
            "ticker.*",
            "market_depth.BTC_USDT",
            "diff.BTC_USDT",
            "private",
        }
        await reader.until(lambda: reader.subscribed() >= expected_topics)
        await reader.until(lambda: bool(reader.of("order_book")))
        seed = reader.of("order_book")[0]
        assert (seed.pair, seed.sequence, seed.snapshot, seed.resync) == (
            "BTC_USDT",
            1,
            True,
            False,
        )
        assert decimals(seed.bids) == [(Decimal("29000"), Decimal("0.5"))] and not seed.asks

        sell_id = await place(channel, SELL, "0.01", "30000", account="desk-b")
        buy_id = await place(channel, BUY, "0.01", "30000")
        sandbox.publish_now()
        kinds = ("trade", "ticker", "depth", "book_diff", "order", "wallet")
        await reader.until(lambda: all(reader.of(kind) for kind in kinds))
        # what the trade changed, each kind at its own pace (tickers and depth on publication)
        await reader.until(lambda: any(t.close == "30000" for t in reader.of("ticker")))
        await reader.until(lambda: not reader.of("depth")[-1].asks)
        await reader.until(lambda: any(o.status == FILLED for o in reader.of("order")))

        [trade] = reader.of("trade")
        assert (trade.pair, trade.amount, trade.side, trade.side_raw) == (
            "BTC_USDT",
            "0.01",
            BUY,
            "buy",
        )
        assert Decimal(trade.price) == 30000 and trade.trade_id > 0 and trade.time.seconds > 0

        ticker = next(t for t in reader.of("ticker") if t.close == "30000")
        expected = sandbox.exchange.ticker("BTC_USDT", time.time())
        assert ticker.pair == "BTC_USDT"
        assert Decimal(ticker.close) == expected.last == 30000
        assert Decimal(ticker.base_volume) == expected.vol
        assert Decimal(ticker.bid) == 29000
        assert {t.pair for t in reader.of("ticker")} == {"BTC_USDT"}  # filtered out of ticker.*

        depth = reader.of("depth")[-1]
        assert depth.pair == "BTC_USDT"
        assert decimals(depth.bids) == [(Decimal("29000"), Decimal("0.5"))] and not depth.asks
        assert Decimal(depth.total_bids) == Decimal("0.5")

        def ask_deltas() -> list[tuple[Decimal, Decimal]]:
            return [level for d in reader.of("book_diff") for level in decimals(d.asks)]

        await reader.until(lambda: sum(amount for _, amount in ask_deltas()) == 0)
        assert {d.pair for d in reader.of("book_diff")} == {"BTC_USDT"}
        assert ask_deltas() == [
            (Decimal("30000"), Decimal("0.01")),  # the resting sell
            (Decimal("30000"), Decimal("-0.01")),  # filled away
        ]

        final_book = ({Decimal("29000"): Decimal("0.5")}, {})
        await reader.until(lambda: applied(reader.of("order_book")) == final_book)
        updates = reader.of("order_book")
        assert [u.sequence for u in updates] == list(range(1, len(updates) + 1))
        assert not any(u.snapshot for u in updates[1:])  # changes, no resync for a fast reader
        assert any(Decimal("30000") in prices(u.asks) for u in updates[1:])  # the sell showed

        orders = reader.of("order")
        assert {o.order_id for o in orders} == {buy_id} != {sell_id}  # demo's own, not desk-b's
        filled = orders[-1]
        assert (filled.pair, filled.side, filled.status) == ("BTC_USDT", BUY, FILLED)
        assert Decimal(filled.limit_price) == 30000
        assert Decimal(filled.amount_filled) == Decimal("0.01")
        assert Decimal(filled.amount_unfilled) == 0

        def wallet_matches(currency: str) -> bool:
            mine = [w for w in reader.of("wallet") if w.currency == currency]
            exchange = sandbox.exchange.wallet(1001, currency)
            return bool(mine) and (Decimal(mine[-1].balance), Decimal(mine[-1].reserve)) == (
                exchange.balance,
                exchange.reserve,
            )

        await reader.until(lambda: wallet_matches("USDT") and wallet_matches("BTC"))
        usdt = [w for w in reader.of("wallet") if w.currency == "USDT"][-1]
        assert (usdt.wallet_type, usdt.wallet_type_raw) == (common_pb2.WALLET_TYPE_SPOT, "SPOT")
        assert Decimal(usdt.balance) < 100000  # paid for the 0.01 BTC
        assert reader.skipped == 0  # a consumer that keeps up loses nothing
    assert gateway.streams is not None and gateway.streams.evictions == 0


async def test_every_order_book_says_subscribed_once_and_starts_with_its_snapshot(
    channel: grpc.aio.Channel, sandbox: Sandbox, gateway: Gateway
) -> None:
    await place(channel, BUY, "0.5", "29000", account="desk-b")
    topics = [
        topic(C.CHANNEL_ORDER_BOOK, "BTC_USDT", depth=3),
        topic(C.CHANNEL_ORDER_BOOK, "ETH_USDT"),
    ]
    book_topics = Counter(
        f"{name}.{pair}" for pair in ("BTC_USDT", "ETH_USDT") for name in ("market_depth", "diff")
    )

    def settled(reader: Reader) -> bool:
        subscribed = Counter(t for s in reader.of("status") for t in s.topics)
        return subscribed == book_topics and len(reader.of("order_book")) == 2

    async with reading(subscribe(channel, topics)) as first:
        await first.until(lambda: settled(first))
        # the second stream joins books whose topics ALP confirmed long ago
        async with reading(subscribe(channel, topics)) as second:
            await second.until(lambda: settled(second))
            await asyncio.sleep(0.3)  # nothing more: one SUBSCRIBED per topic, no update
            for reader in (first, second):
                assert settled(reader)
                assert {s.state for s in reader.of("status")} == {SUBSCRIBED}
                seeds = {u.pair: u for u in reader.of("order_book")}
                assert {pair: (u.sequence, u.snapshot) for pair, u in seeds.items()} == {
                    "BTC_USDT": (1, True),
                    "ETH_USDT": (1, True),
                }
                assert decimals(seeds["BTC_USDT"].bids) == [(Decimal("29000"), Decimal("0.5"))]
    streams = gateway.streams
    assert streams is not None
    await eventually(lambda: streams.keeper_count() == 0)  # both books released with the streams


async def test_topics_on_one_upstream_channel_merge_and_nothing_comes_twice(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    topics = [
        topic(C.CHANNEL_TRADES, "BTC_USDT"),
        topic(C.CHANNEL_TRADES),  # every pair: covers BTC_USDT's
        topic(C.CHANNEL_TICKERS, "BTC_USDT"),
        topic(C.CHANNEL_TICKERS, "ETH_USDT"),  # both filters on the one ticker.*
        topic(C.CHANNEL_ORDER_UPDATES, "BTC_USDT"),
        topic(C.CHANNEL_ORDER_UPDATES, "ETH_USDT"),  # both filters on the one private channel
    ]
    async with reading(subscribe(channel, topics)) as reader:
        await reader.until(lambda: reader.subscribed() >= {"trade.*", "ticker.*", "private"})
        assert sandbox.stats.ws_subscribe_commands["trade.BTC_USDT"] == 0
        eth_order = await place(channel, BUY, "0.1", "1000", pair="ETH_USDT")
        await place(channel, SELL, "0.01", "30000", account="desk-b")
        btc_order = await place(channel, BUY, "0.01", "30000")
        sandbox.publish_now()
        await reader.until(
            lambda: {t.pair for t in reader.of("ticker")} == {"BTC_USDT", "ETH_USDT"}
        )
        await reader.until(
            lambda: {o.order_id for o in reader.of("order")} == {eth_order, btc_order}
        )
        await asyncio.sleep(0.2)
        assert len(reader.of("trade")) == 1  # once, not once per topic


def prices(levels: Any) -> set[Decimal]:
    return {Decimal(level.price) for level in levels}


def applied(updates: list[Any]) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    """A consumer's book after `updates`: snapshots replace it, changes set or remove levels."""
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}
    for update in updates:
        for side, levels in ((bids, update.bids), (asks, update.asks)):
            if update.snapshot:
                side.clear()
            for price, amount in decimals(levels):
                if amount == 0:
                    side.pop(price, None)
                else:
                    side[price] = amount
    return bids, asks


# -- slow consumers --------------------------------------------------------------------------------
def trade_frame(trade_id: int, pair: str = "BTC_USDT") -> str:
    return json.dumps(["t", int(time.time()), trade_id, pair, "0.1", "30000.5", "buy"])


def ticker_frame(close: int) -> str:
    rows = [
        [pair, f"{close}.5", "1", "2", "0.1", "40000", "10", "29999", "30001"]
        for pair in ("BTC_USDT", "ETH_USDT", "XRP_USDT")
    ]
    return json.dumps(["tk", int(time.time()), *rows])


def depth_frame(size: int) -> str:
    bids = [["29000", f"0.{size:04d}"], ["28999", "1"]]
    body = {"Asks": [["31000", "2"]], "Bids": bids, "Symbol": "BTC_USDT"}
    return json.dumps(["p", int(time.time()), body])


async def paced(sandbox: Sandbox, frame: str, topic: str, index: int) -> None:
    """Inject at a pace the gateway's upstream reader follows (the sandbox closes a socket it
    cannot write to, and this test is about the gateway's consumer, not its upstream)."""
    await sandbox.inject_ws_frame(frame, topic=topic)
    if index % 100 == 0:
        await asyncio.sleep(0.01)


async def stalled(sandbox: Sandbox, gateway: Gateway, first_id: int) -> int:
    """Trades until the (only) stream's writes are held up by its unread HTTP/2 window: the
    gateway keeps a backlog for it. Returns the next trade id."""
    assert gateway.streams is not None
    [delivery] = gateway.streams.deliveries()
    trade_id = first_id
    for _ in range(100):
        for _ in range(100):
            await sandbox.inject_ws_frame(trade_frame(trade_id), topic="trade.BTC_USDT")
            trade_id += 1
        await asyncio.sleep(0.1)
        if len(delivery):  # still pending after 0.1 s: the consumer is not taking anything
            return trade_id
    raise AssertionError("the stream never stalled")


@pytest.mark.parametrize("gateway_overrides", [{"stream__queue_limit": 3000}])
async def test_slow_reader_conflates_per_topic_and_loses_no_trade(
    gateway: Gateway, sandbox: Sandbox, gateway_overrides: dict[str, Any]
) -> None:
    target = f"127.0.0.1:{gateway.port}"
    async with grpc.aio.insecure_channel(target, options=SLOW_OPTIONS) as slow_channel:
        topics = [
            topic(C.CHANNEL_TRADES, "BTC_USDT"),
            topic(C.CHANNEL_TICKERS, "BTC_USDT"),
            topic(C.CHANNEL_TICKERS, "ETH_USDT"),  # merged with BTC_USDT's on ticker.*
            topic(C.CHANNEL_DEPTH, "BTC_USDT"),
            topic(C.CHANNEL_ORDER_BOOK, "BTC_USDT", depth=5),
        ]
        call = subscribe(slow_channel, topics)
        events: list[stream_pb2.SubscribeEvent] = []
        skipped = 0

        async def read_until(check: Callable[[], bool]) -> None:
            nonlocal skipped
            async for message in call:
                skipped += message.skipped
                events.extend(message.events)
                if check():
                    return
            raise AssertionError("stream ended")

        def of(kind: str) -> list[Any]:
            return [getattr(e, kind) for e in events if e.WhichOneof("event") == kind]

        def subscribed() -> set[str]:
            return {t for s in of("status") if s.state == SUBSCRIBED for t in s.topics}

        wanted = {"trade.BTC_USDT", "ticker.*", "market_depth.BTC_USDT"}
        await asyncio.wait_for(
            read_until(lambda: subscribed() >= wanted and bool(of("order_book"))), 10
        )
        # no longer reading: fill the window, then flood the conflating topics
        next_id = await stalled(sandbox, gateway, first_id=1)
        tickers, depths = 400, 3500  # depth frames: more book updates than the queue limit
        for close in range(tickers):
            await paced(sandbox, ticker_frame(close), "ticker.*", close)
        for size in range(1, depths + 1):
            await paced(sandbox, depth_frame(size), "market_depth.BTC_USDT", size)
        for trade_id in range(next_id, next_id + 100):  # lossless, under the limit
            await sandbox.inject_ws_frame(trade_frame(trade_id), topic="trade.BTC_USDT")
        last_id = next_id + 99
        assert gateway.streams is not None
        [delivery] = gateway.streams.deliveries()
        await eventually(lambda: delivery.resnapshots > 0)
        await asyncio.wait_for(
            read_until(lambda: bool(of("trade")) and of("trade")[-1].trade_id == last_id), 30
        )

        assert sandbox.stats.ws_closed_slow == 0  # upstream kept up: whatever was lost, we lost
        assert {s.state for s in of("status")} == {SUBSCRIBED}
        trades = [t.trade_id for t in of("trade")]
        assert trades == list(range(1, last_id + 1))  # every trade, in order, no duplicate
        book_tickers = of("ticker")
        assert {t.pair for t in book_tickers} == {"BTC_USDT", "ETH_USDT"}  # XRP filtered out
        for pair in ("BTC_USDT", "ETH_USDT"):
            closes = [t.close for t in book_tickers if t.pair == pair]
            assert closes[-1] == f"{tickers - 1}.5"  # the newest wins
            assert len(closes) < tickers / 2  # and most were conflated away
        depth_events = of("depth")
        assert depth_events[-1].bids[0].amount == f"0.{depths:04d}"
        assert len(depth_events) < depths / 2

        updates = of("order_book")
        assert [u.sequence for u in updates] == sorted(set(u.sequence for u in updates))
        resyncs = [u for u in updates if u.resync]
        assert resyncs and all(u.snapshot for u in resyncs)  # a fresh snapshot, not a gap
        assert applied(updates) == (
            {Decimal("29000"): Decimal(f"0.{depths:04d}"), Decimal("28999"): Decimal("1")},
            {Decimal("31000"): Decimal("2")},
        )
        # every conflated or resnapshotted event is counted in `skipped`, and nothing else is
        ticker_skips = 2 * tickers - len(book_tickers)
        depth_skips = depths - len(depth_events)
        book_skips = updates[-1].sequence - len(updates)  # the sequence counts every update made
        assert skipped == ticker_skips + depth_skips + book_skips
        assert delivery.conflated == skipped
        call.cancel()
    assert gateway.streams.evictions == 0


@pytest.mark.parametrize("gateway_overrides", [{"stream__queue_limit": 2000}])
async def test_slow_reader_overflowing_a_lossless_topic_ends_resource_exhausted(
    gateway: Gateway, sandbox: Sandbox, gateway_overrides: dict[str, Any]
) -> None:
    target = f"127.0.0.1:{gateway.port}"
    async with grpc.aio.insecure_channel(target, options=SLOW_OPTIONS) as slow_channel:
        topics = [topic(C.CHANNEL_TRADES, "BTC_USDT"), topic(C.CHANNEL_TICKERS, "BTC_USDT")]
        call = subscribe(slow_channel, topics)
        first = await asyncio.wait_for(anext(aiter(call)), 10)
        assert first.events[0].status.state == SUBSCRIBED
        next_id = await stalled(sandbox, gateway, first_id=1)
        for trade_id in range(next_id, next_id + 2001):  # more than the limit, all pending
            await sandbox.inject_ws_frame(trade_frame(trade_id), topic="trade.BTC_USDT")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too slow on subscribe" in (info.value.details() or "")
    assert gateway.streams is not None and gateway.streams.evictions == 1
