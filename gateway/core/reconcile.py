"""Reconciliation of an ambiguous PlaceOrder by what ALP returns (pure).

ALP's order object carries no client_order_id, so an order is recognised by its parameters: a
newer order than the mark noted before sending (id above the newest id known then, created no
earlier than the send time minus a clock-skew allowance) with the same pair, side, type, wallet,
amount and prices, not already claimed by another intent. `GET /accounts/order` lists only the
100 newest orders: when the list is full and reaches no further back than the mark, orders may
be hidden beyond it, and "none found" proves nothing.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from gateway.core.constants import OrderType
from gateway.core.models import Order
from gateway.core.validation import OrderSpec

LISTED_ORDERS = 100  # GET /accounts/order returns at most this many, newest first


@dataclass(frozen=True, slots=True)
class Mark:
    """What was known just before sending: the newest order id seen (if any) and the time."""

    newest_id: int | None
    sent_at: float  # Unix seconds, the gateway's clock
    skew_s: float = 5.0  # tolerated difference between the gateway's and ALP's clocks


class Verdict(enum.Enum):
    FOUND = "found"  # exactly one candidate
    ABSENT = "absent"  # the list reaches back past the mark and holds no candidate
    SEVERAL = "several"  # more than one candidate: cannot tell which is ours
    INCOMPLETE = "incomplete"  # no candidate, but the list may hide it (100-order window)


@dataclass(frozen=True, slots=True)
class Lookup:
    verdict: Verdict
    candidates: tuple[int, ...]


def _is_newer(order: Order, mark: Mark) -> bool:
    if mark.newest_id is not None:
        return order.id > mark.newest_id
    if order.date is None:
        return True  # cannot exclude it by time: stays a candidate
    return _unix(order.date) >= mark.sent_at - mark.skew_s


def _unix(moment: datetime) -> float:
    return moment.timestamp()


def _same(value: Decimal | None, wanted: Decimal | None) -> bool:
    return wanted is None or (value is not None and value == wanted)


def matches(order: Order, spec: OrderSpec) -> bool:
    """Does `order` (as ALP lists it) carry the parameters `spec` asked for?"""
    if order.pair != spec.pair or order.side is not spec.side:
        return False
    if order.type is not spec.order_type:
        return False
    if order.wallet_type is not None and order.wallet_type is not spec.wallet_type:
        return False
    if spec.order_type in (OrderType.LIMIT, OrderType.STOP_LIMIT) and not _same(
        order.price, spec.limit_price
    ):
        return False
    if spec.order_type in (OrderType.STOP_LIMIT, OrderType.STOP_MARKET) and not _same(
        order.stop_price, spec.stop_price
    ):
        return False
    # a market buy by quote amount is listed with the base amount it bought: not comparable
    by_quote = spec.order_type is OrderType.MARKET and spec.quote_amount is not None
    return by_quote or _same(order.amount, spec.base_amount)


def lookup(
    orders: Sequence[Order], spec: OrderSpec, mark: Mark, claimed: Collection[int] = ()
) -> Lookup:
    """Decide from one `GET /accounts/order` listing (newest first)."""
    candidates = tuple(
        o.id for o in orders if o.id not in claimed and _is_newer(o, mark) and matches(o, spec)
    )
    if len(candidates) == 1:
        return Lookup(Verdict.FOUND, candidates)
    if candidates:
        return Lookup(Verdict.SEVERAL, candidates)
    if len(orders) >= LISTED_ORDERS and all(_is_newer(o, mark) for o in orders):
        return Lookup(Verdict.INCOMPLETE, ())
    return Lookup(Verdict.ABSENT, ())


def newest_id(orders: Sequence[Order]) -> int | None:
    return max((o.id for o in orders), default=None)
