"""The sandbox is never kinder than ALP: every body rule, documented error and live shape.

Each request here is one the official client's recipe could send (JWT from /auth, X-SIGN over the
exact body); the expected answers come from the docs and API-NOTES.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from gateway.sandbox import Sandbox, SandboxConfig
from gateway.sandbox.config import Extensions, Quirks
from tests.sandbox.conftest import SECRET, AlpClient
from tests.sandbox.test_sandbox_rest import DOCUMENTED_ORDER_FIELDS
from tests.sandbox.test_sandbox_ws import connect, frames

LIMIT = {
    "pair": "BTC_USDT",
    "order_type": "LIMIT",
    "order_side": "BUY",
    "wallet_type": "SPOT",
    "base_amount": "0.1",
    "limit_price": "20000",
}
MARKET_BUY = {
    "pair": "BTC_USDT",
    "order_type": "MARKET",
    "order_side": "BUY",
    "wallet_type": "SPOT",
    "quote_amount": "100",
}


def without(body: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != name}


@pytest.mark.parametrize(
    "body,status,code",
    [
        (without(LIMIT, "wallet_type"), 400, "1001"),  # required in every column
        ({**LIMIT, "base_amount": 0.1}, 400, "1002"),  # a JSON number, not a decimal string
        ({**LIMIT, "base_amount": "1e-3"}, 400, "1002"),  # exponent
        ({**LIMIT, "limit_price": "２００００"}, 400, "1002"),  # full-width digits
        ({**LIMIT, "base_amount": " 0.1"}, 400, "1002"),
        ({**LIMIT, "order_side": "buy"}, 400, "1007"),  # upper case only
        ({**LIMIT, "order_type": "limit"}, 400, "1006"),
        ({**LIMIT, "wallet_type": "CROSS_MARGIN"}, 400, "1002"),  # response spelling
        ({**LIMIT, "pair": "btc_usdt"}, 400, "1010"),  # malformed symbol
        ({**LIMIT, "pair": "NOPE_USDT"}, 400, "1016"),  # well-formed, not listed
        ({**MARKET_BUY, "post_only": True}, 400, "1002"),  # post_only: LIMIT only
        ({**MARKET_BUY, "base_amount": "0.01"}, 400, "1002"),  # both amounts
        (without(MARKET_BUY, "quote_amount"), 400, "1001"),  # market BUY needs quote
        ({**LIMIT, "stop_price": "19000"}, 400, "1002"),  # stop field on a LIMIT
        ({**LIMIT, "quote_amount": "10"}, 400, "1002"),
        ({**LIMIT, "client_order_id": "x" * 65}, 400, "1002"),
        ({**LIMIT, "client_order_id": 12}, 400, "1002"),
        ({**LIMIT, "nonce": 1}, 422, "VALIDATION_ERROR"),  # not a documented field
    ],
)
async def test_bodies_the_docs_refuse_are_refused(
    alp: AlpClient, sandbox: Sandbox, body: dict[str, Any], status: int, code: str
) -> None:
    got, payload, _ = await alp.signed("POST", "/trading/order", body)
    assert (got, payload["code"]) == (status, code), payload
    assert sandbox.exchange.orders(1001) == []


async def test_documented_bodies_are_accepted(alp: AlpClient, sandbox: Sandbox) -> None:
    for body in (
        LIMIT,
        {**LIMIT, "order_side": "BID", "post_only": True, "client_order_id": "abc"},
        {**LIMIT, "order_type": "STOP_LIMIT", "stop_price": "21000", "stop_operator": "GTE"},
        {
            **without(LIMIT, "limit_price"),
            "order_type": "STOP_MARKET",
            "order_side": "SELL",
            "stop_price": "19000",
            "stop_operator": "LTE",
        },
    ):
        status, ids, text = await alp.signed("POST", "/trading/order", body)
        assert status == 200 and len(ids) == 1, text
    assert len(sandbox.exchange.orders(1001)) == 4


async def test_x_sign_is_lower_case_hex_over_the_exact_body(alp: AlpClient) -> None:
    raw = json.dumps(LIMIT).encode()
    upper = hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest().upper()
    headers = {"Authorization": f"Bearer {alp.token}", "X-SIGN": upper}
    async with alp.session.post(f"{alp.base}/trading/order", data=raw, headers=headers) as r:
        assert r.status == 403 and (await r.json())["code"] == "FORBIDDEN"


async def test_orders_carry_exactly_the_documented_fields(alp: AlpClient) -> None:
    await alp.signed("POST", "/trading/order", {**LIMIT, "client_order_id": "mine-1"})
    _, orders = await alp.get("/accounts/order", private=True)
    assert set(orders[0]) == DOCUMENTED_ORDER_FIELDS
    assert "mine-1" not in json.dumps(orders)


async def test_extra_order_fields_only_by_name() -> None:
    config = SandboxConfig(market=False, extensions=Extensions(order_extra_fields=True))
    async with Sandbox(config) as sandbox, aiohttp.ClientSession() as session:
        alp = AlpClient(session, sandbox.rest_url)
        await alp.login()
        await alp.signed("POST", "/trading/order", {**LIMIT, "client_order_id": "mine-1"})
        _, orders = await alp.get("/accounts/order", private=True)
        assert orders[0]["client_order_id"] == "mine-1"


async def test_cancel_of_unknown_or_finished_orders_is_1011(
    alp: AlpClient, sandbox: Sandbox
) -> None:
    status, body, _ = await alp.signed("DELETE", "/trading/order", {"order_ids": [424242]})
    assert (status, body["code"]) == (400, "1011")
    _, ids, _ = await alp.signed("POST", "/trading/order", LIMIT)
    status, body, _ = await alp.signed("DELETE", "/trading/order", {"order_ids": ids})
    assert status == 200 and body == {str(ids[0]): "CANCELLED"}
    status, body, _ = await alp.signed("DELETE", "/trading/order", {"order_ids": ids})
    assert (status, body["code"]) == (400, "1011")  # already finished
    status, body, _ = await alp.signed("DELETE", "/trading/order", {"pair": "btc-usdt"})
    assert (status, body["code"]) == (400, "1010")


@pytest.mark.parametrize(
    "body,status,code",
    [
        ({"order_ids": [1], "all": False}, 400, "1001"),  # two targets, one of them false
        ({"all": False}, 400, "1002"),  # "Set true to cancel all"
        ({"order_ids": [1], "force": True}, 422, "VALIDATION_ERROR"),  # not a documented field
        ({}, 400, "1001"),
    ],
)
async def test_cancel_bodies_the_docs_refuse(
    alp: AlpClient, body: dict[str, Any], status: int, code: str
) -> None:
    got, payload, _ = await alp.signed("DELETE", "/trading/order", body)
    assert (got, payload["code"]) == (status, code), payload


async def test_currency_and_pair_filters(alp: AlpClient) -> None:
    status, body = await alp.get("/pairs", currency1="b@d")
    assert (status, body["code"]) == (400, "1012")
    status, body = await alp.get("/pairs", currency2="NOPE")
    assert (status, body["code"]) == (400, "1020")
    status, body = await alp.get("/pairs", currency1="BTC")
    assert status == 200 and body and all(p["currency1"] == "BTC" for p in body)
    status, body = await alp.get("/orderbook", pair="btc_usdt")
    assert (status, body["code"]) == (400, "1010")
    status, body = await alp.get("/accounts/trades", private=True, pair="x")
    assert (status, body["code"]) == (400, "1010")


@pytest.mark.parametrize(
    "payload,status,code",
    [
        ({"api_key": "demo-key"}, 422, "VALIDATION_ERROR"),
        ({"api_secret": "demo-secret"}, 422, "VALIDATION_ERROR"),
        ({"api_key": 7, "api_secret": "x"}, 422, "VALIDATION_ERROR"),
        ({"api_key": "nobody", "api_secret": "x"}, 404, "API_KEY_NOT_FOUND"),
        ({"api_key": "demo-key", "api_secret": "wrong"}, 401, "INVALID_SECRET"),
        ({"api_key": "demo-key", "api_secret": "demo-secret", "otp": 1}, 422, "VALIDATION_ERROR"),
    ],
)
async def test_auth_errors(alp: AlpClient, payload: Any, status: int, code: str) -> None:
    async with alp.session.post(f"{alp.base}/auth", json=payload) as r:
        assert (r.status, (await r.json())["code"]) == (status, code)


async def test_auth_body_that_is_no_object_is_422(alp: AlpClient) -> None:
    async with alp.session.post(f"{alp.base}/auth", data=b"[1]") as r:
        assert (r.status, (await r.json())["code"]) == (422, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "state,code",
    [
        ("deleted", "API_KEY_DELETED"),
        ("inactive", "ACCOUNT_INACTIVE"),
        ("ip_not_allowed", "IP_NOT_ALLOWED"),
    ],
)
async def test_key_states(alp: AlpClient, sandbox: Sandbox, state: str, code: str) -> None:
    admin = sandbox.rest_url.removesuffix("/api/v3")
    async with alp.session.put(f"{admin}/admin/keys/demo-key", json={"state": state}) as r:
        assert r.status == 200
    status, body = await alp.get("/accounts/balances", private=True)  # the existing token
    assert (status, body["code"]) == (403, code)
    async with alp.session.post(
        f"{alp.base}/auth", json={"api_key": "demo-key", "api_secret": SECRET}
    ) as r:
        assert (r.status, (await r.json())["code"]) == (403, code)
    sandbox.set_key_state("demo-key", "active")
    status, _ = await alp.get("/accounts/balances", private=True)
    assert status == 200


async def test_token_errors(alp: AlpClient) -> None:
    alp.token = "garbage"
    status, body = await alp.get("/accounts/balances", private=True)
    assert (status, body["code"]) == (401, "AUTH_ERROR")


async def test_statuses_406_405_and_unknown_path(alp: AlpClient) -> None:
    async with alp.session.get(f"{alp.base}/time", headers={"Accept": "text/html"}) as r:
        assert r.status == 406 and set(await r.json()) == {"code", "message"}
    async with alp.session.get(f"{alp.base}/time", headers={"Accept": "*/*"}) as r:
        assert r.status == 200
    async with alp.session.get(f"{alp.base}/no/such/path") as r:
        assert r.status == 401 and (await r.json()) == {
            "code": "UNAUTHORIZED",
            "message": "missing or invalid Authorization header",
        }


async def test_margin_wallets_use_the_response_spelling(alp: AlpClient, sandbox: Sandbox) -> None:
    sandbox.exchange.credit(1001, "USDT", Decimal("5000"), time.time(), "MARGIN_CROSS")
    status, _, text = await alp.signed(
        "POST", "/trading/order", {**LIMIT, "wallet_type": "MARGIN_CROSS"}
    )
    assert status == 200, text
    _, balances = await alp.get("/accounts/balances", private=True)
    assert {b["wallet_type"] for b in balances} == {"SPOT", "CROSS_MARGIN"}
    _, orders = await alp.get("/accounts/order", private=True)
    assert orders[0]["wallet_type"] == "CROSS_MARGIN"
    _, activity = await alp.get("/accounts/activity", private=True)
    assert "MARGIN_CROSS" not in {a["wallet_type"] for a in activity}


async def test_depth_totals_are_sums_of_sizes_and_diffs_are_silent(
    alp: AlpClient, sandbox: Sandbox
) -> None:
    ws = await connect(alp.session, sandbox)
    await ws.send_str(json.dumps(["subscribe", "diff.BTC_USDT", "market_depth.BTC_USDT"]))
    await frames(ws, "subscribe")
    await alp.signed("POST", "/trading/order", LIMIT)
    await alp.signed("POST", "/trading/order", {**LIMIT, "limit_price": "19000.5"})
    sandbox.publish_now()
    (depth,) = await frames(ws, "p")
    body = depth[2]
    assert body["Bids"] == [["20000", "0.1"], ["19000.5", "0.1"]]
    assert Decimal(body["TotalBids"]) == Decimal("0.2") and Decimal(body["TotalAsks"]) == 0
    with pytest.raises(TimeoutError):  # live diff.PAIR is acknowledged and silent
        await frames(ws, "d", within=0.3)
    await ws.close()


async def test_quirks_default_to_live() -> None:
    quirks = Quirks()
    assert quirks.diff_silent and quirks.ticker_pair_silent
    assert not quirks.depth_snapshot_on_subscribe and quirks.max_topics_per_connection == 20
    assert Extensions() == Extensions(order_extra_fields=False, ws_auth_ack=False)


async def test_unknown_command_and_no_auth_echo(alp: AlpClient, sandbox: Sandbox) -> None:
    ws = await connect(alp.session, sandbox)
    await ws.send_str(json.dumps(["hello"]))
    (error,) = await frames(ws, "error")
    assert error[2:] == ["Unknown command", "hello"]
    await ws.send_str(json.dumps(["auth", "secret-looking.jwt.value"]))
    (error,) = await frames(ws, "error")
    assert "secret-looking" not in json.dumps(error) and error[3] == "auth"
    await asyncio.sleep(0)
    await ws.close()
