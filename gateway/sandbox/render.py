"""Engine records -> the exact JSON shapes of the ALP v3 docs."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from gateway.sandbox.engine.records import (
    AccountInfo,
    AccountTrade,
    Activity,
    Balance,
    Candle,
    Order,
    PublicTrade,
    Ticker,
)
from gateway.sandbox.engine.specs import FeeRule, PairSpec

# The docs' response tables spell margin wallets CROSS_MARGIN / ISOLATED_MARGIN (the place-order
# body spells them MARGIN_CROSS / MARGIN_ISOLATED); every response and frame uses this spelling.
RESPONSE_WALLET = {"MARGIN_CROSS": "CROSS_MARGIN", "MARGIN_ISOLATED": "ISOLATED_MARGIN"}


def wallet(engine_spelling: str) -> str:
    return RESPONSE_WALLET.get(engine_spelling, engine_spelling)


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def unix(ts: float) -> Decimal:
    """Unix seconds with microseconds, as ALP's trade timestamps carry them."""
    return Decimal(f"{ts:.6f}")


def pair(p: PairSpec) -> dict[str, Any]:
    return {
        "name": p.name,
        "currency1": p.base,
        "currency2": p.quote,
        "price_precision": p.price_precision,
        "amount_precision": p.amount_precision,
        "minimum_order_size": p.min_order_size,
        "maximum_order_size": p.max_order_size,
        "minimum_order_value": p.min_order_value,
    }


def ticker(t: Ticker) -> dict[str, Any]:
    return {
        "pair": t.pair,
        "last": t.last,
        "open": t.open,
        "vol": t.vol,
        "buy": t.buy,
        "sell": t.sell,
        "high": t.high,
        "low": t.low,
        "diff": t.diff,
        "diff_percent": t.diff_percent,
        "price_precision": t.price_precision,
        "amount_precision": t.amount_precision,
        "timestamp": unix(t.timestamp) if t.timestamp else 0,
    }


def candle(c: Candle) -> dict[str, Any]:
    return {
        "time": c.time,
        "open": c.open,
        "close": c.close,
        "low": c.low,
        "high": c.high,
        "volume": c.volume,
        "quoteVolume": c.quote_volume,
        "tradesCount": c.trades_count,
        "takerBuyBaseVolume": c.taker_buy_base_volume,
        "takerBuyQuoteVolume": c.taker_buy_quote_volume,
    }


def public_trade(t: PublicTrade) -> dict[str, Any]:
    return {
        "id": t.id,
        "price": t.price,
        "amount": t.amount,
        "timestamp": unix(t.timestamp),
        "pair": t.pair,
        "type": t.type,
    }


def account(a: AccountInfo) -> dict[str, Any]:
    out: dict[str, Any] = {"id": a.id, "email": a.email, "name": a.name}
    if a.parent_id is not None:
        out["parent_id"] = a.parent_id
    return out


def balance(b: Balance) -> dict[str, Any]:
    return {
        "balance": b.balance,
        "reserve": b.reserve,
        "currency": b.currency,
        "wallet_type": wallet(b.wallet_type),
        "last_update_at": iso(b.last_update_at),
        "account_id": b.account_id,
    }


def fee_rule(f: FeeRule) -> dict[str, Any]:
    return {
        "account_id": f.account_id,
        "active_once": [iso(f.active_from), iso(f.active_to)],
        "taker_fee_rate": f.taker_rate,
        "maker_fee_rate": f.maker_rate,
        "fee_currency": f.fee_currency,
        "priority": f.priority,
        "currency": f.currency_id,
        "pair": f.pair_id,
        "is_active": f.is_active,
    }


def order(o: Order, *, extra: bool = False) -> dict[str, Any]:
    """The documented 18 fields; `extra` (Extensions.order_extra_fields) adds undocumented ones."""
    out: dict[str, Any] = {
        "id": o.id,
        "account_id": o.account_id,
        "pair": o.pair,
        "amount": o.amount,
        "price": o.price,
        "side": "BID" if o.side == "BUY" else "ASK",
        "status": o.status,
        "type": o.type,
        "wallet_type": wallet(o.wallet_type),
        "amount_canceled": o.amount_canceled,
        "amount_filled": o.amount_filled,
        "date": iso(o.date),
        "open_at": iso(o.open_at),
        "tif": o.tif,
        "updated_at": iso(o.updated_at),
        "done_at": iso(o.done_at),
        "expire_after": None,
        "stop_price": o.stop_price,
    }
    if extra:
        out["stop_operator"] = o.stop_operator
        out["quote_amount"] = o.quote_amount
        out["client_order_id"] = o.client_order_id
    return out


def account_trade(t: AccountTrade) -> dict[str, Any]:
    return {
        "id": t.id,
        "pair": t.pair,
        "side": t.side,
        "price": t.price,
        "amount": t.amount,
        "fee": t.fee,
        "timestamp": unix(t.timestamp),
        "order_id": t.order_id,
    }


def activity(a: Activity) -> dict[str, Any]:
    return {**balance(a), "op_type": a.op_type}


def _s(value: Decimal | None) -> str:
    return "" if value is None else format(value, "f")


def order_frame(o: Order, ts: float) -> list[Any]:
    """The 19-element `o` frame in API-NOTES order (values as strings)."""
    return [
        "o",
        int(ts),
        o.id,
        o.pair,
        "BID" if o.side == "BUY" else "ASK",
        o.type,
        _s(o.amount),
        _s(o.price),
        _s(o.remaining),
        _s(o.amount_filled),
        _s(o.amount_canceled),
        _s(o.value_filled),
        _s(o.average_price),
        unix(o.done_at) if o.done_at else None,
        o.status,
        _s(o.quote_amount) if o.quote_amount else "0",
        wallet(o.wallet_type),
        _s(o.stop_price) if o.stop_price else "0.00",
        o.stop_operator or "",
    ]
