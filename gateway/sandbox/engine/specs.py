"""What the sandbox exchange lists: pairs with their rules, currencies, fee rules, demo prices."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class PairSpec:
    pair_id: int
    name: str
    base: str
    quote: str
    price_precision: int
    amount_precision: int
    min_order_size: Decimal
    max_order_size: Decimal
    min_order_value: Decimal


@dataclass(frozen=True)
class CurrencySpec:
    currency_id: int
    code: str
    sign: str
    precision: int = 8


@dataclass(frozen=True)
class FeeRule:
    account_id: int
    maker_rate: Decimal
    taker_rate: Decimal
    priority: int = 1
    fee_currency: str | None = None
    currency_id: int | None = None
    pair_id: int | None = None
    active_from: float | None = None
    active_to: float | None = None
    is_active: bool = True


D = Decimal
_CURRENCIES = [
    "USDT",
    "BTC",
    "ETH",
    "LTC",
    "XRP",
    "DOGE",
    "TRX",
    "SOL",
    "BNB",
    "ADA",
    "DOT",
    "LINK",
    "MATIC",
    "AVAX",
    "ATOM",
    "XLM",
    "USDC",
]
# name, price precision, amount precision, min size, max size, min value, demo mid price
_PAIRS = (
    ("BTC_USDT", 2, 6, "0.0001", "100", "5", "30000"),
    ("ETH_USDT", 2, 5, "0.001", "1000", "5", "2000"),
    ("ETH_BTC", 6, 4, "0.001", "1000", "0.0001", "0.066"),
    ("LTC_USDT", 2, 4, "0.01", "10000", "5", "70"),
    ("XRP_USDT", 5, 1, "1", "1000000", "5", "0.5"),
    ("DOGE_USDT", 6, 0, "10", "10000000", "5", "0.07"),
    ("TRX_USDT", 6, 0, "10", "10000000", "5", "0.08"),
    ("SOL_USDT", 3, 3, "0.01", "10000", "5", "25"),
    ("BNB_USDT", 2, 4, "0.001", "10000", "5", "220"),
    ("ADA_USDT", 5, 1, "1", "1000000", "5", "0.3"),
    ("DOT_USDT", 3, 2, "0.1", "100000", "5", "5"),
    ("LINK_USDT", 3, 2, "0.1", "100000", "5", "7"),
    ("MATIC_USDT", 5, 1, "1", "1000000", "5", "0.6"),
    ("AVAX_USDT", 3, 2, "0.1", "100000", "5", "12"),
    ("ATOM_USDT", 3, 2, "0.1", "100000", "5", "8"),
    ("XLM_USDT", 5, 0, "10", "10000000", "5", "0.12"),
    ("USDC_USDT", 4, 2, "1", "1000000", "5", "1"),
    ("LTC_BTC", 6, 3, "0.01", "10000", "0.0001", "0.0023"),
)


def default_currencies() -> list[CurrencySpec]:
    return [CurrencySpec(i + 1, code, code) for i, code in enumerate(_CURRENCIES)]


def default_pairs() -> list[PairSpec]:
    return [
        PairSpec(
            pair_id=i + 1,
            name=name,
            base=name.split("_")[0],
            quote=name.split("_")[1],
            price_precision=pp,
            amount_precision=ap,
            min_order_size=D(mn),
            max_order_size=D(mx),
            min_order_value=D(mv),
        )
        for i, (name, pp, ap, mn, mx, mv, _) in enumerate(_PAIRS)
    ]


def default_mid_prices() -> dict[str, Decimal]:
    return {name: D(mid) for name, *_, mid in _PAIRS}
