"""Sandbox REST as the ALP docs describe it: shapes, codes, statuses, the official recipe."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from decimal import Decimal

import jwt
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.sandbox import Sandbox
from tests.sandbox.conftest import SECRET, AlpClient

LIMIT = {
    "pair": "BTC_USDT",
    "order_type": "LIMIT",
    "order_side": "BUY",
    "wallet_type": "SPOT",
    "base_amount": "0.1",
    "limit_price": "20000.00",
}


async def test_official_client_recipe_with_requests(sandbox: Sandbox) -> None:
    def recipe() -> None:
        base = sandbox.rest_url
        token = requests.post(
            f"{base}/auth", json={"api_key": "demo-key", "api_secret": SECRET}, timeout=5
        ).json()
        assert jwt.decode(token, options={"verify_signature": False})["exp"] > time.time()
        body = json.dumps(LIMIT).encode()
        sign = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Authorization": f"Bearer {token}",
            "X-SIGN": sign,
            "Content-Type": "application/json",
        }
        placed = requests.post(f"{base}/trading/order", data=body, headers=headers, timeout=5)
        assert placed.status_code == 200 and isinstance(placed.json()[0], int)
        balances = requests.get(
            f"{base}/accounts/balances", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        usdt = next(b for b in balances.json() if b["currency"] == "USDT")
        assert usdt["reserve"] == 2000.0

    await asyncio.to_thread(recipe)


async def test_public_endpoints_have_the_documented_shapes(alp: AlpClient) -> None:
    status, body = await alp.get("/time")
    assert status == 200 and isinstance(body["serverTime"], int)
    status, rates = await alp.get("/currency-rates")
    assert (
        status == 200
        and all(isinstance(v, str) for v in rates.values())
        and rates["USDT"] == "1.00000000"
    )
    status, currencies = await alp.get("/currencies")
    assert {"short_name": "BTC", "sign": "BTC"} in currencies
    status, pairs = await alp.get("/pairs")
    btc = next(p for p in pairs if p["name"] == "BTC_USDT")
    assert set(btc) == {
        "name",
        "currency1",
        "currency2",
        "price_precision",
        "amount_precision",
        "minimum_order_size",
        "maximum_order_size",
        "minimum_order_value",
    }
    assert btc["minimum_order_size"] == "0.0001"  # a JSON number (parse_float=str shows its text)
    status, filtered = await alp.get("/pairs", currency1="ETH")
    assert filtered and all(p["currency1"] == "ETH" for p in filtered)
    status, tickers = await alp.get("/ticker")
    assert len(tickers) == len(pairs) and tickers[0]["timestamp"] == 0
    status, one = await alp.get("/ticker", pair="BTC_USDT")
    assert status == 200 and [t["pair"] for t in one] == ["BTC_USDT"]
    status, book = await alp.get("/orderbook", pair="BTC_USDT")
    assert book == {"buy": [], "sell": []}
    status, candles = await alp.get("/charts", pair="BTC_USDT", interval="1D")
    assert status == 200 and candles == []
    status, trades = await alp.get("/trades", pair="BTC_USDT", limit=5)
    assert status == 200 and trades == []


async def test_private_endpoints_after_a_fill(alp: AlpClient, sandbox: Sandbox) -> None:
    other = AlpClient(alp.session, alp.base)
    await other.login("desk-b-key", "desk-b-secret")
    status, ids, _ = await other.signed(
        "POST",
        "/trading/order",
        {**LIMIT, "order_side": "SELL", "limit_price": "20000"},
        secret="desk-b-secret",
    )
    assert status == 200
    status, ids, _ = await alp.signed(
        "POST", "/trading/order", {**LIMIT, "base_amount": "0.04", "client_order_id": "c-1"}
    )
    assert status == 200 and len(ids) == 1
    status, orders = await alp.get("/accounts/order", private=True)
    order = orders[0]
    assert order["id"] == ids[0] and order["side"] == "BID" and order["status"] == "FILLED"
    assert (
        order["done_at"].endswith("Z")
        and order["expire_after"] is None
        and order["stop_price"] is None
    )
    assert set(order) == DOCUMENTED_ORDER_FIELDS  # no client_order_id: ALP does not render it
    status, fills = await alp.get("/accounts/trades", private=True, pair="BTC_USDT")
    assert (
        len(fills) == 1
        and fills[0]["side"] == "BUY"
        and Decimal(fills[0]["fee"]) == Decimal("0.00008")
    )
    assert fills[0]["order_id"] == ids[0] and "." in fills[0]["timestamp"]
    status, trades = await alp.get("/trades", pair="BTC_USDT")
    assert trades[0]["type"] == "buy" and trades[0]["price"] == "20000.0"
    status, activity = await alp.get("/accounts/activity", private=True, limit=3)
    assert len(activity) == 3 and {"balance", "reserve", "op_type", "last_update_at"} <= set(
        activity[0]
    )
    status, fees = await alp.get("/accounts/feeinfo", private=True)
    assert fees[0]["active_once"] == [None, None] and fees[0]["taker_fee_rate"] == "0.002"
    status, accounts = await other.get(
        "/accounts/accounts", private=True, include_subaccounts="true"
    )
    assert [a["id"] for a in accounts] == [1002, 1003] and accounts[1]["parent_id"] == 1002
    status, accounts = await other.get("/accounts/accounts", private=True, include_subaccounts=0)
    assert [a["id"] for a in accounts] == [1002] and "parent_id" not in accounts[0]
    status, candles = await alp.get("/charts", pair="BTC_USDT", interval="1")
    assert candles[0]["tradesCount"] == 1 and candles[0]["takerBuyBaseVolume"] == "0.04"
    sandbox.exchange.check_invariants()


DOCUMENTED_ORDER_FIELDS = {
    "id",
    "account_id",
    "pair",
    "amount",
    "price",
    "side",
    "status",
    "type",
    "wallet_type",
    "amount_canceled",
    "amount_filled",
    "date",
    "open_at",
    "tif",
    "updated_at",
    "done_at",
    "expire_after",
    "stop_price",
}


async def test_cancel_modes(alp: AlpClient) -> None:
    _, ids, _ = await alp.signed("POST", "/trading/order", LIMIT)
    status, result, _ = await alp.signed(
        "DELETE", "/trading/order", {"order_ids": [ids[0], 999999]}
    )
    assert status == 200 and result == {str(ids[0]): "CANCELLED", "999999": "order not found"}
    await alp.signed("POST", "/trading/order", LIMIT)
    status, result, text = await alp.signed("DELETE", "/trading/order", {"pair": "BTC_USDT"})
    assert status == 202 and text == ""
    status, result, text = await alp.signed("DELETE", "/trading/order", {"all": True})
    assert status == 202 and text == ""
    for body in ({}, {"all": True, "pair": "BTC_USDT"}, {"order_ids": "x"}):
        status, result, _ = await alp.signed("DELETE", "/trading/order", body)
        assert status == 400 and set(result) == {"code", "message"}


@pytest.mark.parametrize(
    "change,status,code",
    [
        ({"pair": "NOPE_USDT"}, 400, "1016"),
        ({"order_type": "ICEBERG"}, 400, "1006"),
        ({"order_side": "UP"}, 400, "1007"),
        ({"wallet_type": "P2P"}, 400, "1002"),
        ({"base_amount": "-1"}, 400, "1003"),
        ({"base_amount": "1e400"}, 400, "1002"),
        ({"base_amount": str(10**100)}, 400, "1002"),
        ({"base_amount": "NaN"}, 400, "1002"),
        ({"limit_price": "0"}, 400, "1004"),
        ({"limit_price": "20000.001"}, 400, "1017"),
        ({"base_amount": "90"}, 400, "2002"),
        ({"base_amount": "500"}, 400, "1018"),
        ({"base_amount": ["1"]}, 400, "1002"),
        ({"pair": 7}, 400, "1002"),
        ({"post_only": "yes"}, 400, "1002"),
        ({"limit_price": None}, 400, "1001"),
        ({"surprise": 1}, 422, "VALIDATION_ERROR"),
    ],
)
async def test_order_rejections_use_alp_codes(
    alp: AlpClient, sandbox: Sandbox, change: dict[str, object], status: int, code: str
) -> None:
    body = {**LIMIT, **change}
    got, payload, _ = await alp.signed("POST", "/trading/order", body)
    assert (got, payload["code"]) == (status, code), payload
    assert sandbox.exchange.orders(1001) == []
    sandbox.exchange.check_invariants()


async def test_auth_failures(alp: AlpClient, sandbox: Sandbox) -> None:
    async with alp.session.post(
        f"{alp.base}/auth", json={"api_key": "demo-key", "api_secret": "nope"}
    ) as r:
        assert r.status == 401 and (await r.json())["code"] == "INVALID_SECRET"
    saved = alp.token
    alp.token = jwt.encode(
        {"sub": "1001", "exp": time.time() + 60},
        "forged-key-0123456789abcdef0123456789",
        algorithm="HS256",
    )
    status, body = await alp.get("/accounts/balances", private=True)
    assert status == 401 and body["code"] == "AUTH_ERROR"
    alp.token = ""
    status, body = await alp.get("/accounts/balances", private=True)
    assert status == 401 and body == {
        "code": "UNAUTHORIZED",
        "message": "missing or invalid Authorization header",
    }
    alp.token = saved
    status, body, _ = await alp.signed("POST", "/trading/order", LIMIT, sign=False)
    assert status == 403 and body["code"] == "FORBIDDEN"
    status, body, _ = await alp.signed("POST", "/trading/order", LIMIT, secret="wrong")
    assert status == 403 and body["code"] == "FORBIDDEN"
    sandbox.faults.update({"token_lifetime_s": 0.3})
    await alp.login()
    await asyncio.sleep(0.5)
    status, body = await alp.get("/accounts/balances", private=True)
    assert status == 401 and "expired" in body["message"]
    assert sandbox.stats.auth_calls == 3


async def test_http_errors(alp: AlpClient) -> None:
    async with alp.session.put(f"{alp.base}/trading/order") as r:
        assert r.status == 405 and set(await r.json()) == {"code", "message"}
    status, body = await alp.get("/nowhere")
    assert status == 401 and body["code"] == "UNAUTHORIZED"  # live: unknown path = 401
    status, body = await alp.get("/orderbook")
    assert status == 400 and body["code"] == "BAD_REQUEST"
    status, body = await alp.get("/orderbook", pair="NOPE_USDT")
    assert status == 400 and body["code"] == "BAD_REQUEST"
    status, body = await alp.get("/charts", pair="BTC_USDT", interval="7")
    assert status == 400
    status, body = await alp.get("/trades", pair="BTC_USDT", limit="many")
    assert status == 400 and body["code"] == "1002"
    status, body, _ = await alp.signed("POST", "/trading/order", b"{not json")
    assert status == 400 and body["code"] == "1002"


async def test_faults(alp: AlpClient, sandbox: Sandbox) -> None:
    sandbox.faults.update({"error_rate": 1.0, "error_status": 503})
    status, body = await alp.get("/time")
    assert status == 503 and body["code"] == "3003"
    async with alp.session.get(f"{alp.base}/time") as r:
        assert r.headers["Retry-After"] == "1"
    sandbox.faults.update({"error_rate": 0.0, "rate_limit_per_s": 2})
    codes = [(await alp.get("/accounts/balances", private=True))[0] for _ in range(4)]
    assert codes[:2] == [200, 200] and 429 in codes[2:]
    sandbox.faults.update({"rate_limit_per_s": 0, "delay_s": 0.3})
    started = time.monotonic()
    await alp.get("/time")
    assert time.monotonic() - started >= 0.3
    async with alp.session.put(
        f"{alp.base.removesuffix('/api/v3')}/admin/faults", json={"delay_s": 0}
    ) as r:
        assert r.status == 200 and (await r.json())["delay_s"] == 0
    async with alp.session.put(
        f"{alp.base.removesuffix('/api/v3')}/admin/faults", json={"bogus": 1}
    ) as r:
        assert r.status == 400


BODIES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.floats(allow_nan=False),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from([*LIMIT, "x", "order_ids", "all"]), inner, max_size=8)
    ),
    max_leaves=12,
)


async def test_arbitrary_bodies_never_5xx(alp: AlpClient, sandbox: Sandbox) -> None:
    examples: list[tuple[str, bytes]] = []

    @settings(max_examples=80, deadline=None)
    @given(BODIES, st.sampled_from(["POST", "DELETE"]))
    def collect(body: object, method: str) -> None:
        examples.append((method, json.dumps(body).encode()))

    collect()  # hypothesis draws the bodies; they are sent over the real socket below
    for method, raw in [
        *examples,
        ("POST", b"\xff\xfe"),
        ("POST", b"[" * 1000),
        ("DELETE", b"null"),
    ]:
        status, _, _ = await alp.signed(method, "/trading/order", raw)
        assert status < 500, (method, raw)
    sandbox.exchange.check_invariants()
