"""Subscribe's hand-written wire form against the generated descriptors: every kind, every field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from alp.v3 import common_pb2, stream_pb2
from google.protobuf import timestamp_pb2

from gateway.core import ws_events
from gateway.rpc import stream_encode as enc
from gateway.rpc.wire import uint_field

TS = Decimal("1767225600.123456789")  # 2026-01-01T00:00:00.123456789Z
DONE = Decimal("1767225601.5")
STAMP = timestamp_pb2.Timestamp(seconds=1767225600, nanos=123456789)
DONE_STAMP = timestamp_pb2.Timestamp(seconds=1767225601, nanos=500000000)
ASKS = ((Decimal("30001.5"), Decimal("0.25")), (Decimal("30002"), Decimal("1E-8")))
BIDS = ((Decimal("29999.99"), Decimal("-0.5")),)
EVENT = stream_pb2.SubscribeEvent.DESCRIPTOR
RESPONSE = stream_pb2.SubscribeResponse.DESCRIPTOR


def levels(*pairs: tuple[str, str]) -> list[common_pb2.PriceLevel]:
    return [common_pb2.PriceLevel(price=p, amount=a) for p, a in pairs]


def parse(*chunks: bytes, skipped: int = 0) -> stream_pb2.SubscribeResponse:
    """A Subscribe message exactly as Delivery assembles one: chunks, then the `skipped` tail."""
    wire = b"".join(chunks) + uint_field(enc.SUBSCRIBE_SKIPPED_FIELD, skipped)
    return stream_pb2.SubscribeResponse.FromString(wire)


def assert_every_field_set(message: Any) -> None:
    """The sample sets every field, so a field the encoder forgets cannot pass unnoticed."""
    present = {field.name for field, _ in message.ListFields()}
    assert present == set(message.DESCRIPTOR.fields_by_name), type(message).__name__


def test_kind_numbers_are_the_descriptors() -> None:
    oneof = EVENT.oneofs_by_name["event"]
    assert {f.name: f.number for f in oneof.fields} == enc.SUBSCRIBE_KINDS
    assert {f.name for f in EVENT.fields} == {f.name for f in oneof.fields}  # nothing outside it
    for name, number in enc.SUBSCRIBE_KINDS.items():
        assert EVENT.fields_by_name[name].number == number
    assert RESPONSE.fields_by_name["events"].number == enc.SUBSCRIBE_EVENTS_FIELD
    assert RESPONSE.fields_by_name["skipped"].number == enc.SUBSCRIBE_SKIPPED_FIELD
    assert set(RESPONSE.fields_by_name) == {"events", "skipped"}


@pytest.mark.parametrize(
    ("response", "events"),
    [
        (stream_pb2.StreamTickersResponse, "tickers"),
        (stream_pb2.StreamTradesResponse, "trades"),
        (stream_pb2.StreamBookDiffsResponse, "diffs"),
        (stream_pb2.StreamDepthResponse, "depths"),
        (stream_pb2.StreamOrderBookResponse, "updates"),
        (stream_pb2.StreamOrderUpdatesResponse, "orders"),
        (stream_pb2.StreamWalletUpdatesResponse, "wallets"),
    ],
)
def test_single_topic_response_numbers_are_the_descriptors(response: Any, events: str) -> None:
    fields = response.DESCRIPTOR.fields_by_name
    assert fields[events].number == enc.EVENTS_FIELD
    assert fields["status"].number == enc.STATUS_FIELD
    if "skipped" in fields:
        assert fields["skipped"].number == enc.SKIPPED_FIELD


def test_ticker() -> None:
    row = ws_events.TickerRow(
        pair="BTC_USDT",
        close=Decimal("30000.5"),
        base_volume=Decimal("12.5"),
        quote_volume=Decimal("375006.25"),
        change_percent=Decimal("-1.25"),
        high=Decimal("31000"),
        low=Decimal("29000.01"),
        bid=Decimal("30000.4"),
        ask=Decimal("30000.6"),
    )
    message = parse(enc.subscribe_chunk(enc.KIND_TICKER, enc.ticker_row(row, TS)), skipped=7)
    assert message.skipped == 7
    [event] = message.events
    assert event.WhichOneof("event") == "ticker"
    assert event.ticker == stream_pb2.TickerUpdate(
        pair="BTC_USDT",
        close="30000.5",
        base_volume="12.5",
        quote_volume="375006.25",
        change_percent="-1.25",
        high="31000",
        low="29000.01",
        bid="30000.4",
        ask="30000.6",
        time=STAMP,
    )
    assert_every_field_set(event.ticker)


def test_trade() -> None:
    trade = ws_events.Trade(
        ts=TS,
        trade_id=2**62,
        pair="ETH_USDT",
        amount=Decimal("0.00000001"),
        price=Decimal("2000.10"),
        side="sell",
    )
    [event] = parse(enc.subscribe_chunk(enc.KIND_TRADE, enc.trade(trade))).events
    assert event.WhichOneof("event") == "trade"
    assert event.trade == stream_pb2.TradeEvent(
        trade_id=2**62,
        pair="ETH_USDT",
        amount="0.00000001",
        price="2000.10",
        side=common_pb2.ORDER_SIDE_SELL,
        side_raw="sell",
        time=STAMP,
    )
    assert_every_field_set(event.trade)


def test_book_diff() -> None:
    diff = ws_events.BookDiff(ts=TS, pair="BTC_USDT", asks=ASKS, bids=BIDS)
    [event] = parse(enc.subscribe_chunk(enc.KIND_BOOK_DIFF, enc.book_diff(diff))).events
    assert event.WhichOneof("event") == "book_diff"
    assert event.book_diff == stream_pb2.BookDiff(
        pair="BTC_USDT",
        asks=levels(("30001.5", "0.25"), ("30002", "0.00000001")),
        bids=levels(("29999.99", "-0.5")),
        time=STAMP,
    )
    assert_every_field_set(event.book_diff)


def test_depth() -> None:
    depth = ws_events.Depth(
        ts=TS,
        pair="BTC_USDT",
        asks=ASKS,
        bids=((Decimal("29999"), Decimal("2")),),
        total_asks=Decimal("0.25000001"),
        total_bids=Decimal("2"),
    )
    [event] = parse(enc.subscribe_chunk(enc.KIND_DEPTH, enc.depth(depth))).events
    assert event.WhichOneof("event") == "depth"
    assert event.depth == stream_pb2.DepthSnapshot(
        pair="BTC_USDT",
        asks=levels(("30001.5", "0.25"), ("30002", "0.00000001")),
        bids=levels(("29999", "2")),
        total_asks="0.25000001",
        total_bids="2",
        time=STAMP,
    )
    assert_every_field_set(event.depth)


def test_order_book_update() -> None:
    payload = enc.book_update(
        "BTC_USDT",
        2**40,
        snapshot=True,
        resync=True,
        bids=[(Decimal("29999"), Decimal("0"))],
        asks=list(ASKS),
        time_s=TS,
    )
    [event] = parse(enc.subscribe_chunk(enc.KIND_ORDER_BOOK, payload), skipped=3).events
    assert event.WhichOneof("event") == "order_book"
    assert event.order_book == stream_pb2.OrderBookUpdate(
        pair="BTC_USDT",
        sequence=2**40,
        snapshot=True,
        resync=True,
        bids=levels(("29999", "0")),
        asks=levels(("30001.5", "0.25"), ("30002", "0.00000001")),
        time=STAMP,
    )
    assert_every_field_set(event.order_book)


def test_order_update() -> None:
    update = ws_events.OrderUpdate(
        ts=TS,
        order_id=123456789012,
        pair="BTC_USDT",
        side="buy",
        order_type="STOP_LIMIT",
        base_amount=Decimal("0.5"),
        limit_price=Decimal("30000"),
        amount_unfilled=Decimal("0.2"),
        amount_filled=Decimal("0.25"),
        amount_cancelled=Decimal("0.05"),
        value_filled=Decimal("7500.00"),
        average_price=Decimal("30000.00"),
        done_at=DONE,
        status="PARTIAL_CANCELED",
        quote_amount=Decimal("15000"),
        wallet_type="CROSS_MARGIN",
        stop_price=Decimal("29500"),
        stop_operator="LTE",
    )
    [event] = parse(enc.subscribe_chunk(enc.KIND_ORDER, enc.order_update(update))).events
    assert event.WhichOneof("event") == "order"
    assert event.order == stream_pb2.OrderUpdate(
        time=STAMP,
        order_id=123456789012,
        pair="BTC_USDT",
        side=common_pb2.ORDER_SIDE_BUY,
        side_raw="buy",
        order_type=common_pb2.ORDER_TYPE_STOP_LIMIT,
        order_type_raw="STOP_LIMIT",
        base_amount="0.5",
        limit_price="30000",
        amount_unfilled="0.2",
        amount_filled="0.25",
        amount_cancelled="0.05",
        value_filled="7500.00",
        average_price="30000.00",
        done_at=DONE_STAMP,
        status=common_pb2.ORDER_STATUS_PARTIAL_CANCELED,
        status_raw="PARTIAL_CANCELED",
        quote_amount="15000",
        wallet_type=common_pb2.WALLET_TYPE_MARGIN_CROSS,
        wallet_type_raw="CROSS_MARGIN",
        stop_price="29500",
        stop_operator=common_pb2.STOP_OPERATOR_LTE,
        stop_operator_raw="LTE",
    )
    assert_every_field_set(event.order)


def test_wallet_update() -> None:
    update = ws_events.WalletUpdate(
        ts=TS,
        currency="USDT",
        wallet_type="ISOLATED_MARGIN",
        isolated_pair="BTC_USDT",
        balance=Decimal("100000.5"),
        reserve=Decimal("250"),
    )
    [event] = parse(enc.subscribe_chunk(enc.KIND_WALLET, enc.wallet_update(update))).events
    assert event.WhichOneof("event") == "wallet"
    assert event.wallet == stream_pb2.WalletUpdate(
        time=STAMP,
        currency="USDT",
        wallet_type=common_pb2.WALLET_TYPE_MARGIN_ISOLATED,
        wallet_type_raw="ISOLATED_MARGIN",
        isolated_pair="BTC_USDT",
        balance="100000.5",
        reserve="250",
    )
    assert_every_field_set(event.wallet)


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("subscribed", stream_pb2.STREAM_STATE_SUBSCRIBED),
        ("reconnecting", stream_pb2.STREAM_STATE_RECONNECTING),
        ("resynced", stream_pb2.STREAM_STATE_RESYNCED),
    ],
)
def test_status(state: str, expected: int) -> None:
    topics = ("trade.BTC_USDT", "ticker.*")
    wire = enc.subscribe_status_message(enc.status_payload(state, topics))
    [event] = parse(wire).events
    assert event.WhichOneof("event") == "status"
    assert event.status.state == expected
    assert event.status.message == enc.STATE_TEXT[state]
    assert list(event.status.topics) == list(topics)
    assert event.status.time.seconds > 1_700_000_000
    assert_every_field_set(event.status)


def test_a_batch_keeps_kinds_and_order() -> None:
    """Delivery concatenates chunks of different kinds into one message: each stays itself."""
    trade = ws_events.Trade(TS, 1, "BTC_USDT", Decimal("1"), Decimal("2"), "buy")
    diff = ws_events.BookDiff(ts=TS, pair="BTC_USDT", asks=ASKS, bids=())
    message = parse(
        enc.subscribe_chunk(enc.KIND_TRADE, enc.trade(trade)),
        enc.subscribe_chunk(enc.KIND_BOOK_DIFF, enc.book_diff(diff)),
        enc.subscribe_chunk(enc.KIND_TRADE, enc.trade(trade)),
        skipped=2**40,
    )
    assert [e.WhichOneof("event") for e in message.events] == ["trade", "book_diff", "trade"]
    assert message.skipped == 2**40
