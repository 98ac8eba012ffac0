"""ALP v3 constants as enums, with alias tables for every spelling ALP uses (accept all, emit one)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final, Generic, TypeVar


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


class Normalizer(Generic[E]):
    """ALP's text for one enum -> its member (case and surrounding space ignored, aliases
    included); None for anything else, a value ALP added later included."""

    def __init__(self, enum_cls: type[E], aliases: Mapping[str, E] | None = None) -> None:
        self._table = {member.value.upper(): member for member in enum_cls}
        self._table.update(aliases or {})

    def __call__(self, raw: object) -> E | None:
        if not isinstance(raw, str):
            return None
        return self._table.get(raw.strip().upper())


normalize_wallet_type: Final = Normalizer(WalletType, WALLET_ALIASES)
normalize_order_side: Final = Normalizer(OrderSide, SIDE_ALIASES)
normalize_order_type: Final = Normalizer(OrderType)
normalize_order_status: Final = Normalizer(OrderStatus, STATUS_ALIASES)
normalize_time_in_force: Final = Normalizer(TimeInForce)
normalize_stop_operator: Final = Normalizer(StopOperator)
normalize_chart_interval: Final = Normalizer(ChartInterval)
normalize_deposit_status: Final = Normalizer(DepositStatus)
normalize_withdrawal_status: Final = Normalizer(WithdrawalStatus, WITHDRAWAL_ALIASES)
