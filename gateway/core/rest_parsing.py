"""ALP REST answers (already JSON-decoded with exact numbers) -> domain records, tolerant where ALP
varies (API-NOTES) and strict elsewhere: any shape problem is an UpstreamProtocolError naming the
endpoint and field, never a KeyError or TypeError."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from gateway.core import constants, models
from gateway.core.decimals import DecimalFormatError, parse_decimal
from gateway.core.json_codec import loads_exact
from gateway.errors import UpstreamHttpError, UpstreamProtocolError

T = TypeVar("T")
_DELAY_SECONDS = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?")


class _Row:
    """Typed access to one JSON object of an endpoint's answer."""

    __slots__ = ("data", "endpoint")

    def __init__(self, endpoint: str, data: object) -> None:
        if not isinstance(data, Mapping):
            raise UpstreamProtocolError(
                f"{endpoint}: expected an object, got {type(data).__name__}"
            )
        self.endpoint = endpoint
        self.data = data

    def _fail(self, key: str, what: str) -> UpstreamProtocolError:
        return UpstreamProtocolError(f"{self.endpoint}: field {key!r} {what}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def dec(self, key: str) -> Decimal:
        if key not in self.data or self.data[key] is None:
            raise self._fail(key, "is missing")
        try:
            return parse_decimal(self.data[key])
        except DecimalFormatError as exc:
            raise self._fail(key, "is not an exact number") from exc

    def opt_dec(self, key: str) -> Decimal | None:
        return self.dec(key) if self.has(key) else None

    def integer(self, key: str) -> int:
        value = self.data.get(key)
        if isinstance(value, bool) or value is None:
            raise self._fail(key, "is missing or not an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            try:  # isdigit() admits "--5" and "²", which int() refuses
                return int(value)
            except ValueError:
                pass
        raise self._fail(key, "is not an integer")

    def opt_integer(self, key: str) -> int | None:
        return self.integer(key) if self.has(key) else None

    def text(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str):
            raise self._fail(key, "is missing or not text")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
        raise self._fail(key, "is not text")

    def raw(self, key: str) -> str:
        value = self.data.get(key)
        return "" if value is None else str(value)

    def boolean(self, key: str) -> bool:
        value = self.data.get(key)
        if isinstance(value, bool):
            return value
        if value in (0, 1):
            return bool(value)
        raise self._fail(key, "is not a boolean")

    def time(self, key: str) -> datetime | None:
        return _iso(self.data.get(key), lambda what: self._fail(key, what))

    def unix(self, key: str) -> Decimal | None:
        value = self.opt_dec(key)
        return None if value is None or value == 0 else value


def _iso(value: object, fail: Callable[[str], Exception]) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise fail("is not an ISO-8601 time")
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise fail("is not an ISO-8601 time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _rows(endpoint: str, payload: object, build: Callable[[_Row], T]) -> list[T]:
    if not isinstance(payload, list):
        raise UpstreamProtocolError(f"{endpoint}: expected a list, got {type(payload).__name__}")
    return [build(_Row(endpoint, item)) for item in payload]


def parse_server_time(payload: object) -> models.ServerTime:
    row = _Row("GET /time", payload)
    return models.ServerTime(server_time=row.dec("serverTime"))


def parse_currency_rates(payload: object) -> list[models.CurrencyRate]:
    row = _Row("GET /currency-rates", payload)
    return [models.CurrencyRate(str(code), row.dec(str(code))) for code in row.data]


def parse_currencies(payload: object) -> list[models.Currency]:
    return _rows(
        "GET /currencies",
        payload,
        lambda r: models.Currency(short_name=r.text("short_name"), sign=r.raw("sign")),
    )


def parse_pairs(payload: object) -> list[models.Pair]:
    return _rows(
        "GET /pairs",
        payload,
        lambda r: models.Pair(
            name=r.text("name"),
            currency1=r.text("currency1"),
            currency2=r.text("currency2"),
            price_precision=r.integer("price_precision"),
            amount_precision=r.integer("amount_precision"),
            minimum_order_size=r.dec("minimum_order_size"),
            maximum_order_size=r.dec("maximum_order_size"),
            minimum_order_value=r.dec("minimum_order_value"),
        ),
    )


def _ticker(r: _Row) -> models.Ticker:
    return models.Ticker(
        pair=r.text("pair"),
        last=r.opt_dec("last"),
        open=r.opt_dec("open"),
        vol=r.opt_dec("vol"),
        buy=r.opt_dec("buy"),
        sell=r.opt_dec("sell"),
        high=r.opt_dec("high"),
        low=r.opt_dec("low"),
        diff=r.opt_dec("diff"),
        diff_percent=r.opt_dec("diff_percent"),
        price_precision=r.opt_integer("price_precision"),
        amount_precision=r.opt_integer("amount_precision"),
        timestamp=r.unix("timestamp"),
    )


def parse_tickers(payload: object) -> list[models.Ticker]:
    """API-NOTES: `?pair=` may answer a list or a single object."""
    if isinstance(payload, Mapping):
        return [_ticker(_Row("GET /ticker", payload))]
    return _rows("GET /ticker", payload, _ticker)


def parse_order_book(payload: object) -> models.OrderBook:
    row = _Row("GET /orderbook", payload)

    def side(key: str) -> tuple[models.Level, ...]:
        levels = row.data.get(key) or []
        return tuple(
            _rows(
                "GET /orderbook",
                levels,
                lambda r: models.Level(price=r.dec("price"), amount=r.dec("amount")),
            )
        )

    return models.OrderBook(buy=side("buy"), sell=side("sell"))


def parse_candles(payload: object) -> list[models.Candle]:
    return _rows(
        "GET /charts",
        payload,
        lambda r: models.Candle(
            time=r.dec("time"),
            open=r.dec("open"),
            close=r.dec("close"),
            low=r.dec("low"),
            high=r.dec("high"),
            volume=r.dec("volume"),
            quote_volume=r.opt_dec("quoteVolume"),
            trades_count=r.opt_integer("tradesCount") or 0,
            taker_buy_base_volume=r.opt_dec("takerBuyBaseVolume"),
            taker_buy_quote_volume=r.opt_dec("takerBuyQuoteVolume"),
        ),
    )


def parse_public_trades(payload: object) -> list[models.PublicTrade]:
    return _rows(
        "GET /trades",
        payload,
        lambda r: models.PublicTrade(
            id=r.integer("id"),
            price=r.dec("price"),
            amount=r.dec("amount"),
            timestamp=r.dec("timestamp"),
            pair=r.text("pair"),
            type=constants.normalize_order_side(r.data.get("type")),
            type_raw=r.raw("type"),
        ),
    )


def parse_accounts(payload: object) -> list[models.Account]:
    return _rows(
        "GET /accounts/accounts",
        payload,
        lambda r: models.Account(
            id=r.integer("id"),
            email=r.opt_text("email"),
            name=r.opt_text("name"),
            parent_id=r.opt_integer("parent_id"),
        ),
    )


def _wallet_row(r: _Row) -> dict[str, Any]:
    """The fields a balance and an activity entry share (an entry is a balance plus op_type)."""
    return {
        "balance": r.dec("balance"),
        "reserve": r.opt_dec("reserve") or Decimal(0),
        "currency": r.text("currency"),
        "wallet_type": constants.normalize_wallet_type(r.data.get("wallet_type")),
        "wallet_type_raw": r.raw("wallet_type"),
        "last_update_at": r.time("last_update_at"),
        "account_id": r.opt_integer("account_id"),
    }


def parse_balances(payload: object) -> list[models.Balance]:
    return _rows("GET /accounts/balances", payload, lambda r: models.Balance(**_wallet_row(r)))


def _fee_rule(r: _Row) -> models.FeeRule:
    window = r.data.get("active_once")
    start = end = None
    if window is not None:
        if not isinstance(window, list) or len(window) != 2:
            raise UpstreamProtocolError("GET /accounts/feeinfo: field 'active_once' is not a pair")
        start = _iso(window[0], lambda what: r._fail("active_once[0]", what))
        end = _iso(window[1], lambda what: r._fail("active_once[1]", what))
    return models.FeeRule(
        account_id=r.opt_integer("account_id"),
        active_from=start,
        active_to=end,
        taker_fee_rate=r.dec("taker_fee_rate"),
        maker_fee_rate=r.dec("maker_fee_rate"),
        fee_currency=r.opt_text("fee_currency"),
        priority=r.opt_integer("priority"),
        currency=r.opt_integer("currency"),
        pair=r.opt_integer("pair"),
        is_active=r.boolean("is_active") if r.has("is_active") else True,
    )


def parse_fee_rules(payload: object) -> list[models.FeeRule]:
    return _rows("GET /accounts/feeinfo", payload, _fee_rule)


def _order(r: _Row) -> models.Order:
    return models.Order(
        id=r.integer("id"),
        account_id=r.opt_integer("account_id"),
        pair=r.text("pair"),
        amount=r.opt_dec("amount"),
        price=r.opt_dec("price"),
        side=constants.normalize_order_side(r.data.get("side")),
        side_raw=r.raw("side"),
        status=constants.normalize_order_status(r.data.get("status")),
        status_raw=r.raw("status"),
        type=constants.normalize_order_type(r.data.get("type")),
        type_raw=r.raw("type"),
        wallet_type=constants.normalize_wallet_type(r.data.get("wallet_type")),
        wallet_type_raw=r.raw("wallet_type"),
        amount_canceled=r.opt_dec("amount_canceled"),
        amount_filled=r.opt_dec("amount_filled"),
        date=r.time("date"),
        open_at=r.time("open_at"),
        tif=constants.normalize_time_in_force(r.data.get("tif")),
        tif_raw=r.raw("tif"),
        updated_at=r.time("updated_at"),
        done_at=r.time("done_at"),
        expire_after=r.time("expire_after"),
        stop_price=r.opt_dec("stop_price"),
        quote_amount=r.opt_dec("quote_amount"),
        stop_operator=constants.normalize_stop_operator(r.data.get("stop_operator")),
        client_order_id=r.opt_text("client_order_id"),
    )


def parse_orders(payload: object) -> list[models.Order]:
    return _rows("GET /accounts/order", payload, _order)


def parse_account_trades(payload: object) -> list[models.AccountTrade]:
    return _rows(
        "GET /accounts/trades",
        payload,
        lambda r: models.AccountTrade(
            id=r.integer("id"),
            pair=r.text("pair"),
            side=constants.normalize_order_side(r.data.get("side")),
            side_raw=r.raw("side"),
            price=r.dec("price"),
            amount=r.dec("amount"),
            fee=r.opt_dec("fee"),
            timestamp=r.unix("timestamp"),
            order_id=r.opt_integer("order_id"),
        ),
    )


def parse_activity(payload: object) -> list[models.Activity]:
    return _rows(
        "GET /accounts/activity",
        payload,
        lambda r: models.Activity(**_wallet_row(r), op_type=r.opt_integer("op_type")),
    )


def parse_place_order(payload: object) -> list[int]:
    """`[id, ...]`, or a bare number from older servers."""
    items = payload if isinstance(payload, list) else [payload]
    ids: list[int] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int | Decimal | str):
            raise UpstreamProtocolError("POST /trading/order: answer is not a list of order ids")
        try:
            ids.append(_Row("POST /trading/order", {"id": item}).integer("id"))
        except UpstreamProtocolError:
            raise UpstreamProtocolError("POST /trading/order: order id is not an integer") from None
    if not ids:
        raise UpstreamProtocolError("POST /trading/order: answer holds no order id")
    return ids


def parse_cancel_result(payload: object) -> list[models.CancelOutcome]:
    row = _Row("DELETE /trading/order", payload)
    outcomes: list[models.CancelOutcome] = []
    for key, value in row.data.items():
        try:
            order_id = int(str(key))
        except ValueError:
            raise UpstreamProtocolError(f"DELETE /trading/order: key {key!r} is no id") from None
        outcomes.append(cancel_outcome_of(order_id, "" if value is None else str(value)))
    return outcomes


def cancel_outcome_of(order_id: int, text: str) -> models.CancelOutcome:
    """A per-order cancel answer (or an order status read back after an ambiguous cancel)."""
    upper = text.strip().upper()
    if upper in ("CANCELLED", "CANCELED", "PARTIAL_CANCELED", "PARTIAL_CANCELLED"):
        result = models.CancelResult.CANCELLED
    elif "NOT FOUND" in upper or "NOT_FOUND" in upper:
        result = models.CancelResult.NOT_FOUND
    else:
        result = models.CancelResult.OTHER
    return models.CancelOutcome(order_id, text, result)


def parse_error_body(
    http_status: int, body: bytes, retry_after_header: str | None
) -> UpstreamHttpError:
    """`{"code", "message"}` when ALP sends it; anything else (HTML, empty) still maps by status."""
    code, message = "", ""
    try:
        payload: Any = loads_exact(body) if body.strip() else None
    except UpstreamProtocolError:
        payload = None
    if isinstance(payload, Mapping):
        raw_code = payload.get("code")
        code = "" if raw_code is None or isinstance(raw_code, bool) else str(raw_code)
        raw_message = payload.get("message", payload.get("error", ""))
        message = "" if raw_message is None else str(raw_message)
    elif body.strip():
        message = body[:200].decode("utf-8", "replace").strip()
    return UpstreamHttpError(
        http_status, code, message[:500], retry_after=retry_after_of(retry_after_header)
    )


MAX_RETRY_AFTER_S = 60.0  # a longer (or odd) Retry-After must not stop a pool for hours


def retry_after_of(header: str | None) -> float | None:
    """Retry-After as delay-seconds (RFC 9110: digits; a fraction tolerated), capped; None for
    anything else ("Infinity", "1e9", an HTTP-date): the caller's default pause applies."""
    text = (header or "").strip()
    if not _DELAY_SECONDS.fullmatch(text):
        return None
    return min(float(text), MAX_RETRY_AFTER_S)  # a duration for the limiter's clock, not money
