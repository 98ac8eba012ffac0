"""REST request builders: documented body fields in documented order, decimal strings, safe reprs."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import rest_requests as rr
from gateway.core.constants import OrderSide, OrderType, StopOperator, WalletType
from gateway.core.validation import CancelAll, CancelByIds, CancelByPair, OrderSpec

DOCUMENTED = (
    "pair", "order_type", "order_side", "wallet_type", "base_amount", "quote_amount",
    "limit_price", "stop_price", "stop_operator", "client_order_id", "post_only",
)  # fmt: skip


def _spec(**changes: object) -> OrderSpec:
    fields: dict[str, object] = {
        "pair": "BTC_USDT",
        "side": OrderSide.BUY,
        "wallet_type": WalletType.SPOT,
        "order_type": OrderType.LIMIT,
        "base_amount": Decimal("0.5"),
        "quote_amount": None,
        "limit_price": Decimal("45000.10"),
        "stop_price": None,
        "stop_operator": None,
        "client_order_id": None,
        "post_only": False,
    }
    fields.update(changes)
    return OrderSpec(**fields)  # type: ignore[arg-type]  # test factory over a typed dataclass


def _body(request: rr.RestRequest) -> dict[str, object]:
    assert request.body is not None
    parsed = json.loads(request.body)
    assert isinstance(parsed, dict)
    return parsed


def test_limit_order_body_exact_bytes() -> None:
    request = rr.place_order(_spec())
    assert (request.method, request.path) == ("POST", "/trading/order")
    assert request.private and request.signed and not request.idempotent
    assert request.body == (
        b'{"pair":"BTC_USDT","order_type":"LIMIT","order_side":"BUY","wallet_type":"SPOT",'
        b'"base_amount":"0.5","limit_price":"45000.10"}'
    )


def test_every_field_set_keeps_documented_order() -> None:
    spec = _spec(
        order_type=OrderType.STOP_LIMIT,
        side=OrderSide.SELL,
        wallet_type=WalletType.MARGIN_CROSS,
        quote_amount=Decimal("10"),
        stop_price=Decimal("1E-8"),
        stop_operator=StopOperator.LTE,
        client_order_id="my-1",
        post_only=True,
    )
    body = _body(rr.place_order(spec))
    assert tuple(body) == DOCUMENTED
    assert body["stop_price"] == "0.00000001"
    assert body["order_side"] == "SELL" and body["order_type"] == "STOP_LIMIT"
    assert body["wallet_type"] == "MARGIN_CROSS" and body["post_only"] is True


def test_wallet_spelling_is_configurable() -> None:
    spec = _spec(wallet_type=WalletType.MARGIN_ISOLATED)
    assert _body(rr.place_order(spec))["wallet_type"] == "MARGIN_ISOLATED"
    assert _body(rr.place_order(spec, wallet_spelling="alias"))["wallet_type"] == "ISOLATED_MARGIN"


def test_market_buy_sends_only_quote_amount() -> None:
    spec = _spec(
        order_type=OrderType.MARKET, base_amount=None, limit_price=None, quote_amount=Decimal("100")
    )
    assert _body(rr.place_order(spec)) == {
        "pair": "BTC_USDT", "order_type": "MARKET", "order_side": "BUY", "wallet_type": "SPOT",
        "quote_amount": "100",
    }  # fmt: skip


_amount = st.none() | st.decimals(
    min_value=Decimal("1E-12"), max_value=10**12, allow_nan=False, places=12
)


@settings(max_examples=150, deadline=None)
@given(
    base=_amount,
    quote=_amount,
    limit=_amount,
    stop=_amount,
    operator=st.none() | st.sampled_from(list(StopOperator)),
    cid=st.none() | st.text(alphabet="abc-1", min_size=1, max_size=8),
    post_only=st.booleans(),
    wallet=st.sampled_from(list(WalletType)),
)
def test_body_has_only_set_fields_in_order_as_strings(
    base: Decimal | None,
    quote: Decimal | None,
    limit: Decimal | None,
    stop: Decimal | None,
    operator: StopOperator | None,
    cid: str | None,
    post_only: bool,
    wallet: WalletType,
) -> None:
    spec = _spec(
        base_amount=base, quote_amount=quote, limit_price=limit, stop_price=stop,
        stop_operator=operator, client_order_id=cid, post_only=post_only, wallet_type=wallet,
    )  # fmt: skip
    raw = rr.place_order(spec).body
    assert raw is not None
    body = json.loads(raw, parse_float=lambda _: pytest.fail("float in body"))
    keys = list(body)
    assert keys == [k for k in DOCUMENTED if k in body]
    expected_set = {"pair", "order_type", "order_side", "wallet_type"}
    for name, value in (
        ("base_amount", base),
        ("quote_amount", quote),
        ("limit_price", limit),
        ("stop_price", stop),
    ):
        if value is None:
            assert name not in body
        else:
            expected_set.add(name)
            assert isinstance(body[name], str) and "E" not in body[name]
            assert Decimal(body[name]) == value
    if operator is not None:
        expected_set.add("stop_operator")
    if cid is not None:
        expected_set.add("client_order_id")
    if post_only:
        expected_set.add("post_only")
    assert set(body) == expected_set


@pytest.mark.parametrize(
    ("target", "body"),
    [
        (CancelByIds((1, 5, 8)), b'{"order_ids":[1,5,8]}'),
        (CancelAll(), b'{"all":true}'),
        (CancelByPair("ETH_USDT"), b'{"pair":"ETH_USDT"}'),
    ],
)
def test_cancel_bodies_hold_exactly_one_mode(target: object, body: bytes) -> None:
    request = rr.cancel_orders(target)  # type: ignore[arg-type]  # parametrize erases the union type
    assert (request.method, request.path, request.body) == ("DELETE", "/trading/order", body)
    assert request.signed and request.private
    modes = set(json.loads(body)) & {"order_ids", "all", "pair"}
    assert len(modes) == 1


def test_boolean_queries_are_one_and_zero() -> None:
    assert rr.accounts(include_subaccounts=True).query == (("include_subaccounts", "1"),)
    assert rr.accounts().query == ()
    assert rr._query(flag=True, other=False) == (("flag", "1"), ("other", "0"))


def test_public_gets_and_optional_query_params() -> None:
    assert rr.server_time() == rr.RestRequest("GET", "/time")
    book = rr.order_book("BTC_USDT", limit_buy=5)
    assert book.query == (("pair", "BTC_USDT"), ("limit_buy", "5"))
    assert not book.private and not book.signed and book.body is None
    assert rr.candles("BTC_USDT", "1D", since=10, limit=500).query == (
        ("pair", "BTC_USDT"), ("interval", "1D"), ("since", "10"), ("limit", "500"),
    )  # fmt: skip
    assert rr.pairs().query == () and rr.tickers("X_Y").query == (("pair", "X_Y"),)


def test_private_gets() -> None:
    for request in (rr.balances(), rr.fee_info(), rr.orders(), rr.account_trades(), rr.activity()):
        assert request.method == "GET" and request.private and not request.signed
        assert request.body is None
    trades = rr.account_trades(pair="BTC_USDT", side="BUY", start_time=1, end_time=2, limit=100)
    assert trades.query == (
        ("pair", "BTC_USDT"), ("side", "BUY"), ("start_time", "1"), ("end_time", "2"), ("limit", "100"),
    )  # fmt: skip
    assert rr.activity(limit=10, offset=0).query == (("limit", "10"), ("offset", "0"))


def test_auth_request_is_signed_and_repr_hides_body() -> None:
    request = rr.auth("my-key", "TOP-SECRET-VALUE")
    assert request.body == b'{"api_key":"my-key","api_secret":"TOP-SECRET-VALUE"}'
    assert request.signed and not request.private and request.method == "POST"
    for text in (repr(request), str(request), f"{request}", f"{request!r}"):
        assert "TOP-SECRET-VALUE" not in text and "my-key" not in text
        assert "/auth" in text
