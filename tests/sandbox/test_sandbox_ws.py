"""Sandbox WebSocket: the live protocol and its quirks, from API-NOTES, with a plain aiohttp client."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest

from gateway.sandbox import Sandbox, SandboxConfig
from gateway.sandbox.config import Quirks
from tests.sandbox.conftest import AlpClient

LIMIT = {
    "pair": "BTC_USDT",
    "order_type": "LIMIT",
    "order_side": "SELL",
    "wallet_type": "SPOT",
    "base_amount": "0.1",
    "limit_price": "30000",
}


async def frames(
    ws: aiohttp.ClientWebSocketResponse, kind: str, count: int = 1, within: float = 3
) -> list[Any]:
    found: list[Any] = []

    async def loop() -> None:
        async for message in ws:
            if message.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(message.data) if message.data not in ("1", "2") else message.data
            if (isinstance(data, list) and data[0] == kind) or data == kind:
                found.append(data)
                if len(found) >= count:
                    return

    await asyncio.wait_for(loop(), within)
    return found


async def collect(
    ws: aiohttp.ClientWebSocketResponse, kinds: set[str], within: float = 3
) -> dict[str, Any]:
    """The first frame of each kind, whatever order they come in."""
    found: dict[str, Any] = {}

    async def loop() -> None:
        async for message in ws:
            data = json.loads(message.data)
            if data[0] in kinds:
                found.setdefault(data[0], data)
                if set(found) == kinds:
                    return

    await asyncio.wait_for(loop(), within)
    return found


async def connect(
    session: aiohttp.ClientSession, sandbox: Sandbox
) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect(sandbox.ws_url)
    (welcome,) = await frames(ws, "welcome")
    assert len(welcome) == 5 and welcome[2] == 20000 and welcome[3] == 40000  # milliseconds
    return ws


async def test_subscribe_acks_errors_and_topic_limit(alp: AlpClient, sandbox: Sandbox) -> None:
    ws = await connect(alp.session, sandbox)
    await ws.send_str(json.dumps(["subscribe", "trade.BTC_USDT", "diff.ETH_USDT"]))
    (ack,) = await frames(ws, "subscribe")
    assert ack[2:] == ["trade.BTC_USDT", "diff.ETH_USDT"]
    # a well-formed topic of an unlisted pair: the docs' 3-element error, nothing applied
    await ws.send_str(json.dumps(["subscribe", "trade.ETH_USDT", "diff.NOPE_USDT"]))
    (error,) = await frames(ws, "error")
    assert error[2:] == ["Topic does not exist"]
    # a malformed topic: the live 4-element form, the command as a string
    await ws.send_str(json.dumps(["subscribe", "diff.btc_usdt"]))
    (error,) = await frames(ws, "error")
    assert error[2:] == ["Invalid topic: diff.btc_usdt", "subscribe"]
    assert sandbox.stats.topics_per_connection() == [2]
    pairs = [p.name for p in sandbox.exchange.pairs()]
    topics = [*(f"market_depth.{p}" for p in pairs), "diff.BTC_USDT"][:19]  # 2 + 19 = 21
    for start in range(0, 18, 6):
        await ws.send_str(json.dumps(["subscribe", *topics[start : start + 6]]))
    await frames(ws, "subscribe", count=3)
    assert sandbox.stats.topics_per_connection() == [20]
    # the 21st topic: the frame is refused whole (live), even its topic that would have fit
    await ws.send_str(json.dumps(["subscribe", topics[18]]))
    (too_many,) = await frames(ws, "error")
    assert too_many[2:] == ["Too many topics", "subscribe"]
    assert sandbox.stats.topics_per_connection() == [20]
    await ws.send_str(json.dumps(["unsubscribe", "trade.BTC_USDT"]))
    (unack,) = await frames(ws, "unsubscribe")
    assert unack[2:] == ["trade.BTC_USDT"]
    await ws.send_str("{nope")
    (bad,) = await frames(ws, "error")
    assert not ws.closed and "invalid" in bad[2]
    await ws.close()


async def test_big_frame_closes_with_1009_and_text_one_closes(
    alp: AlpClient, sandbox: Sandbox
) -> None:
    ws = await connect(alp.session, sandbox)
    await ws.send_str(json.dumps(["subscribe", *["trade.BTC_USDT"] * 60]))  # > 800 bytes
    message = await ws.receive(timeout=3)
    assert message.type is aiohttp.WSMsgType.CLOSE and ws.close_code == 1009
    ws = await connect(alp.session, sandbox)
    await ws.send_str("1")
    message = await ws.receive(timeout=3)
    assert message.type is aiohttp.WSMsgType.CLOSE


async def test_text_ping_mode(alp: AlpClient) -> None:
    config = SandboxConfig(market=False, quirks=Quirks(ping_mode="text", ping_interval_s=0.2))
    async with Sandbox(config) as sandbox:
        ws = await alp.session.ws_connect(sandbox.ws_url, autoping=False)
        pings = await frames(ws, "1", count=2, within=3)
        assert pings == ["1", "1"]
        await ws.send_str("2")
        await asyncio.sleep(0.3)
        assert not ws.closed
        await ws.close()


async def test_public_frames(alp: AlpClient, sandbox: Sandbox) -> None:
    ws = await connect(alp.session, sandbox)
    await ws.send_str(
        json.dumps(
            [
                "subscribe",
                "ticker.BTC_USDT",
                "ticker.*",
                "trade.BTC_USDT",
                "diff.BTC_USDT",
                "market_depth.BTC_USDT",
            ]
        )
    )
    await frames(ws, "subscribe")
    sandbox.ws.quirks = Quirks(diff_silent=False)  # diff frames by name: live sends none
    seller = AlpClient(alp.session, alp.base)
    await seller.login("desk-b-key", "desk-b-secret")
    status, _, _ = await seller.signed("POST", "/trading/order", LIMIT, secret="desk-b-secret")
    assert status == 200
    (diff,) = await frames(ws, "d")
    assert diff[2] == "BTC_USDT" and diff[3] == [[["30000", "0.1"]], []]
    await alp.signed(
        "POST", "/trading/order", {**LIMIT, "order_side": "BUY", "base_amount": "0.04"}
    )
    (trade,) = await frames(ws, "t")
    assert len(trade) == 7 and trade[3:] == ["BTC_USDT", "0.04", "30000", "buy"]
    sandbox.publish_now()
    collected: dict[str, Any] = {}

    async def gather() -> None:
        async for message in ws:
            data = json.loads(message.data)
            collected.setdefault(data[0], data)
            if "p" in collected and "tk" in collected:
                return

    await asyncio.wait_for(gather(), 3)
    depth = collected["p"][2]
    assert (
        depth["Symbol"] == "BTC_USDT"
        and depth["Asks"] == [["30000", "0.06"]]
        and depth["Bids"] == []
    )
    ticker = collected["tk"]
    assert all(len(row) == 9 for row in ticker[2:])
    btc = next(row for row in ticker[2:] if row[0] == "BTC_USDT")
    assert btc[1] == "30000"
    # ticker.PAIR stays silent: exactly one tk frame per publish reached this socket
    await ws.close()


async def test_no_depth_snapshot_on_subscribe(alp: AlpClient, sandbox: Sandbox) -> None:
    await alp.signed(
        "POST", "/trading/order", {**LIMIT, "order_side": "BUY", "limit_price": "20000"}
    )
    ws = await connect(alp.session, sandbox)
    await ws.send_str(json.dumps(["subscribe", "market_depth.BTC_USDT"]))
    await frames(ws, "subscribe")
    with pytest.raises(TimeoutError):
        await frames(ws, "p", within=0.5)
    await ws.close()


async def test_private_frames_after_auth(alp: AlpClient, sandbox: Sandbox) -> None:
    ws = await connect(alp.session, sandbox)
    await ws.send_str(json.dumps(["auth", "not-a-token"]))
    (error,) = await frames(ws, "error")
    assert "token" in error[2] and error[3] == "auth" and "not-a-token" not in json.dumps(error)
    await ws.send_str(json.dumps(["auth", alp.token]))  # ALP acknowledges nothing
    with pytest.raises(TimeoutError):
        await frames(ws, "auth", within=0.3)
    await alp.signed(
        "POST", "/trading/order", {**LIMIT, "order_side": "BUY", "limit_price": "20000"}
    )
    got = await collect(ws, {"o", "w"})
    order, wallet = got["o"], got["w"]
    assert len(order) == 19 and order[3] == "BTC_USDT" and order[4] == "BID" and order[14] == "OPEN"
    assert order[7] == "20000" and order[8] == "0.1"
    assert (
        len(wallet) == 7 and wallet[2] == "USDT" and wallet[3] == "SPOT" and wallet[6] == "2000.0"
    )
    await ws.close()


async def test_drop_and_inject(alp: AlpClient, sandbox: Sandbox) -> None:
    ws = await connect(alp.session, sandbox)
    await ws.send_str(json.dumps(["subscribe", "trade.BTC_USDT"]))
    await frames(ws, "subscribe")
    assert await sandbox.inject_ws_frame('["zz", 1, "garbage"]', topic="trade.BTC_USDT") == 1
    (junk,) = await frames(ws, "zz")
    assert junk[2] == "garbage"
    assert await sandbox.drop_ws_connections() == 1
    message = await ws.receive(timeout=3)
    assert message.type is aiohttp.WSMsgType.CLOSE


async def test_market_activity_is_deterministic() -> None:
    trades = []
    for _ in range(2):
        sandbox = Sandbox(SandboxConfig(market=False, seed=42), clock=lambda: 1_700_000_000.0)
        sandbox.market.step(40)
        trades.append(
            [(t.price, t.amount, t.type) for t in sandbox.exchange.trades("BTC_USDT", 100)]
        )
        sandbox.exchange.check_invariants()
    assert trades[0] == trades[1] and len(trades[0]) > 0
