"""WebSocket events -> serialised protobuf stream events (each encoded once, shared by consumers)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from alp.v3 import common_pb2, stream_pb2

from gateway.core import constants, ws_events
from gateway.rpc import convert
from gateway.rpc.convert import dec, timestamp
from gateway.rpc.wire import length_delimited, uint_field

# Field numbers of the stream responses (stream.proto): events, status, skipped.
EVENTS_FIELD: Final = 1
STATUS_FIELD: Final = 2
SKIPPED_FIELD: Final = 3
# SubscribeResponse.events and the SubscribeEvent oneof members.
SUBSCRIBE_EVENTS_FIELD: Final = 1
SUBSCRIBE_SKIPPED_FIELD: Final = 2
KIND_TICKER: Final = 1
KIND_TRADE: Final = 2
KIND_BOOK_DIFF: Final = 3
KIND_DEPTH: Final = 4
KIND_ORDER_BOOK: Final = 5
KIND_ORDER: Final = 6
KIND_WALLET: Final = 7
KIND_STATUS: Final = 8
# OrderBookUpdate.pair and .sequence: written by hand around the shared body (book_update).
BOOK_PAIR_FIELD: Final = 1
BOOK_SEQUENCE_FIELD: Final = 2
# The SubscribeEvent oneof as this module writes it: member name -> field number. The numbers are
# written by hand (subscribe_chunk), so a test holds this table to the generated descriptor.
SUBSCRIBE_KINDS: Final = {
    "ticker": KIND_TICKER,
    "trade": KIND_TRADE,
    "book_diff": KIND_BOOK_DIFF,
    "depth": KIND_DEPTH,
    "order_book": KIND_ORDER_BOOK,
    "order": KIND_ORDER,
    "wallet": KIND_WALLET,
    "status": KIND_STATUS,
}

STATE: Final = {
    "subscribed": stream_pb2.STREAM_STATE_SUBSCRIBED,
    "reconnecting": stream_pb2.STREAM_STATE_RECONNECTING,
    "resynced": stream_pb2.STREAM_STATE_RESYNCED,
}
STATE_TEXT: Final = {
    "subscribed": "upstream subscription active",
    "reconnecting": "upstream connection lost; events may be missing until resynced",
    "resynced": "upstream connection restored and resubscribed",
}


def channel_chunk(payload: bytes) -> bytes:
    """An element of a per-channel response's event field."""
    return length_delimited(EVENTS_FIELD, payload)


def subscribe_chunk(kind: int, payload: bytes) -> bytes:
    """An element of SubscribeResponse.events wrapping the event as oneof member `kind`."""
    return length_delimited(SUBSCRIBE_EVENTS_FIELD, length_delimited(kind, payload))


def status_payload(state: str, topics: tuple[str, ...]) -> bytes:
    status = stream_pb2.StreamStatus(
        state=STATE.get(state, stream_pb2.STREAM_STATE_UNSPECIFIED),
        message=STATE_TEXT.get(state, state),
        topics=topics,
    )
    status.time.GetCurrentTime()
    return status.SerializeToString()


def channel_status_message(payload: bytes) -> bytes:
    return length_delimited(STATUS_FIELD, payload)


def subscribe_status_message(payload: bytes) -> bytes:
    return subscribe_chunk(KIND_STATUS, payload)


def ticker_row(row: ws_events.TickerRow, ts: Decimal) -> bytes:
    return stream_pb2.TickerUpdate(
        pair=row.pair,
        close=dec(row.close),
        base_volume=dec(row.base_volume),
        quote_volume=dec(row.quote_volume),
        change_percent=dec(row.change_percent),
        high=dec(row.high),
        low=dec(row.low),
        bid=dec(row.bid),
        ask=dec(row.ask),
        time=timestamp(ts),
    ).SerializeToString()


def trade(event: ws_events.Trade) -> bytes:
    side = constants.normalize_order_side(event.side)
    return stream_pb2.TradeEvent(
        trade_id=event.trade_id,
        pair=event.pair,
        amount=dec(event.amount),
        price=dec(event.price),
        side=convert.enum_value(convert.SIDE, side),
        side_raw=event.side,
        time=timestamp(event.ts),
    ).SerializeToString()


def _levels(
    items: tuple[tuple[Decimal, Decimal], ...] | list[tuple[Decimal, Decimal]],
) -> list[common_pb2.PriceLevel]:
    return [common_pb2.PriceLevel(price=dec(p), amount=dec(q)) for p, q in items]


def book_diff(event: ws_events.BookDiff) -> bytes:
    return stream_pb2.BookDiff(
        pair=event.pair,
        asks=_levels(event.asks),
        bids=_levels(event.bids),
        time=timestamp(event.ts),
    ).SerializeToString()


def depth(event: ws_events.Depth) -> bytes:
    return stream_pb2.DepthSnapshot(
        pair=event.pair,
        asks=_levels(event.asks),
        bids=_levels(event.bids),
        total_asks=dec(event.total_asks),
        total_bids=dec(event.total_bids),
        time=timestamp(event.ts),
    ).SerializeToString()


def order_update(event: ws_events.OrderUpdate) -> bytes:
    side = constants.normalize_order_side(event.side)
    order_type = constants.normalize_order_type(event.order_type)
    status = constants.normalize_order_status(event.status)
    wallet = constants.normalize_wallet_type(event.wallet_type)
    stop = constants.normalize_stop_operator(event.stop_operator)
    message = stream_pb2.OrderUpdate(
        time=timestamp(event.ts),
        order_id=event.order_id,
        pair=event.pair,
        side=convert.enum_value(convert.SIDE, side),
        side_raw=event.side,
        order_type=convert.enum_value(convert.ORDER_TYPE, order_type),
        order_type_raw=event.order_type,
        base_amount=dec(event.base_amount),
        limit_price=dec(event.limit_price),
        amount_unfilled=dec(event.amount_unfilled),
        amount_filled=dec(event.amount_filled),
        amount_cancelled=dec(event.amount_cancelled),
        value_filled=dec(event.value_filled),
        average_price=dec(event.average_price),
        done_at=timestamp(event.done_at),
        status=convert.enum_value(convert.STATUS, status),
        status_raw=event.status,
        quote_amount=dec(event.quote_amount),
        wallet_type=convert.enum_value(convert.WALLET, wallet),
        wallet_type_raw=event.wallet_type,
        stop_price=dec(event.stop_price),
        stop_operator=convert.enum_value(convert.STOP_OPERATOR, stop),
        stop_operator_raw=event.stop_operator or "",
    )
    return message.SerializeToString()


def wallet_update(event: ws_events.WalletUpdate) -> bytes:
    wallet = constants.normalize_wallet_type(event.wallet_type)
    message = stream_pb2.WalletUpdate(
        time=timestamp(event.ts),
        currency=event.currency,
        wallet_type=convert.enum_value(convert.WALLET, wallet),
        wallet_type_raw=event.wallet_type,
        balance=dec(event.balance),
        reserve=dec(event.reserve),
    )
    if event.isolated_pair:
        message.isolated_pair = event.isolated_pair
    return message.SerializeToString()


def book_update_head(pair: str) -> bytes:
    """OrderBookUpdate.pair (field 1) as it opens the message."""
    return length_delimited(BOOK_PAIR_FIELD, pair.encode())


def book_update_body(
    *,
    snapshot: bool,
    resync: bool,
    bids: list[tuple[Decimal, Decimal]],
    asks: list[tuple[Decimal, Decimal]],
    time_s: Decimal | None,
) -> bytes:
    """OrderBookUpdate fields 3-7, the part every consumer of a book shares: after the head and
    the consumer's own sequence it makes the whole message in field order (book_stream)."""
    return stream_pb2.OrderBookUpdate(
        snapshot=snapshot,
        resync=resync,
        bids=_levels(bids),
        asks=_levels(asks),
        time=timestamp(time_s) if time_s is not None else None,
    ).SerializeToString()


def book_update(pair: str, sequence: int, **body: Any) -> bytes:
    """One whole OrderBookUpdate (`body`: book_update_body's fields), assembled as book streams
    assemble theirs."""
    return (
        book_update_head(pair)
        + uint_field(BOOK_SEQUENCE_FIELD, sequence)
        + book_update_body(**body)
    )
