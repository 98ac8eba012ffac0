"""ALP v3 constants as enums, with alias tables for every spelling ALP uses (accept all, emit one)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final, TypeVar


class WalletType(enum.Enum):
    SPOT = "SPOT"
    MARGIN_CROSS = "MARGIN_CROSS"
    MARGIN_ISOLATED = "MARGIN_ISOLATED"
    FUNDING = "FUNDING"


class OrderSide(enum.Enum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(enum.Enum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    STOP_LIMIT = "STOP_LIMIT"
    STOP_MARKET = "STOP_MARKET"


class OrderStatus(enum.Enum):
    PENDING = "PENDING"
    OPEN = "OPEN"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    PARTIAL_FILLED = "PARTIAL_FILLED"
    PARTIAL_CANCELED = "PARTIAL_CANCELED"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    UNDEFINED = "UNDEFINED"


class TimeInForce(enum.Enum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    AON = "AON"


class StopOperator(enum.Enum):
    GTE = "GTE"
    LTE = "LTE"


class ChartInterval(enum.Enum):
    ONE_MINUTE = "1"
    FIVE_MINUTES = "5"
    FIFTEEN_MINUTES = "15"
    THIRTY_MINUTES = "30"
    ONE_HOUR = "60"
    FOUR_HOURS = "240"
    ONE_DAY = "1D"


class DepositStatus(enum.Enum):
    PENDING = "PENDING"
    MODERATION = "MODERATION"
    CONFIRMED = "CONFIRMED"
    REJECTED = "REJECTED"


class WithdrawalStatus(enum.Enum):
    NEW = "NEW"
    CONFIRMED = "CONFIRMED"
    VERIFIED = "VERIFIED"
    MODERATION = "MODERATION"
    APPROVED = "APPROVED"
    SUSPENDED = "SUSPENDED"
    DONE = "DONE"
    REFUSED = "REFUSED"
    CANCELED = "CANCELED"


E = TypeVar("E", bound=enum.Enum)

# Upper-cased spelling -> canonical member. Canonical values are added by `_table`.
WALLET_ALIASES: Final = {
    "CROSS_MARGIN": WalletType.MARGIN_CROSS,
    "ISOLATED_MARGIN": WalletType.MARGIN_ISOLATED,
}
SIDE_ALIASES: Final = {"BID": OrderSide.BUY, "ASK": OrderSide.SELL}
STATUS_ALIASES: Final = {
    "PARTIAL_CANCELLED": OrderStatus.PARTIAL_CANCELED,
    "CANCELED": OrderStatus.CANCELLED,
}
WITHDRAWAL_ALIASES: Final = {"CANCELLED": WithdrawalStatus.CANCELED}
# Outbound spelling of margin wallets: "docs" is the place-order table's, "alias" the other one.
OUTBOUND_WALLET: Final[Mapping[str, Mapping[WalletType, str]]] = {
    "docs": {w: w.value for w in WalletType},
    "alias": {
        **{w: w.value for w in WalletType},
        WalletType.MARGIN_CROSS: "CROSS_MARGIN",
        WalletType.MARGIN_ISOLATED: "ISOLATED_MARGIN",
    },
}


def _table(enum_cls: type[E], aliases: Mapping[str, E]) -> dict[str, E]:
    table = {member.value.upper(): member for member in enum_cls}
    table.update(aliases)
    return table


_WALLETS: Final = _table(WalletType, WALLET_ALIASES)
_SIDES: Final = _table(OrderSide, SIDE_ALIASES)
_TYPES: Final = _table(OrderType, {})
_STATUSES: Final = _table(OrderStatus, STATUS_ALIASES)
_TIFS: Final = _table(TimeInForce, {})
_STOPS: Final = _table(StopOperator, {})
_INTERVALS: Final = _table(ChartInterval, {})
_DEPOSITS: Final = _table(DepositStatus, {})
_WITHDRAWALS: Final = _table(WithdrawalStatus, WITHDRAWAL_ALIASES)


def _lookup(table: Mapping[str, E], raw: object) -> E | None:
    if not isinstance(raw, str):
        return None
    return table.get(raw.strip().upper())


def normalize_wallet_type(raw: object) -> WalletType | None:
    return _lookup(_WALLETS, raw)


def normalize_order_side(raw: object) -> OrderSide | None:
    return _lookup(_SIDES, raw)


def normalize_order_type(raw: object) -> OrderType | None:
    return _lookup(_TYPES, raw)


def normalize_order_status(raw: object) -> OrderStatus | None:
    return _lookup(_STATUSES, raw)


def normalize_time_in_force(raw: object) -> TimeInForce | None:
    return _lookup(_TIFS, raw)


def normalize_stop_operator(raw: object) -> StopOperator | None:
    return _lookup(_STOPS, raw)


def normalize_chart_interval(raw: object) -> ChartInterval | None:
    return _lookup(_INTERVALS, raw)


def normalize_deposit_status(raw: object) -> DepositStatus | None:
    return _lookup(_DEPOSITS, raw)


def normalize_withdrawal_status(raw: object) -> WithdrawalStatus | None:
    return _lookup(_WITHDRAWALS, raw)
