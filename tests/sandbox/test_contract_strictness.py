"""The sandbox is never kinder than ALP: places a review found it was (binary frames over the size
limit, negotiated compression, unsubscribing a malformed topic, a cancel with a repeated id, a market
sell below the minimum value, an unknown pair on account trades, integer parameters in non-plain
spellings). Every test cites the line of the docs or API-NOTES it relies on.
All traffic stays on 127.0.0.1 (the `sandbox` fixture); every wait is bounded.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from gateway.sandbox import Sandbox
from gateway.sandbox.engine.records import OrderRequest
from tests.sandbox.conftest import AlpClient
from tests.sandbox.test_sandbox_ws import connect, frames

D = Decimal
MAKER = 1002  # desk-b: provides liquidity through the engine directly


def rest_order(**fields: Any) -> dict[str, Any]:
    return {"pair": "BTC_USDT", "wallet_type": "SPOT", **fields}


def _maker_quote(sandbox: Sandbox, side: str, amount: str, price: str) -> int:
    now = time.time()
    return sandbox.exchange.place_order(
        MAKER,
        OrderRequest("BTC_USDT", "LIMIT", side, base_amount=D(amount), limit_price=D(price)),
        now,
    )


# -- WebSocket ---------------------------------------------------------------------------------


async def test_ws_binary_frame_over_800_bytes_closes_with_1009(
    alp: AlpClient, sandbox: Sandbox
) -> None:
    """API-NOTES, "live behaviour": "An inbound frame over ~800 bytes closes the socket (code
    1009)". The rule names any inbound frame; the sandbox skips non-text frames before it
    measures (ws.py: `if message.type is not WSMsgType.TEXT: continue`)."""
    ws = await connect(alp.session, sandbox)
    await ws.send_bytes(b"x" * 2000)
    try:
        message = await ws.receive(timeout=2)
    except TimeoutError:
        message = None
    try:
        assert message is not None, "a 2000-byte binary frame left the socket open"
        assert message.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 1009, message
    finally:
        await ws.close()


async def test_ws_permessage_deflate_is_not_negotiated(alp: AlpClient, sandbox: Sandbox) -> None:
    """API-NOTES, "live behaviour": "permessage-deflate is not negotiated." A client that offers
    it must get an uncompressed socket (aiohttp's WebSocketResponse defaults to compress=True)."""
    ws = await alp.session.ws_connect(sandbox.ws_url, compress=15)
    try:
        (welcome,) = await frames(ws, "welcome")
        assert welcome[0] == "welcome"
        assert ws.compress == 0, f"server negotiated permessage-deflate (wbits {ws.compress})"
    finally:
        await ws.close()


async def test_ws_unsubscribe_of_an_invalid_topic_is_an_error(
    alp: AlpClient, sandbox: Sandbox
) -> None:
    """Docs, "Topic Subscription": "In case of any error, the server will send next message:
    ["error",1586857703.901509,"Topic does not exist"]". Unsubscribing a malformed topic is an
    error (the docs are silent on which command; the stricter reading applies); the sandbox acks
    it with an empty `["unsubscribe", ts]` instead."""
    ws = await connect(alp.session, sandbox)
    await ws.send_str(json.dumps(["unsubscribe", "no-such-topic"]))
    message = await ws.receive(timeout=3)
    frame = json.loads(message.data)
    assert frame[0] == "error", frame
    await ws.close()


# -- REST: orders --------------------------------------------------------------------------------


async def test_cancel_by_duplicate_ids_does_not_answer_error_after_cancelling(
    alp: AlpClient, sandbox: Sandbox
) -> None:
    """Docs, "Cancel Order": "Response (cancel by order IDs) - map of order ID to status" e.g.
    `"1": "CANCELLED"`. With the id given twice the sandbox cancels the order, then overwrites its
    map entry with "order not found" and -- no entry being CANCELLED -- answers 400 1011
    ORDER_NOT_FOUND for an order it did cancel. An error answer must leave the state untouched
    (engine docstring: "Rejections ... leave the state untouched")."""
    status, ids, text = await alp.signed(
        "POST",
        "/trading/order",
        rest_order(order_type="LIMIT", order_side="BUY", base_amount="0.1", limit_price="20000"),
    )
    assert status == 200, text
    status, body, text = await alp.signed("DELETE", "/trading/order", {"order_ids": ids * 2})
    order = sandbox.exchange.order(1001, ids[0])
    assert order is not None
    if status == 200:
        assert body[str(ids[0])] == "CANCELLED", body
    else:
        assert order.status == "OPEN", f"answered {status} {text} but the order is {order.status}"


async def test_market_sell_below_minimum_order_value_is_refused(
    alp: AlpClient, sandbox: Sandbox
) -> None:
    """Docs, "Pairs": `"minimum_order_value": 10.0`; API-NOTES: "1018 INVALID_ORDER_SIZE". The
    sandbox checks the value only against a limit or stop price; a MARKET SELL of the minimum size
    (0.0001 BTC, worth 2 USDT at the 20000 bid, minimum value 5) is filled."""
    _maker_quote(sandbox, "BUY", "0.001", "20000")
    status, body, text = await alp.signed(
        "POST",
        "/trading/order",
        rest_order(order_type="MARKET", order_side="SELL", base_amount="0.0001"),
    )
    assert status == 400 and body["code"] == "1018", text


# -- REST: queries and shapes --------------------------------------------------------------------


async def test_account_trades_with_an_unknown_pair_is_bad_request(alp: AlpClient) -> None:
    """API-NOTES, "Error bodies": "Missing/unknown pair: `400 {"code":"BAD_REQUEST",...}`". The
    sandbox refuses an unknown pair on /orderbook, /trades, /charts, /ticker, but
    /accounts/trades?pair=NOPE_USDT answers 200 []."""
    status, body = await alp.get("/accounts/trades", private=True, pair="NOPE_USDT")
    assert status == 400 and body["code"] == "BAD_REQUEST", (status, body)


@pytest.mark.parametrize("raw", ["1_0", " 5", "+5", "٣"])
async def test_integer_query_parameters_are_plain_digits(alp: AlpClient, raw: str) -> None:
    """Docs, "Trades": "limit integer limit of records". Python's int() also takes digit
    underscores, surrounding blanks, a plus sign and non-ASCII digits; the sandbox body rules
    refuse such spellings ("full-width digits" -> 1002) but the query parser does not."""
    status, body = await alp.get("/trades", pair="BTC_USDT", limit=raw)
    assert status == 400 and body["code"] == "1002", (raw, status, body)
