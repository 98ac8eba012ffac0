"""Sandbox WebSocket `/ws`: the live protocol, its quirks, and publishing of engine events."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from gateway.sandbox.auth import Authority
from gateway.sandbox.config import SandboxConfig
from gateway.sandbox.engine.exchange import Exchange
from gateway.sandbox.engine.records import BookEvent, Event, OrderEvent, TradeEvent, WalletEvent
from gateway.sandbox.faults import SandboxStats
from gateway.sandbox.render import order_frame, wallet
from gateway.sandbox.wire import Reject, dumps

log = logging.getLogger(__name__)
CHANNELS = ("ticker", "trade", "diff", "market_depth", "rates")
PAIR_TEXT = re.compile(r"[A-Z0-9]+_[A-Z0-9]+")  # symbols are upper case only


def _s(value: Decimal) -> str:
    return format(value, "f")


class Client:
    """One connected socket: its topics, its account after auth, a bounded send queue."""

    def __init__(self, ws: web.WebSocketResponse, queue_size: int) -> None:
        self.ws = ws
        self.id = id(self)
        self.topics: set[str] = set()
        self.account_id: int | None = None
        self.queue: asyncio.Queue[str | None] = asyncio.Queue(queue_size)
        self.closing = False

    def send(self, text: str) -> bool:
        try:
            self.queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            return False


class WsHub:
    def __init__(
        self,
        config: SandboxConfig,
        exchange: Exchange,
        authority: Authority,
        stats: SandboxStats,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.quirks = config.quirks
        self.exchange = exchange
        self.authority = authority
        self.stats = stats
        self.clock = clock
        self.clients: set[Client] = set()
        self._pairs = {p.name for p in exchange.pairs()}
        self._dirty_depth: set[str] = set()
        self._tickers_dirty = False
        self._last_depth: dict[str, str] = {}

    # -- connection -------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        heartbeat = self.quirks.ping_interval_s if self.quirks.ping_mode == "protocol" else None
        # API-NOTES: permessage-deflate is not negotiated
        ws = web.WebSocketResponse(heartbeat=heartbeat, max_msg_size=1 << 20, compress=False)
        await ws.prepare(request)
        client = Client(ws, self.config.ws_send_queue)
        self.clients.add(client)
        self.stats.ws_connections_total += 1
        self.stats.ws_open += 1
        self.stats.topics_by_connection[client.id] = client.topics
        writer = asyncio.create_task(self._writer(client))
        pinger = (
            asyncio.create_task(self._text_pings(client))
            if self.quirks.ping_mode == "text"
            else None
        )
        scale = 1_000_000_000 if self.quirks.welcome_time_unit == "ns" else 1000
        interval = int(self.quirks.ping_interval_s * scale)
        client.send(
            json.dumps(["welcome", int(self.clock()), interval, interval * 2, str(uuid.uuid4())])
        )
        try:
            async for message in ws:
                if message.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    raw = message.data if isinstance(message.data, bytes) else message.data.encode()
                    if len(raw) > self.quirks.max_inbound_frame_bytes:  # any data frame (API-NOTES)
                        await ws.close(code=WSCloseCode.MESSAGE_TOO_BIG, message=b"frame too large")
                        break
                if message.type is not WSMsgType.TEXT:
                    continue
                if not await self._command(client, message.data):
                    break
        finally:
            self.clients.discard(client)
            self.stats.ws_open -= 1
            self.stats.topics_by_connection.pop(client.id, None)
            client.closing = True
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)
            for task in (writer, pinger):
                if task is not None:
                    task.cancel()
            if not ws.closed:
                await ws.close()
        return ws

    async def _writer(self, client: Client) -> None:
        while True:
            text = await client.queue.get()
            if text is None or client.ws.closed:
                return
            try:
                await client.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    async def _text_pings(self, client: Client) -> None:
        while not client.ws.closed:
            await asyncio.sleep(self.quirks.ping_interval_s)
            client.send("1")

    async def _command(self, client: Client, text: str) -> bool:
        """Handle one inbound frame; False closes the connection."""
        stripped = text.strip()
        if stripped in ("1", "2"):
            if stripped == "2" and self.quirks.ping_mode == "text":
                return True  # the answer to our text ping
            if stripped == "1" and self.quirks.ping_mode == "text":
                client.send("2")
                return True
            if self.quirks.close_on_unsolicited_text:
                await client.ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"unexpected text")
                return False
            return True
        try:
            frame = json.loads(stripped)
        except ValueError:
            client.send(self._error("invalid message"))
            return True
        if not isinstance(frame, list) or not frame or not isinstance(frame[0], str):
            client.send(self._error("invalid message"))
            return True
        command, args = frame[0], frame[1:]
        if command == "subscribe":
            self._subscribe(client, args, frame)
        elif command == "unsubscribe":
            # docs: "In case of any error, the server will send next message: ["error", ...]";
            # silent on unsubscribe, so the stricter reading: a bad topic applies none of the frame
            problem = next(
                filter(None, (self._topic_problem(t, "unsubscribe") for t in args)), None
            )
            if problem is not None:
                client.send(problem)
                return True
            removed = [t for t in args if isinstance(t, str) and t in client.topics]
            for topic in removed:
                client.topics.discard(topic)
                self.stats.ws_unsubscribe_commands[topic] += 1
            client.send(json.dumps(["unsubscribe", int(self.clock()), *removed]))
        elif command == "auth":
            self.stats.ws_auth_commands += 1
            token = args[0] if args and isinstance(args[0], str) else ""
            try:
                account = self.authority.verify(f"Bearer {token}")
            except Reject as exc:
                # never echo the token back: the error names the command, not its argument
                client.send(self._error(exc.message, "auth"))
            else:
                client.account_id = account.account_id
                if self.config.extensions.ws_auth_ack:
                    client.send(json.dumps(["auth", int(self.clock()), "ok"]))
        else:
            client.send(self._error("Unknown command", command[:40]))
        return True

    def _error(self, message: str, command: str | None = None) -> str:
        """`["error", ts, message]` (docs) or `["error", ts, message, command]` (live)."""
        frame: list[Any] = ["error", int(self.clock()), message]
        if command is not None:
            frame.append(command)
        return json.dumps(frame)

    def _topic_problem(self, topic: Any, command: str = "subscribe") -> str | None:
        """None if `topic` can be (un)subscribed; else the error frame ALP sends for it.

        A malformed topic gets the live `["error", ts, "Invalid topic: X", "subscribe"]`; a
        well-formed topic naming no listed pair gets the docs' `["error", ts, "Topic does not
        exist"]` (which names neither topic nor command).
        """
        if not isinstance(topic, str):
            return self._error("Invalid topic", command)
        channel, dot, pair = topic.partition(".")
        shown = topic[:60]
        if not dot or channel not in CHANNELS:
            return self._error(f"Invalid topic: {shown}", command)
        if pair == "*":
            ok = channel in ("ticker", "trade", "rates")
            return None if ok else self._error(f"Invalid topic: {shown}", command)
        if channel == "rates" or not PAIR_TEXT.fullmatch(pair):
            return self._error(f"Invalid topic: {shown}", command)
        return None if pair in self._pairs else self._error("Topic does not exist")

    def _subscribe(self, client: Client, topics: list[Any], frame: list[Any]) -> None:
        """All or nothing, as live: one refused topic (or one too many) applies none of the frame."""
        for topic in topics:
            problem = self._topic_problem(topic)
            if problem is not None:
                client.send(problem)
                return
        fresh = [t for t in dict.fromkeys(topics) if t not in client.topics]
        if len(client.topics) + len(fresh) > self.quirks.max_topics_per_connection:
            client.send(self._error("Too many topics", "subscribe"))
            return
        for topic in fresh:
            client.topics.add(topic)
            self.stats.ws_subscribe_commands[topic] += 1
        if topics:
            client.send(json.dumps(["subscribe", int(self.clock()), *topics]))
        if self.quirks.depth_snapshot_on_subscribe:
            for topic in topics:
                if topic.startswith("market_depth."):
                    client.send(self._depth_frame(topic.partition(".")[2]))

    # -- publishing --------------------------------------------------------------------------
    def _to_topic(self, topic: str, text: str) -> None:
        for client in tuple(self.clients):
            if topic in client.topics:
                self._deliver(client, text)

    def _deliver(self, client: Client, text: str) -> None:
        if not client.closing and not client.send(text):
            client.closing = True  # never let one slow client hold up the others
            self.stats.ws_closed_slow += 1
            asyncio.get_running_loop().create_task(
                client.ws.close(code=WSCloseCode.TRY_AGAIN_LATER)
            )

    def publish(self, events: list[Event]) -> None:
        now = int(self.clock())
        for event in events:
            if isinstance(event, TradeEvent):
                text = json.dumps(
                    [
                        "t",
                        now,
                        event.trade_id,
                        event.pair,
                        _s(event.amount),
                        _s(event.price),
                        event.taker_side,
                    ]
                )
                for client in tuple(self.clients):
                    if f"trade.{event.pair}" in client.topics or "trade.*" in client.topics:
                        self._deliver(client, text)
                self._tickers_dirty = True
            elif isinstance(event, BookEvent):
                if not self.quirks.diff_silent:
                    asks = [[_s(p), _s(d)] for p, d in event.asks]
                    bids = [[_s(p), _s(d)] for p, d in event.bids]
                    self._to_topic(
                        f"diff.{event.pair}", json.dumps(["d", now, event.pair, [asks, bids]])
                    )
                self._dirty_depth.add(event.pair)
                self._tickers_dirty = True
            elif isinstance(event, OrderEvent):
                text = dumps(order_frame(event.order, event.ts))
                self._to_account(event.account_id, text)
            elif isinstance(event, WalletEvent):
                text = json.dumps(
                    [
                        "w",
                        now,
                        event.currency,
                        wallet(event.wallet_type),
                        "",
                        _s(event.balance),
                        _s(event.reserve),
                    ]
                )
                self._to_account(event.account_id, text)

    def _to_account(self, account_id: int, text: str) -> None:
        for client in tuple(self.clients):
            if client.account_id == account_id:
                self._deliver(client, text)

    def _depth_frame(self, pair: str) -> str:
        view = self.exchange.order_book(pair, 20, 20)
        return json.dumps(
            [
                "p",
                int(self.clock()),
                {
                    "Asks": [[_s(p), _s(a)] for p, a in view.sell],
                    "Bids": [[_s(p), _s(a)] for p, a in view.buy],
                    "Symbol": pair,
                    # sums of the sizes shown (docs example and live probe), not of p x size
                    "TotalAsks": _s(sum((a for _, a in view.sell), Decimal(0))),
                    "TotalBids": _s(sum((a for _, a in view.buy), Decimal(0))),
                },
            ]
        )

    def flush_depth(self) -> None:
        """market_depth.PAIR: a full snapshot, only for pairs that changed, only to subscribers."""
        dirty, self._dirty_depth = self._dirty_depth, set()
        for pair in dirty:
            topic = f"market_depth.{pair}"
            if any(topic in c.topics for c in self.clients):
                frame = self._depth_frame(pair)
                body = frame[frame.index(",", 5) :]
                if self._last_depth.get(pair) != body:
                    self._last_depth[pair] = body
                    self._to_topic(topic, frame)

    def flush_tickers(self) -> None:
        if not self._tickers_dirty:
            return
        self._tickers_dirty = False
        now = self.clock()
        rows = []
        for t in self.exchange.tickers(now):
            rows.append(
                [
                    t.pair,
                    _s(t.last),
                    _s(t.vol),
                    _s(t.quote_volume),
                    _s(t.diff_percent),
                    _s(t.high),
                    _s(t.low),
                    _s(t.buy),
                    _s(t.sell),
                ]
            )
        self._to_topic("ticker.*", json.dumps(["tk", int(now), *rows]))
        if not self.quirks.ticker_pair_silent:
            for row in rows:
                self._to_topic(f"ticker.{row[0]}", json.dumps(["tk", int(now), row]))

    async def drop_all(self) -> int:
        clients = tuple(self.clients)
        for client in clients:
            await client.ws.close(
                code=WSCloseCode.GOING_AWAY, message=b"dropped by fault injection"
            )
        return len(clients)

    def inject(self, raw: str, topic: str | None) -> int:
        count = 0
        for client in tuple(self.clients):
            if topic is None or topic in client.topics:
                self._deliver(client, raw)
                count += 1
        return count
