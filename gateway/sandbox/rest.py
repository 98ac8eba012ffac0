"""Sandbox REST `/api/v3/...`: every documented endpoint, ALP's shapes, codes and statuses."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from gateway.sandbox import render
from gateway.sandbox.auth import Authority
from gateway.sandbox.config import SandboxAccount
from gateway.sandbox.engine.exchange import Exchange
from gateway.sandbox.engine.records import OrderRequest
from gateway.sandbox.wire import Reject, reply

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Docs: "BUY or SELL (also accepts BID / ASK)"; symbols and enums are upper case only.
SIDES = {"BUY": "BUY", "BID": "BUY", "SELL": "SELL", "ASK": "SELL"}
# Docs' place-order spelling; the response spelling (CROSS_MARGIN...) is not accepted in a body.
BODY_WALLET_TYPES = ("SPOT", "MARGIN_CROSS", "MARGIN_ISOLATED", "FUNDING")
# "Base amount as decimal string, e.g. "1.5"": plain digits with an optional fraction and sign;
# JSON numbers and exponents are refused (the docs type these fields as string).
DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")
PAIR_TEXT = re.compile(r"[A-Z0-9]+_[A-Z0-9]+")
CURRENCY_TEXT = re.compile(r"[A-Z0-9]+")
# Which body fields each order type takes (the docs' table); a field outside its column is
# refused (the docs are silent on extra fields: the sandbox takes the stricter reading).
REQUIRED_BY_TYPE: dict[str, tuple[str, ...]] = {
    "LIMIT": ("base_amount", "limit_price"),
    "STOP_LIMIT": ("base_amount", "limit_price", "stop_price", "stop_operator"),
    "STOP_MARKET": ("base_amount", "stop_price", "stop_operator"),
    "MARKET": (),
}
ALLOWED_BY_TYPE: dict[str, frozenset[str]] = {
    "LIMIT": frozenset({"base_amount", "limit_price", "post_only"}),
    "STOP_LIMIT": frozenset({"base_amount", "limit_price", "stop_price", "stop_operator"}),
    "STOP_MARKET": frozenset({"base_amount", "stop_price", "stop_operator"}),
    "MARKET": frozenset({"base_amount", "quote_amount"}),
}
COMMON_FIELDS = frozenset({"pair", "order_type", "order_side", "wallet_type", "client_order_id"})
CANCEL_FIELDS = ("order_ids", "all", "pair")
AUTH_FIELDS = ("api_key", "api_secret")
# client_order_id: the docs give no limit; the sandbox refuses above 64 characters (stricter).
MAX_CLIENT_ORDER_ID = 64
INTERVALS = ("1", "5", "15", "30", "60", "240", "1D")
ORDER_FIELDS = (
    "pair",
    "order_type",
    "order_side",
    "wallet_type",
    "base_amount",
    "quote_amount",
    "limit_price",
    "stop_price",
    "stop_operator",
    "client_order_id",
    "post_only",
)


def _int_param(request: web.Request, name: str, *, low: int, high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if not raw.isascii() or not raw.isdigit():  # int() would take " 5", "+5", "1_0" and "٣"
        raise Reject(400, "1002", f"{name} must be an integer")
    value = int(raw)
    if not low <= value <= high:
        raise Reject(400, "1002", f"{name} must be between {low} and {high}")
    return value


def _bool_param(request: web.Request, name: str) -> bool:
    raw = request.query.get(name, "").lower()
    if raw in ("", "0", "false"):
        return False
    if raw in ("1", "true"):
        return True
    raise Reject(400, "1002", f"{name} must be a boolean")


def _pair_param(request: web.Request, exchange: Exchange) -> str:
    """Missing or unknown pair: 400 BAD_REQUEST (API-NOTES); malformed symbol: 1010 INVALID_PAIR."""
    pair = request.query.get("pair")
    if not pair:
        raise Reject(400, "BAD_REQUEST", "pair is required")
    if not PAIR_TEXT.fullmatch(pair):
        raise Reject(400, "1010", "invalid pair")
    if pair not in {p.name for p in exchange.pairs()}:
        raise Reject(400, "BAD_REQUEST", f"unknown pair {pair[:32]}")
    return pair


def _currency_param(request: web.Request, name: str, exchange: Exchange) -> str | None:
    """Malformed currency code: 1012 INVALID_CURRENCY; well-formed but unknown: 1020."""
    code = request.query.get(name)
    if code is None or code == "":
        return None
    if not CURRENCY_TEXT.fullmatch(code) or len(code) > 16:
        raise Reject(400, "1012", f"invalid currency in {name}")
    if code not in {c.code for c in exchange.currencies()}:
        raise Reject(400, "1020", f"currency {code} not found")
    return code


def _amount(body: Mapping[str, Any], name: str, code: str) -> Decimal | None:
    if name not in body:
        return None
    value = body[name]
    if not isinstance(value, str):
        raise Reject(400, "1002", f"{name} must be a decimal string")
    if not DECIMAL_TEXT.fullmatch(value) or len(value) > 40:
        raise Reject(400, "1002", f"{name} must be a plain decimal string")
    try:
        parsed = Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise Reject(400, code, f"{name} is not a number") from None
    if not parsed > 0:
        raise Reject(400, code, f"{name} must be positive")
    return parsed


def _refuse_unknown(body: Mapping[str, Any], known: tuple[str, ...]) -> None:
    """A field the docs do not list for this endpoint: 422 VALIDATION_ERROR (stricter reading)."""
    for name in body:
        if name not in known:
            raise Reject(422, "VALIDATION_ERROR", f"unknown field {str(name)[:32]}")


def _check_order_body(body: Mapping[str, Any]) -> None:
    """The docs' body rules, before the engine sees anything (status 400 unless noted)."""
    _refuse_unknown(body, ORDER_FIELDS)
    for name in ("pair", "order_type", "order_side", "wallet_type"):
        if name not in body or body[name] in (None, ""):
            raise Reject(400, "1001", f"field {name} is required")
    for name in ("pair", "order_type", "order_side", "wallet_type", "stop_operator"):
        if name in body and not isinstance(body[name], str):
            raise Reject(400, "1002", f"{name} must be text")
    if not PAIR_TEXT.fullmatch(body["pair"]):
        raise Reject(400, "1010", "invalid pair")
    kind = body["order_type"]
    if kind not in REQUIRED_BY_TYPE:
        raise Reject(400, "1006", "invalid order type")
    if body["order_side"] not in SIDES:
        raise Reject(400, "1007", "invalid order side")
    if body["wallet_type"] not in BODY_WALLET_TYPES:
        raise Reject(400, "1002", "invalid wallet type")
    for name in body:
        if name not in COMMON_FIELDS and name not in ALLOWED_BY_TYPE[kind]:
            raise Reject(400, "1002", f"field {name} is not allowed for {kind} orders")
    for name in REQUIRED_BY_TYPE[kind]:
        if name not in body or body[name] in (None, ""):
            raise Reject(400, "1001", f"field {name} is required")
    if kind == "MARKET":
        has_base, has_quote = "base_amount" in body, "quote_amount" in body
        if has_base and has_quote:
            raise Reject(400, "1002", "give base_amount or quote_amount, not both")
        buy = SIDES[body["order_side"]] == "BUY"
        needed = "quote_amount" if buy else "base_amount"
        if needed not in body:
            raise Reject(400, "1001", f"field {needed} is required")
    if "stop_operator" in body and body["stop_operator"] not in ("GTE", "LTE"):
        raise Reject(400, "1009", "stop_operator must be GTE or LTE")
    if "post_only" in body and not isinstance(body["post_only"], bool):
        raise Reject(400, "1002", "post_only must be a boolean")
    if "client_order_id" in body:
        coid = body["client_order_id"]
        if not isinstance(coid, str) or not coid:
            raise Reject(400, "1002", "client_order_id must be non-empty text")
        if len(coid) > MAX_CLIENT_ORDER_ID:
            raise Reject(400, "1002", f"client_order_id is longer than {MAX_CLIENT_ORDER_ID}")


@dataclass(eq=False)  # identity equality: its bound methods are the app's route handlers
class RestApi:
    exchange: Exchange
    authority: Authority
    clock: Callable[[], float]
    on_change: Callable[[], None]
    count_auth: Callable[[], None]
    _: KW_ONLY
    order_extra_fields: bool = False
    cancel_by_ids_empty_202: bool = False

    def routes(self) -> list[web.RouteDef]:
        get, base = web.get, "/api/v3"
        return [
            web.post(f"{base}/auth", self.auth),
            get(f"{base}/time", self.time),
            get(f"{base}/currency-rates", self.rates),
            get(f"{base}/currencies", self.currencies),
            get(f"{base}/pairs", self.pairs),
            get(f"{base}/ticker", self.ticker),
            get(f"{base}/orderbook", self.orderbook),
            get(f"{base}/charts", self.charts),
            get(f"{base}/trades", self.trades),
            get(f"{base}/accounts/accounts", self.private(self.accounts)),
            get(f"{base}/accounts/balances", self.private(self.balances)),
            get(f"{base}/accounts/feeinfo", self.private(self.feeinfo)),
            get(f"{base}/accounts/order", self.private(self.orders)),
            get(f"{base}/accounts/trades", self.private(self.account_trades)),
            get(f"{base}/accounts/activity", self.private(self.activity)),
            web.post(f"{base}/trading/order", self.private(self.place, signed=True)),
            web.delete(f"{base}/trading/order", self.private(self.cancel, signed=True)),
        ]

    def private(
        self,
        handler: Callable[[web.Request, SandboxAccount, bytes], Awaitable[web.StreamResponse]],
        *,
        signed: bool = False,
    ) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            account = self.authority.verify(request.headers.get("Authorization"))
            body = await request.read()
            if signed:
                self.authority.check_signature(account, body, request.headers.get("X-SIGN"))
            return await handler(request, account, body)

        return wrapped

    async def auth(self, request: web.Request) -> web.StreamResponse:
        self.count_auth()
        try:
            body = _json_body(await request.read())
        except Reject:
            raise Reject(422, "VALIDATION_ERROR", "body must be a JSON object") from None
        _refuse_unknown(body, AUTH_FIELDS)
        return reply(self.authority.issue(body.get("api_key"), body.get("api_secret")))

    async def time(self, request: web.Request) -> web.StreamResponse:
        return reply({"serverTime": int(self.clock())})

    async def rates(self, request: web.Request) -> web.StreamResponse:
        rates = self.exchange.currency_rates()
        return reply({code: f"{rate:.8f}" for code, rate in rates.items()})

    async def currencies(self, request: web.Request) -> web.StreamResponse:
        return reply([{"short_name": c.code, "sign": c.sign} for c in self.exchange.currencies()])

    async def pairs(self, request: web.Request) -> web.StreamResponse:
        c1 = _currency_param(request, "currency1", self.exchange)
        c2 = _currency_param(request, "currency2", self.exchange)
        return reply(
            [
                render.pair(p)
                for p in self.exchange.pairs()
                if (not c1 or p.base == c1) and (not c2 or p.quote == c2)
            ]
        )

    async def ticker(self, request: web.Request) -> web.StreamResponse:
        now = self.clock()
        if request.query.get("pair"):
            pair = _pair_param(request, self.exchange)
            return reply([render.ticker(self.exchange.ticker(pair, now))])
        return reply([render.ticker(t) for t in self.exchange.tickers(now)])

    async def orderbook(self, request: web.Request) -> web.StreamResponse:
        pair = _pair_param(request, self.exchange)
        limit_buy = _int_param(request, "limit_buy", low=1, high=20) or 20
        limit_sell = _int_param(request, "limit_sell", low=1, high=20) or 20
        view = self.exchange.order_book(pair, limit_buy, limit_sell)
        return reply(
            {
                "buy": [{"amount": a, "price": p} for p, a in view.buy],
                "sell": [{"amount": a, "price": p} for p, a in view.sell],
            }
        )

    async def charts(self, request: web.Request) -> web.StreamResponse:
        pair = _pair_param(request, self.exchange)
        interval = request.query.get("interval", "")
        if interval not in INTERVALS:
            raise Reject(400, "BAD_REQUEST", f"interval must be one of {', '.join(INTERVALS)}")
        since = _int_param(request, "since", low=0, high=2**40)
        until = _int_param(request, "until", low=0, high=2**40)
        limit = _int_param(request, "limit", low=1, high=500) or 500
        candles = self.exchange.candles(pair, interval, since=since, until=until, limit=limit)
        return reply([render.candle(c) for c in candles])

    async def trades(self, request: web.Request) -> web.StreamResponse:
        pair = _pair_param(request, self.exchange)
        limit = _int_param(request, "limit", low=1, high=1000) or 100
        return reply([render.public_trade(t) for t in self.exchange.trades(pair, limit)])

    async def accounts(
        self, request: web.Request, account: SandboxAccount, _: bytes
    ) -> web.StreamResponse:
        include = _bool_param(request, "include_subaccounts")
        return reply(
            [render.account(a) for a in self.exchange.accounts(account.account_id, include)]
        )

    async def balances(
        self, request: web.Request, account: SandboxAccount, _: bytes
    ) -> web.StreamResponse:
        return reply([render.balance(b) for b in self.exchange.balances(account.account_id)])

    async def feeinfo(
        self, request: web.Request, account: SandboxAccount, _: bytes
    ) -> web.StreamResponse:
        return reply([render.fee_rule(f) for f in self.exchange.fee_rules(account.account_id)])

    async def orders(
        self, request: web.Request, account: SandboxAccount, _: bytes
    ) -> web.StreamResponse:
        extra = self.order_extra_fields
        return reply(
            [render.order(o, extra=extra) for o in self.exchange.orders(account.account_id, 100)]
        )

    async def account_trades(
        self, request: web.Request, account: SandboxAccount, _: bytes
    ) -> web.StreamResponse:
        pair = _pair_param(request, self.exchange) if request.query.get("pair") else None
        side = request.query.get("side") or None
        if side is not None and side not in ("BUY", "SELL"):
            raise Reject(400, "1007", "side must be BUY or SELL")
        trades = self.exchange.account_trades(
            account.account_id,
            pair=pair,
            side=side,
            start_time=_int_param(request, "start_time", low=0, high=2**40),
            end_time=_int_param(request, "end_time", low=0, high=2**40),
            limit=_int_param(request, "limit", low=1, high=100) or 100,
        )
        return reply([render.account_trade(t) for t in trades])

    async def activity(
        self, request: web.Request, account: SandboxAccount, _: bytes
    ) -> web.StreamResponse:
        entries = self.exchange.activity(
            account.account_id,
            limit=_int_param(request, "limit", low=1, high=1000) or 100,
            offset=_int_param(request, "offset", low=0, high=10**9) or 0,
        )
        return reply([render.activity(a) for a in entries])

    async def place(
        self, request: web.Request, account: SandboxAccount, raw: bytes
    ) -> web.StreamResponse:
        body = _json_body(raw)
        _check_order_body(body)
        req = OrderRequest(
            pair=body["pair"],
            order_type=body["order_type"],
            side=SIDES[body["order_side"]],
            wallet_type=body["wallet_type"],
            base_amount=_amount(body, "base_amount", "1003"),
            quote_amount=_amount(body, "quote_amount", "1003"),
            limit_price=_amount(body, "limit_price", "1004"),
            stop_price=_amount(body, "stop_price", "1009"),
            stop_operator=body.get("stop_operator") or None,
            client_order_id=body.get("client_order_id") or None,
            post_only=body.get("post_only", False),
        )
        try:
            order_id = self.exchange.place_order(account.account_id, req, self.clock())
        finally:
            self.on_change()
        return reply([order_id])

    async def cancel(
        self, request: web.Request, account: SandboxAccount, raw: bytes
    ) -> web.StreamResponse:
        body = _json_body(raw)
        _refuse_unknown(body, CANCEL_FIELDS)
        # "Exactly one of order_ids, all, or pair must be specified": a key that is present is
        # specified, whatever its value (`"all": false` beside order_ids is two targets)
        modes = [k for k in CANCEL_FIELDS if k in body]
        if len(modes) != 1:
            raise Reject(400, "1001", "exactly one of order_ids, all, pair is required")
        now = self.clock()
        try:
            if modes[0] == "order_ids":
                ids = body["order_ids"]
                if (
                    not isinstance(ids, list)
                    or not ids
                    or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
                ):
                    raise Reject(400, "1002", "order_ids must be a list of integers")
                if len(ids) > 1000:
                    raise Reject(400, "1002", "at most 1000 order_ids")
                if len(set(ids)) != len(ids):  # refused before anything changes: a repeated id
                    raise Reject(400, "1002", "order_ids must be distinct")  # would answer an
                    # error after the first occurrence cancelled the order
                result = self.exchange.cancel_orders(account.account_id, ids, now)
                if all(v != "CANCELLED" for v in result.values()):
                    # nothing of the request could be cancelled: 1011 ORDER_NOT_FOUND (the
                    # per-id map is the answer when at least one order was cancelled)
                    raise Reject(400, "1011", "order not found")
                if self.cancel_by_ids_empty_202:
                    return web.Response(status=202)
                return reply({str(k): v for k, v in result.items()})
            if modes[0] == "all":
                if body["all"] is not True:
                    raise Reject(400, "1002", "all must be true")
                self.exchange.cancel_all(account.account_id, None, now)
            else:
                if not isinstance(body["pair"], str) or not PAIR_TEXT.fullmatch(body["pair"]):
                    raise Reject(400, "1010", "invalid pair")
                self.exchange.cancel_all(account.account_id, body["pair"], now)
            return web.Response(status=202)
        finally:
            self.on_change()


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}", parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        raise Reject(400, "1002", "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Reject(400, "1002", "body must be a JSON object")
    return body


def _no_constant(name: str) -> Any:
    raise ValueError(name)
