"""One builder per ALP REST endpoint: method, path, query and the body bytes that will be signed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.core.constants import OUTBOUND_WALLET
from gateway.core.decimals import format_decimal
from gateway.core.json_codec import dumps_body
from gateway.core.validation import CancelAll, CancelByIds, CancelByPair, CancelTarget, OrderSpec

Query = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class RestRequest:
    method: str
    path: str  # relative to the API base, e.g. "/trading/order"
    query: Query = ()
    body: bytes | None = None
    private: bool = False
    signed: bool = False
    idempotent: bool = True

    def __repr__(self) -> str:  # bodies may hold credentials (/auth): never print them
        return f"RestRequest({self.method} {self.path}, query={self.query!r})"


def _query(**params: Any) -> Query:
    items: list[tuple[str, str]] = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            items.append((key, "1" if value else "0"))
        else:
            items.append((key, str(value)))
    return tuple(items)


def _get(path: str, *, private: bool = False, **params: Any) -> RestRequest:
    return RestRequest("GET", path, _query(**params), private=private)


def server_time() -> RestRequest:
    return _get("/time")


def currency_rates() -> RestRequest:
    return _get("/currency-rates")


def currencies() -> RestRequest:
    return _get("/currencies")


def pairs(currency1: str | None = None, currency2: str | None = None) -> RestRequest:
    return _get("/pairs", currency1=currency1, currency2=currency2)


def tickers(pair: str | None = None) -> RestRequest:
    return _get("/ticker", pair=pair)


def order_book(
    pair: str, limit_buy: int | None = None, limit_sell: int | None = None
) -> RestRequest:
    return _get("/orderbook", pair=pair, limit_buy=limit_buy, limit_sell=limit_sell)


def candles(
    pair: str,
    interval: str,
    since: int | None = None,
    until: int | None = None,
    limit: int | None = None,
) -> RestRequest:
    return _get("/charts", pair=pair, interval=interval, since=since, until=until, limit=limit)


def public_trades(pair: str, limit: int | None = None) -> RestRequest:
    return _get("/trades", pair=pair, limit=limit)


def accounts(include_subaccounts: bool = False) -> RestRequest:
    return _get("/accounts/accounts", private=True, include_subaccounts=include_subaccounts or None)


def balances() -> RestRequest:
    return _get("/accounts/balances", private=True)


def fee_info() -> RestRequest:
    return _get("/accounts/feeinfo", private=True)


def orders() -> RestRequest:
    return _get("/accounts/order", private=True)


def account_trades(
    pair: str | None = None,
    side: str | None = None,
    start_time: int | None = None,
    end_time: int | None = None,
    limit: int | None = None,
) -> RestRequest:
    return _get(
        "/accounts/trades",
        private=True,
        pair=pair,
        side=side,
        start_time=start_time,
        end_time=end_time,
        limit=limit,
    )


def activity(limit: int | None = None, offset: int | None = None) -> RestRequest:
    return _get("/accounts/activity", private=True, limit=limit, offset=offset)


def order_terms(spec: OrderSpec) -> dict[str, str]:
    """The amounts, prices and stop operator an order sets, as ALP's body spells them (also what
    the trading audit records of them)."""
    terms: dict[str, str] = {}
    for name in ("base_amount", "quote_amount", "limit_price", "stop_price"):
        value = getattr(spec, name)
        if value is not None:
            terms[name] = format_decimal(value)
    if spec.stop_operator is not None:
        terms["stop_operator"] = spec.stop_operator.value
    return terms


def place_order(spec: OrderSpec, *, wallet_spelling: str = "docs") -> RestRequest:
    """Only the documented fields, in the documented order; amounts as decimal strings."""
    body: dict[str, Any] = {
        "pair": spec.pair,
        "order_type": spec.order_type.value,
        "order_side": spec.side.value,
        "wallet_type": OUTBOUND_WALLET[wallet_spelling][spec.wallet_type],
        **order_terms(spec),
    }
    if spec.client_order_id is not None:
        body["client_order_id"] = spec.client_order_id
    if spec.post_only:
        body["post_only"] = True
    return RestRequest(
        "POST", "/trading/order", body=dumps_body(body), private=True, signed=True, idempotent=False
    )


def cancel_orders(target: CancelTarget) -> RestRequest:
    body: dict[str, Any]
    if isinstance(target, CancelByIds):
        body = {"order_ids": list(target.ids)}
    elif isinstance(target, CancelAll):
        body = {"all": True}
    elif isinstance(target, CancelByPair):
        body = {"pair": target.pair}
    else:  # pragma: no cover - exhaustive
        raise TypeError(target)
    return RestRequest(
        "DELETE",
        "/trading/order",
        body=dumps_body(body),
        private=True,
        signed=True,
        idempotent=False,
    )


def auth(api_key: str, api_secret: str) -> RestRequest:
    """POST /auth; signed like the official client does (the body is signed with the secret)."""
    body = dumps_body({"api_key": api_key, "api_secret": api_secret})
    return RestRequest("POST", "/auth", body=body, signed=True, idempotent=False)
