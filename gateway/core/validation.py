"""Caller input checks before anything goes upstream; field paths are the proto field names.

Every check collects all violations so a caller fixes its request in one round trip.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from gateway.core.constants import OrderSide, OrderType, StopOperator, WalletType
from gateway.core.decimals import DecimalFormatError, decimal_places, parse_caller_decimal
from gateway.core.models import Pair
from gateway.errors import ValidationError

PAIR_PATTERN: Final = re.compile(r"[A-Z0-9]{2,16}_[A-Z0-9]{2,16}")
CLIENT_ORDER_ID_PATTERN: Final = re.compile(r"[\x21-\x7e]{1,64}")
MAX_CANCEL_IDS: Final = 1000
MAX_ORDER_ID: Final = 2**63 - 1

# kind (proto oneof member) -> (ALP order type, required fields, allowed fields)
ORDER_KINDS: Final[dict[str, tuple[OrderType, tuple[str, ...], tuple[str, ...]]]] = {
    "limit": (OrderType.LIMIT, ("base_amount", "limit_price"), ("base_amount", "limit_price")),
    "market": (OrderType.MARKET, (), ("base_amount", "quote_amount")),
    "stop_limit": (
        OrderType.STOP_LIMIT,
        ("base_amount", "limit_price", "stop_price", "stop_operator"),
        ("base_amount", "limit_price", "stop_price", "stop_operator"),
    ),
    "stop_market": (
        OrderType.STOP_MARKET,
        ("base_amount", "stop_price", "stop_operator"),
        ("base_amount", "stop_price", "stop_operator"),
    ),
}
WALLETS: Final = {"": WalletType.SPOT, **{w.value: w for w in WalletType}}


@dataclass(frozen=True)
class OrderDraft:
    """What the caller sent, still text; empty/None means unset."""

    pair: str
    side: str
    wallet_type: str
    kind: str
    base_amount: str | None
    quote_amount: str | None
    limit_price: str | None
    stop_price: str | None
    stop_operator: str | None
    client_order_id: str | None
    post_only: bool


@dataclass(frozen=True)
class OrderSpec:
    pair: str
    side: OrderSide
    wallet_type: WalletType
    order_type: OrderType
    base_amount: Decimal | None
    quote_amount: Decimal | None
    limit_price: Decimal | None
    stop_price: Decimal | None
    stop_operator: StopOperator | None
    client_order_id: str | None
    post_only: bool


@dataclass(frozen=True)
class CancelByIds:
    ids: tuple[int, ...]


@dataclass(frozen=True)
class CancelAll:
    pass


@dataclass(frozen=True)
class CancelByPair:
    pair: str


CancelTarget = CancelByIds | CancelAll | CancelByPair


class _Violations:
    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field: str, description: str) -> None:
        self.items.append((field, description))

    def raise_if_any(self) -> None:
        if self.items:
            error = ValidationError(*self.items[0])
            error.violations = list(self.items)
            raise error


def validate_pair(value: str, field: str = "pair") -> str:
    if not PAIR_PATTERN.fullmatch(value or ""):
        raise ValidationError(field, "must be an upper-case pair symbol such as BTC_USDT")
    return value


def validate_limit(value: int | None, field: str, maximum: int) -> int | None:
    if value is None or value == 0:
        return None
    if not 1 <= value <= maximum:
        raise ValidationError(field, f"must be between 1 and {maximum}")
    return value


def validate_time_range(
    start: int | None, end: int | None, start_field: str, end_field: str
) -> None:
    if start is not None and end is not None and end <= start:
        raise ValidationError(end_field, f"must be after {start_field}")


def _positive(text: str | None, field: str, problems: _Violations) -> Decimal | None:
    if text is None or text == "":
        return None
    try:
        value = parse_caller_decimal(text)
    except DecimalFormatError as exc:
        problems.add(field, str(exc))
        return None
    if value <= 0:
        problems.add(field, "must be greater than 0")
        return None
    return value


def validate_order(draft: OrderDraft, rules: Pair | None) -> OrderSpec:
    problems = _Violations()
    if not PAIR_PATTERN.fullmatch(draft.pair or ""):
        problems.add("pair", "must be an upper-case pair symbol such as BTC_USDT")
    side = {"BUY": OrderSide.BUY, "SELL": OrderSide.SELL}.get(draft.side)
    if side is None:
        problems.add("side", "required: ORDER_SIDE_BUY or ORDER_SIDE_SELL")
    wallet = WALLETS.get(draft.wallet_type)
    if wallet is None:
        problems.add("wallet_type", "unknown wallet type")
    cid = draft.client_order_id
    if cid is not None and not CLIENT_ORDER_ID_PATTERN.fullmatch(cid):
        problems.add("client_order_id", "1 to 64 printable ASCII characters without spaces")
    kind = ORDER_KINDS.get(draft.kind)
    if kind is None:
        problems.add("order", "set exactly one of limit, market, stop_limit, stop_market")
        problems.raise_if_any()
    assert kind is not None
    order_type, required, _ = kind
    prefix = draft.kind
    texts = {
        "base_amount": draft.base_amount,
        "quote_amount": draft.quote_amount,
        "limit_price": draft.limit_price,
        "stop_price": draft.stop_price,
    }
    values = {name: _positive(text, f"{prefix}.{name}", problems) for name, text in texts.items()}
    for name in required:
        if name == "stop_operator":
            continue
        if not texts.get(name):
            problems.add(f"{prefix}.{name}", "required")
    operator = {"GTE": StopOperator.GTE, "LTE": StopOperator.LTE}.get(draft.stop_operator or "")
    if "stop_operator" in required and operator is None:
        problems.add(f"{prefix}.stop_operator", "required: STOP_OPERATOR_GTE or STOP_OPERATOR_LTE")
    if order_type is OrderType.MARKET and side is not None:
        wanted, unwanted = (
            ("quote_amount", "base_amount")
            if side is OrderSide.BUY
            else ("base_amount", "quote_amount")
        )
        if not texts[wanted]:
            problems.add(f"market.{wanted}", f"required for a market {side.value}")
        if texts[unwanted]:
            problems.add(f"market.{unwanted}", f"not allowed for a market {side.value}")
    if rules is not None:
        _check_rules(prefix, order_type, side, values, rules, problems)
    problems.raise_if_any()
    assert side is not None and wallet is not None
    return OrderSpec(
        pair=draft.pair,
        side=side,
        wallet_type=wallet,
        order_type=order_type,
        base_amount=values["base_amount"],
        quote_amount=values["quote_amount"],
        limit_price=values["limit_price"],
        stop_price=values["stop_price"],
        stop_operator=operator,
        client_order_id=cid,
        post_only=draft.post_only and order_type is OrderType.LIMIT,
    )


def _check_rules(
    prefix: str,
    order_type: OrderType,
    side: OrderSide | None,
    values: dict[str, Decimal | None],
    rules: Pair,
    problems: _Violations,
) -> None:
    for name in ("limit_price", "stop_price"):
        price = values[name]
        if price is not None and decimal_places(price) > rules.price_precision:
            problems.add(f"{prefix}.{name}", f"at most {rules.price_precision} decimal places")
    base = values["base_amount"]
    if base is not None:
        if decimal_places(base) > rules.amount_precision:
            problems.add(
                f"{prefix}.base_amount", f"at most {rules.amount_precision} decimal places"
            )
        elif base < rules.minimum_order_size or base > rules.maximum_order_size:
            problems.add(
                f"{prefix}.base_amount",
                f"must be between {rules.minimum_order_size} and {rules.maximum_order_size}",
            )
    price = values["limit_price"] or values["stop_price"]
    value: Decimal | None = None
    if base is not None and price is not None and order_type is not OrderType.MARKET:
        value = base * price
        field = f"{prefix}.base_amount"
    elif order_type is OrderType.MARKET and values["quote_amount"] is not None:
        value = values["quote_amount"]
        field = "market.quote_amount"
    if value is not None and value < rules.minimum_order_value:
        problems.add(field, f"order value must be at least {rules.minimum_order_value}")


def validate_cancel(kind: str, ids: Sequence[int], pair: str) -> CancelTarget:
    if kind == "order_ids":
        if not ids:
            raise ValidationError("order_ids.ids", "at least one order id")
        if len(ids) > MAX_CANCEL_IDS:
            raise ValidationError("order_ids.ids", f"at most {MAX_CANCEL_IDS} ids")
        if any(i <= 0 or i > MAX_ORDER_ID for i in ids):
            raise ValidationError("order_ids.ids", "ids must be positive")
        if len(set(ids)) != len(ids):
            raise ValidationError("order_ids.ids", "ids must be distinct")
        return CancelByIds(tuple(ids))
    if kind == "all":
        return CancelAll()
    if kind == "pair":
        return CancelByPair(validate_pair(pair, "pair"))
    raise ValidationError("target", "set exactly one of order_ids, all, pair")
