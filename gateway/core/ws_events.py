"""Typed ALP WebSocket events (API-NOTES frame layouts), exact Decimals, Unix seconds as Decimal."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

Side = tuple[tuple[Decimal, Decimal], ...]


@dataclass(frozen=True, slots=True)
class Welcome:
    ts: Decimal
    ping_interval_s: Decimal
    ping_timeout_s: Decimal
    client_id: str


@dataclass(frozen=True, slots=True)
class Ack:
    command: str  # "subscribe" | "unsubscribe" | "auth"
    ts: Decimal
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ErrorFrame:
    """`["error", ts, message]` (docs), `["error", ts, message, "subscribe"]` (live) or
    `["error", ts, message, ["subscribe", topic, ...]]` (an echo of the command).

    `command` is the command the error answers when the frame names it; `topics` the topics of
    an echoed command (live never echoes them: "Too many topics" names no topic).
    """

    ts: Decimal
    message: str
    command: str | None
    topics: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TickerRow:
    pair: str
    close: Decimal
    base_volume: Decimal
    quote_volume: Decimal
    change_percent: Decimal
    high: Decimal
    low: Decimal
    bid: Decimal
    ask: Decimal


@dataclass(frozen=True, slots=True)
class Tickers:
    ts: Decimal
    rows: tuple[TickerRow, ...]


@dataclass(frozen=True, slots=True)
class Trade:
    ts: Decimal
    trade_id: int
    pair: str
    amount: Decimal
    price: Decimal
    side: str


@dataclass(frozen=True, slots=True)
class BookDiff:
    ts: Decimal
    pair: str
    asks: Side
    bids: Side


@dataclass(frozen=True, slots=True)
class Depth:
    ts: Decimal
    pair: str
    asks: Side
    bids: Side
    total_asks: Decimal | None
    total_bids: Decimal | None


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    ts: Decimal
    order_id: int
    pair: str
    side: str
    order_type: str
    base_amount: Decimal | None
    limit_price: Decimal | None
    amount_unfilled: Decimal | None
    amount_filled: Decimal | None
    amount_cancelled: Decimal | None
    value_filled: Decimal | None
    average_price: Decimal | None
    done_at: Decimal | None
    status: str
    quote_amount: Decimal | None
    wallet_type: str
    stop_price: Decimal | None
    stop_operator: str | None


@dataclass(frozen=True, slots=True)
class WalletUpdate:
    ts: Decimal
    currency: str
    wallet_type: str
    isolated_pair: str | None
    balance: Decimal
    reserve: Decimal


@dataclass(frozen=True, slots=True)
class AccountTradeFrame:
    ts: Decimal
    raw: tuple[object, ...]


@dataclass(frozen=True, slots=True)
class Rates:
    ts: Decimal
    rows: tuple[tuple[Decimal, str, str], ...]


@dataclass(frozen=True, slots=True)
class TextPing:
    """A text "1" from the server: answer "2"."""


@dataclass(frozen=True, slots=True)
class TextPong:
    """A text "2" from the server."""


@dataclass(frozen=True, slots=True)
class Unknown:
    kind: str
    reason: str


WsEvent = (
    Welcome
    | Ack
    | ErrorFrame
    | Tickers
    | Trade
    | BookDiff
    | Depth
    | OrderUpdate
    | WalletUpdate
    | AccountTradeFrame
    | Rates
    | TextPing
    | TextPong
    | Unknown
)
