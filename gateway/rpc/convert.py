"""Domain values <-> protobuf: decimals as plain strings, times as Timestamps, enums by table."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Final

from alp.v3 import account_pb2, common_pb2, market_data_pb2, trading_pb2
from google.protobuf import timestamp_pb2

from gateway.core import constants, models
from gateway.core.decimals import format_decimal
from gateway.core.validation import OrderDraft, OrderSpec
from gateway.errors import ValidationError

_NANOS: Final = Decimal(1_000_000_000)


def dec(value: Decimal | None) -> str:
    return "" if value is None else format_decimal(value)


def timestamp(value: Decimal | datetime | int | None) -> timestamp_pb2.Timestamp | None:
    """Unix seconds (exact, possibly fractional) or an aware datetime; None stays unset."""
    if value is None:
        return None
    if isinstance(value, datetime):
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(value)
        return stamp
    seconds = Decimal(value)
    whole = int(seconds.to_integral_value(rounding="ROUND_FLOOR"))
    nanos = int(((seconds - whole) * _NANOS).to_integral_value(rounding="ROUND_HALF_EVEN"))
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    return timestamp_pb2.Timestamp(seconds=whole, nanos=nanos)


def unix_seconds(request: Any, field: str) -> int | None:
    """A request Timestamp as whole Unix seconds for ALP, None when unset."""
    if not request.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(request, field)
    if stamp.seconds < 0 or stamp.seconds > 253402300799:
        raise ValidationError(field, "must be between 1970-01-01 and 9999-12-31")
    return int(stamp.seconds)


def _enum_table(enum_cls: type[Enum], proto_enum: Any, prefix: str) -> dict[Enum, Any]:
    return {member: proto_enum.Value(prefix + member.name) for member in enum_cls}


WALLET: Final = _enum_table(constants.WalletType, common_pb2.WalletType, "WALLET_TYPE_")
SIDE: Final = _enum_table(constants.OrderSide, common_pb2.OrderSide, "ORDER_SIDE_")
ORDER_TYPE: Final = _enum_table(constants.OrderType, common_pb2.OrderType, "ORDER_TYPE_")
STATUS: Final = _enum_table(constants.OrderStatus, common_pb2.OrderStatus, "ORDER_STATUS_")
TIF: Final = _enum_table(constants.TimeInForce, common_pb2.TimeInForce, "TIME_IN_FORCE_")
STOP_OPERATOR: Final = _enum_table(
    constants.StopOperator, common_pb2.StopOperator, "STOP_OPERATOR_"
)
CHART_INTERVAL: Final[dict[Any, str]] = {
    common_pb2.CHART_INTERVAL_ONE_MINUTE: "1",
    common_pb2.CHART_INTERVAL_FIVE_MINUTES: "5",
    common_pb2.CHART_INTERVAL_FIFTEEN_MINUTES: "15",
    common_pb2.CHART_INTERVAL_THIRTY_MINUTES: "30",
    common_pb2.CHART_INTERVAL_ONE_HOUR: "60",
    common_pb2.CHART_INTERVAL_FOUR_HOURS: "240",
    common_pb2.CHART_INTERVAL_ONE_DAY: "1D",
}
_SIDE_TEXT: Final[dict[Any, str]] = {
    common_pb2.ORDER_SIDE_BUY: "BUY",
    common_pb2.ORDER_SIDE_SELL: "SELL",
}
_WALLET_TEXT: Final[dict[Any, str]] = {
    common_pb2.WALLET_TYPE_UNSPECIFIED: "",
    common_pb2.WALLET_TYPE_SPOT: "SPOT",
    common_pb2.WALLET_TYPE_MARGIN_CROSS: "MARGIN_CROSS",
    common_pb2.WALLET_TYPE_MARGIN_ISOLATED: "MARGIN_ISOLATED",
    common_pb2.WALLET_TYPE_FUNDING: "FUNDING",
}
_STOP_TEXT: Final[dict[Any, str]] = {
    common_pb2.STOP_OPERATOR_GTE: "GTE",
    common_pb2.STOP_OPERATOR_LTE: "LTE",
}
_CANCEL: Final[dict[str, Any]] = {
    "CANCELLED": trading_pb2.CANCEL_STATUS_CANCELLED,
    "NOT_FOUND": trading_pb2.CANCEL_STATUS_NOT_FOUND,
}


def enum_value(table: dict[Enum, Any], value: Enum | None) -> Any:
    return 0 if value is None else table.get(value, 0)


def chart_interval(value: Any) -> str:
    text = CHART_INTERVAL.get(value)
    if text is None:
        raise ValidationError("interval", "required: one of the ChartInterval values")
    return text


def side_filter(value: Any) -> str | None:
    if value == common_pb2.ORDER_SIDE_UNSPECIFIED:
        return None
    text = _SIDE_TEXT.get(value)
    if text is None:
        raise ValidationError("side", "unknown OrderSide value")
    return text


def currency_code(value: str, field: str) -> str:
    if not (2 <= len(value) <= 16 and value.isascii() and value.isalnum() and value.isupper()):
        raise ValidationError(field, "must be an upper-case currency code such as BTC")
    return value


def currency(c: models.Currency) -> market_data_pb2.Currency:
    return market_data_pb2.Currency(short_name=c.short_name, sign=c.sign)


def pair(p: models.Pair) -> market_data_pb2.Pair:
    return market_data_pb2.Pair(
        name=p.name,
        currency1=p.currency1,
        currency2=p.currency2,
        price_precision=p.price_precision,
        amount_precision=p.amount_precision,
        minimum_order_size=dec(p.minimum_order_size),
        maximum_order_size=dec(p.maximum_order_size),
        minimum_order_value=dec(p.minimum_order_value),
    )


def ticker(t: models.Ticker) -> market_data_pb2.Ticker:
    return market_data_pb2.Ticker(
        pair=t.pair,
        last=dec(t.last),
        open=dec(t.open),
        vol=dec(t.vol),
        buy=dec(t.buy),
        sell=dec(t.sell),
        high=dec(t.high),
        low=dec(t.low),
        diff=dec(t.diff),
        diff_percent=dec(t.diff_percent),
        price_precision=t.price_precision or 0,
        amount_precision=t.amount_precision or 0,
        timestamp=timestamp(t.timestamp),
    )


def levels(items: Any) -> list[common_pb2.PriceLevel]:
    return [
        common_pb2.PriceLevel(price=dec(level.price), amount=dec(level.amount)) for level in items
    ]


def candle(c: models.Candle) -> market_data_pb2.Candle:
    return market_data_pb2.Candle(
        time=timestamp(c.time),
        open=dec(c.open),
        close=dec(c.close),
        low=dec(c.low),
        high=dec(c.high),
        volume=dec(c.volume),
        quote_volume=dec(c.quote_volume),
        trades_count=c.trades_count,
        taker_buy_base_volume=dec(c.taker_buy_base_volume),
        taker_buy_quote_volume=dec(c.taker_buy_quote_volume),
    )


def public_trade(t: models.PublicTrade) -> market_data_pb2.PublicTrade:
    return market_data_pb2.PublicTrade(
        id=t.id,
        price=dec(t.price),
        amount=dec(t.amount),
        timestamp=timestamp(t.timestamp),
        pair=t.pair,
        side=enum_value(SIDE, t.type),
        side_raw=t.type_raw,
    )


def account(a: models.Account) -> account_pb2.Account:
    message = account_pb2.Account(id=a.id, email=a.email or "", name=a.name or "")
    if a.parent_id is not None:
        message.parent_id = a.parent_id
    return message


def _wallet_row(w: models.Balance | models.Activity) -> dict[str, Any]:
    """The fields a Balance and an Activity entry share."""
    return {
        "currency": w.currency,
        "wallet_type": enum_value(WALLET, w.wallet_type),
        "wallet_type_raw": w.wallet_type_raw,
        "balance": dec(w.balance),
        "reserve": dec(w.reserve),
        "last_update_at": timestamp(w.last_update_at),
        "account_id": w.account_id or 0,
    }


def balance(b: models.Balance) -> account_pb2.Balance:
    return account_pb2.Balance(**_wallet_row(b), available=dec(b.balance - b.reserve))


def fee_rule(f: models.FeeRule) -> account_pb2.FeeRule:
    message = account_pb2.FeeRule(
        account_id=f.account_id or 0,
        active_from=timestamp(f.active_from),
        active_to=timestamp(f.active_to),
        taker_fee_rate=dec(f.taker_fee_rate),
        maker_fee_rate=dec(f.maker_fee_rate),
        priority=f.priority or 0,
        is_active=bool(f.is_active),
    )
    if f.fee_currency is not None:
        message.fee_currency = f.fee_currency
    if f.currency is not None:
        message.currency_id = f.currency
    if f.pair is not None:
        message.pair_id = f.pair
    return message


def order(o: models.Order) -> account_pb2.Order:
    message = account_pb2.Order(
        id=o.id,
        account_id=o.account_id or 0,
        pair=o.pair,
        amount=dec(o.amount),
        price=dec(o.price),
        side=enum_value(SIDE, o.side),
        side_raw=o.side_raw,
        status=enum_value(STATUS, o.status),
        status_raw=o.status_raw,
        type=enum_value(ORDER_TYPE, o.type),
        type_raw=o.type_raw,
        wallet_type=enum_value(WALLET, o.wallet_type),
        wallet_type_raw=o.wallet_type_raw,
        amount_canceled=dec(o.amount_canceled),
        amount_filled=dec(o.amount_filled),
        date=timestamp(o.date),
        open_at=timestamp(o.open_at),
        tif=enum_value(TIF, o.tif),
        tif_raw=o.tif_raw,
        updated_at=timestamp(o.updated_at),
        done_at=timestamp(o.done_at),
        expire_after=timestamp(o.expire_after),
        stop_operator=enum_value(STOP_OPERATOR, o.stop_operator),
    )
    if o.stop_price is not None:
        message.stop_price = dec(o.stop_price)
    if o.quote_amount is not None:
        message.quote_amount = dec(o.quote_amount)
    if o.client_order_id is not None:
        message.client_order_id = o.client_order_id
    return message


def account_trade(t: models.AccountTrade) -> account_pb2.AccountTrade:
    return account_pb2.AccountTrade(
        id=t.id,
        pair=t.pair,
        side=enum_value(SIDE, t.side),
        side_raw=t.side_raw,
        price=dec(t.price),
        amount=dec(t.amount),
        fee=dec(t.fee),
        timestamp=timestamp(t.timestamp),
        order_id=t.order_id or 0,
    )


def activity(a: models.Activity) -> account_pb2.Activity:
    return account_pb2.Activity(**_wallet_row(a), op_type=a.op_type or 0)


def cancel_outcome(o: models.CancelOutcome) -> trading_pb2.CancelOutcome:
    status = _CANCEL.get(o.outcome.name, trading_pb2.CANCEL_STATUS_OTHER)
    return trading_pb2.CancelOutcome(status=status, raw=o.raw)


def order_draft(request: trading_pb2.PlaceOrderRequest) -> OrderDraft:
    """The caller's order as text, for core validation (which names fields by their proto path)."""
    kind = request.WhichOneof("order") or ""
    fields: dict[str, Any] = {
        "base_amount": None,
        "quote_amount": None,
        "limit_price": None,
        "stop_price": None,
        "stop_operator": None,
        "post_only": False,
    }
    if kind:
        body = getattr(request, kind)
        for name in ("base_amount", "limit_price", "stop_price"):
            if name in body.DESCRIPTOR.fields_by_name:
                fields[name] = getattr(body, name)
        if kind == "market":
            which = body.WhichOneof("amount")
            fields["base_amount"] = body.base_amount if which == "base_amount" else None
            fields["quote_amount"] = body.quote_amount if which == "quote_amount" else None
        if "stop_operator" in body.DESCRIPTOR.fields_by_name:
            fields["stop_operator"] = _STOP_TEXT.get(body.stop_operator, "")
        if kind == "limit":
            fields["post_only"] = body.post_only
    return OrderDraft(
        pair=request.pair,
        side=_SIDE_TEXT.get(request.side, ""),
        wallet_type=_WALLET_TEXT.get(request.wallet_type, "?"),
        kind=kind,
        client_order_id=request.client_order_id if request.HasField("client_order_id") else None,
        **fields,
    )


def with_client_order_id(spec: OrderSpec, client_order_id: str) -> OrderSpec:
    return dataclasses.replace(spec, client_order_id=client_order_id)
