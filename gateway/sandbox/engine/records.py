"""Records the sandbox engine keeps and publishes: orders, trades, wallets, activity, events."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


class ExchangeError(Exception):
    """A rejection in ALP's terms: HTTP status, ALP code, message."""

    def __init__(self, http_status: int, code: str, message: str) -> None:
        super().__init__(f"{http_status} {code}: {message}")
        self.http_status = http_status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class OrderRequest:
    pair: str
    order_type: str
    side: str
    wallet_type: str = "SPOT"
    base_amount: Decimal | None = None
    quote_amount: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    stop_operator: str | None = None
    client_order_id: str | None = None
    post_only: bool = False


@dataclass
class Order:
    """An order as the engine holds it; queries and events hand out copies."""

    id: int
    account_id: int
    pair: str
    side: str  # BUY / SELL
    type: str
    wallet_type: str
    amount: Decimal  # base amount ordered (0 for a market buy by quote amount)
    price: Decimal  # limit price, 0 for market orders
    quote_amount: Decimal | None
    stop_price: Decimal | None
    stop_operator: str | None
    client_order_id: str | None
    post_only: bool
    status: str
    date: float
    open_at: float | None = None
    updated_at: float | None = None
    done_at: float | None = None
    amount_filled: Decimal = Decimal(0)
    amount_canceled: Decimal = Decimal(0)
    value_filled: Decimal = Decimal(0)
    reserved: Decimal = Decimal(0)  # still locked for this order, in `reserve_currency`
    reserve_currency: str = ""
    triggered: bool = True
    tif: str = "GTC"

    @property
    def remaining(self) -> Decimal:
        return self.amount - self.amount_filled - self.amount_canceled

    @property
    def average_price(self) -> Decimal:
        return self.value_filled / self.amount_filled if self.amount_filled else Decimal(0)

    @property
    def is_open(self) -> bool:
        return self.status in ("PENDING", "OPEN", "PARTIAL_FILLED")


@dataclass(frozen=True)
class PublicTrade:
    id: int
    pair: str
    price: Decimal
    amount: Decimal
    timestamp: float
    type: str  # taker side, "buy" / "sell"


@dataclass(frozen=True)
class AccountTrade:
    id: int
    pair: str
    side: str
    price: Decimal
    amount: Decimal
    fee: Decimal
    timestamp: float
    order_id: int


@dataclass
class Wallet:
    balance: Decimal = Decimal(0)
    reserve: Decimal = Decimal(0)
    last_update_at: float = 0.0


@dataclass(frozen=True)
class Balance:
    balance: Decimal
    reserve: Decimal
    currency: str
    wallet_type: str
    last_update_at: float
    account_id: int


@dataclass(frozen=True)
class Activity(Balance):
    """An entry of the account's activity: ALP gives it a balance row's fields (here the change
    of balance and reserve) plus the kind of operation."""

    op_type: int


@dataclass(frozen=True)
class AccountInfo:
    id: int
    email: str
    name: str
    parent_id: int | None = None


@dataclass(frozen=True)
class BookView:
    buy: list[tuple[Decimal, Decimal]] = field(default_factory=list)
    sell: list[tuple[Decimal, Decimal]] = field(default_factory=list)


@dataclass(frozen=True)
class Ticker:
    pair: str
    last: Decimal
    open: Decimal
    vol: Decimal
    buy: Decimal
    sell: Decimal
    high: Decimal
    low: Decimal
    diff: Decimal
    diff_percent: Decimal
    price_precision: int
    amount_precision: int
    timestamp: float
    quote_volume: Decimal = Decimal(0)


@dataclass(frozen=True)
class Candle:
    time: int
    open: Decimal
    close: Decimal
    low: Decimal
    high: Decimal
    volume: Decimal
    quote_volume: Decimal
    trades_count: int
    taker_buy_base_volume: Decimal
    taker_buy_quote_volume: Decimal


@dataclass(frozen=True)
class TradeEvent:
    pair: str
    trade_id: int
    amount: Decimal
    price: Decimal
    taker_side: str
    ts: float


@dataclass(frozen=True)
class BookEvent:
    pair: str
    asks: list[tuple[Decimal, Decimal]]
    bids: list[tuple[Decimal, Decimal]]
    ts: float


@dataclass(frozen=True)
class OrderEvent:
    account_id: int
    order: Order
    ts: float


@dataclass(frozen=True)
class WalletEvent:
    account_id: int
    currency: str
    wallet_type: str
    balance: Decimal
    reserve: Decimal
    ts: float


Event = TradeEvent | BookEvent | OrderEvent | WalletEvent
