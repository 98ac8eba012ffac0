"""Domain records of ALP REST answers: exact Decimals, aware datetimes, enums beside raw text."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from gateway.core.constants import (
    OrderSide,
    OrderStatus,
    OrderType,
    StopOperator,
    TimeInForce,
    WalletType,
)


@dataclass(frozen=True, slots=True)
class ServerTime:
    server_time: Decimal


@dataclass(frozen=True, slots=True)
class CurrencyRate:
    currency: str
    rate: Decimal


@dataclass(frozen=True, slots=True)
class Currency:
    short_name: str
    sign: str


@dataclass(frozen=True, slots=True)
class Pair:
    name: str
    currency1: str
    currency2: str
    price_precision: int
    amount_precision: int
    minimum_order_size: Decimal
    maximum_order_size: Decimal
    minimum_order_value: Decimal


@dataclass(frozen=True, slots=True)
class Ticker:
    pair: str
    last: Decimal | None
    open: Decimal | None
    vol: Decimal | None
    buy: Decimal | None
    sell: Decimal | None
    high: Decimal | None
    low: Decimal | None
    diff: Decimal | None
    diff_percent: Decimal | None
    price_precision: int | None
    amount_precision: int | None
    timestamp: Decimal | None  # None for a never-traded pair (ALP sends 0)


@dataclass(frozen=True, slots=True)
class Level:
    price: Decimal
    amount: Decimal


@dataclass(frozen=True, slots=True)
class OrderBook:
    buy: tuple[Level, ...]
    sell: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class Candle:
    time: Decimal
    open: Decimal
    close: Decimal
    low: Decimal
    high: Decimal
    volume: Decimal
    quote_volume: Decimal | None
    trades_count: int
    taker_buy_base_volume: Decimal | None
    taker_buy_quote_volume: Decimal | None


@dataclass(frozen=True, slots=True)
class PublicTrade:
    id: int
    price: Decimal
    amount: Decimal
    timestamp: Decimal
    pair: str
    type: OrderSide | None
    type_raw: str


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    email: str | None
    name: str | None
    parent_id: int | None


@dataclass(frozen=True, slots=True)
class Balance:
    balance: Decimal
    reserve: Decimal
    currency: str
    wallet_type: WalletType | None
    wallet_type_raw: str
    last_update_at: datetime | None
    account_id: int | None


@dataclass(frozen=True, slots=True)
class FeeRule:
    account_id: int | None
    active_from: datetime | None
    active_to: datetime | None
    taker_fee_rate: Decimal
    maker_fee_rate: Decimal
    fee_currency: str | None
    priority: int | None
    currency: int | None
    pair: int | None
    is_active: bool


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    account_id: int | None
    pair: str
    amount: Decimal | None
    price: Decimal | None
    side: OrderSide | None
    side_raw: str
    status: OrderStatus | None
    status_raw: str
    type: OrderType | None
    type_raw: str
    wallet_type: WalletType | None
    wallet_type_raw: str
    amount_canceled: Decimal | None
    amount_filled: Decimal | None
    date: datetime | None
    open_at: datetime | None
    tif: TimeInForce | None
    tif_raw: str
    updated_at: datetime | None
    done_at: datetime | None
    expire_after: datetime | None
    stop_price: Decimal | None
    quote_amount: Decimal | None = None
    stop_operator: StopOperator | None = None
    client_order_id: str | None = None


@dataclass(frozen=True, slots=True)
class AccountTrade:
    id: int
    pair: str
    side: OrderSide | None
    side_raw: str
    price: Decimal
    amount: Decimal
    fee: Decimal | None
    timestamp: Decimal | None
    order_id: int | None


@dataclass(frozen=True, slots=True)
class Activity:
    balance: Decimal
    reserve: Decimal
    currency: str
    wallet_type: WalletType | None
    wallet_type_raw: str
    last_update_at: datetime | None
    account_id: int | None
    op_type: int | None


class CancelResult(enum.Enum):
    CANCELLED = "CANCELLED"
    NOT_FOUND = "NOT_FOUND"
    OTHER = "OTHER"


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    order_id: int
    raw: str
    outcome: CancelResult
