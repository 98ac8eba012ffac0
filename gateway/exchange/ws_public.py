"""PublicFeed: shares few upstream WebSocket connections among all public stream subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import aiohttp

from gateway.core import ws_codec, ws_events
from gateway.core.stream_state import StreamState, TopicStates
from gateway.core.subscriptions import (
    CloseConnection,
    Command,
    OpenConnection,
    Subscribe,
    SubscriptionTable,
    Unsubscribe,
)
from gateway.core.trade_dedup import TradeDedup
from gateway.core.ws_commands import ErrorKind, PendingSubscribes, classify_error
from gateway.errors import GatewayError, TopicRefused
from gateway.exchange.ws_connection import WsConnection, WsSettings
from gateway.supervisor import Supervisor

log = logging.getLogger(__name__)

RECONNECTING = StreamState.RECONNECTING
RESYNCED = StreamState.RESYNCED
SUBSCRIBED = StreamState.SUBSCRIBED


class FeedListener(Protocol):
    def on_event(self, topic: str, event: ws_events.WsEvent) -> None: ...

    def on_status(self, state: str, topics: tuple[str, ...]) -> None: ...

    def on_rejected(self, topic: str, error: GatewayError) -> None: ...


class TopicFeed(Protocol):
    """What streams and book keepers need of public topics: this process's PublicFeed, or a
    fleet member's SharedFeed (gateway/cluster/topic_share.py) that shares them across the fleet."""

    async def add(self, topic: str, listener: FeedListener) -> None: ...

    async def remove(self, topic: str, listener: FeedListener) -> None: ...

    def is_live(self, topic: str) -> bool: ...


class PublicFeed:
    """Topic -> listeners, backed by a SubscriptionTable packed onto a pool of connections.

    The first listener of a topic subscribes it upstream (once), the last one leaving unsubscribes
    it after a linger. A reconnect resubscribes every live topic of that connection and tells the
    listeners (RECONNECTING, then RESYNCED on the upstream ack).
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        settings: WsSettings,
        *,
        max_topics_per_connection: int = 20,
        linger_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._supervisor = supervisor or Supervisor("public-feed")
        self._owns_supervisor = supervisor is None
        self._session = session
        self._settings = settings
        self._table = SubscriptionTable(
            max_topics_per_connection=max_topics_per_connection, linger_s=linger_s
        )
        self._linger_s = linger_s
        self._clock = clock
        self._listeners: dict[str, set[FeedListener]] = {}
        self._connections: dict[str, WsConnection] = {}
        self._sent: dict[str, set[str]] = {}
        self._states = TopicStates()
        self._lock = asyncio.Lock()
        self._linger_wakeup = asyncio.Event()
        self._linger_started = False
        self._spawned = 0
        self._pending = PendingSubscribes()
        self._refused: dict[str, TopicRefused] = {}  # refused topics still in the table
        self._dedup = TradeDedup()
        self.codec_stats = ws_codec.CodecStats()
        self.subscribe_frames_sent = 0
        self.unsubscribe_frames_sent = 0
        self.unsolicited_errors = 0
        self.topics_refused = 0

    # -- listener side -------------------------------------------------------------------------
    @property
    def duplicates_dropped(self) -> int:
        return self._dedup.duplicates

    @property
    def trade_regressions(self) -> int:
        return self._dedup.regressions

    async def add(self, topic: str, listener: FeedListener) -> None:
        """Listen to `topic`; a topic already live upstream (another listener's, or lingering)
        says SUBSCRIBED to the new listener at once, as its ack will not come again."""
        async with self._lock:
            self._listeners.setdefault(topic, set()).add(listener)
            await self._apply(self._table.acquire(topic, self._clock()))
            self._ensure_linger_task()
            refused = self._refused.get(topic)
            live = self._states.is_live(topic)
            resyncing = self._states.is_resyncing(topic)
        if refused is not None:  # refused moments ago and not yet dropped from the table
            listener.on_rejected(topic, refused)
        elif live:
            listener.on_status(SUBSCRIBED, (topic,))
        elif resyncing:  # its connection is down: the others heard RECONNECTING, so does this one
            listener.on_status(RECONNECTING, (topic,))

    async def remove(self, topic: str, listener: FeedListener) -> None:
        async with self._lock:
            listeners = self._listeners.get(topic)
            if listeners is None or listener not in listeners:
                return
            listeners.discard(listener)
            if not listeners:
                del self._listeners[topic]
            await self._apply(self._table.release(topic, self._clock()))
            self._linger_wakeup.set()  # a new unsubscribe deadline may be the nearest

    def connections(self) -> dict[str, tuple[str, ...]]:
        """conn id -> topics on it (for status, metrics and tests)."""
        return self._table.connections()

    def is_live(self, topic: str) -> bool:
        return self._states.is_live(topic)

    def refcount(self, topic: str) -> int:
        return self._table.refcount(topic)

    def listener_count(self) -> int:
        return sum(len(v) for v in self._listeners.values())

    def connection_objects(self) -> dict[str, WsConnection]:
        return dict(self._connections)

    async def drop_all_connections_for_test(self) -> None:
        for conn in list(self._connections.values()):
            ws = conn._ws
            if ws is not None:
                await ws.close()

    async def close(self) -> None:
        await self._supervisor.stop("public-feed:linger")
        self._linger_started = False
        for conn in list(self._connections.values()):
            await conn.close()
        self._connections.clear()
        if self._owns_supervisor:
            await self._supervisor.close()

    # -- commands -> I/O -----------------------------------------------------------------------
    async def _apply(self, commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, OpenConnection):
                self._open(command.conn_id)
            elif isinstance(command, Subscribe):
                await self._send_subscribe(command.conn_id, command.topics)
            elif isinstance(command, Unsubscribe):
                await self._send_unsubscribe(command.conn_id, command.topics)
            elif isinstance(command, CloseConnection):
                conn = self._connections.pop(command.conn_id, None)
                self._sent.pop(command.conn_id, None)
                self._pending.reset(command.conn_id)
                if conn is not None:
                    await conn.close()

    def _open(self, conn_id: str) -> None:
        if conn_id in self._connections:
            return
        conn = WsConnection(
            conn_id,
            self._session,
            self._settings,
            on_event=functools.partial(self._dispatch, conn_id),
            on_connected=self._connected,
            on_disconnected=self._disconnected,
            on_connect_failed=self._connect_failed,
            codec_stats=self.codec_stats,
            supervisor=self._supervisor,
        )
        self._connections[conn_id] = conn
        self._sent[conn_id] = set()
        conn.start()

    async def _send_subscribe(self, conn_id: str, topics: tuple[str, ...]) -> None:
        conn = self._connections.get(conn_id)
        sent = self._sent.setdefault(conn_id, set())
        fresh = [t for t in topics if t not in sent]
        if conn is None or not fresh or not conn.connected.is_set():
            return  # `_connected` sends everything the table holds for this connection
        sent.update(fresh)
        for chunk in ws_codec.chunk_topics("subscribe", fresh, self._settings.max_frame_bytes):
            await self._send_chunk(conn, chunk)

    async def _send_chunk(self, conn: WsConnection, chunk: tuple[str, ...]) -> None:
        self._pending.sent(conn.name, chunk)
        if await conn.send(ws_codec.command_frame("subscribe", chunk)):
            self.subscribe_frames_sent += 1

    async def _send_unsubscribe(self, conn_id: str, topics: tuple[str, ...]) -> None:
        for topic in topics:  # it left the table: the next ask tries ALP afresh (a pair listed
            self._refused.pop(topic, None)  # since it was refused must work without a restart)
        conn = self._connections.get(conn_id)
        sent = self._sent.setdefault(conn_id, set())
        live = [t for t in topics if t in sent]
        sent.difference_update(live)
        # not live from now: a listener asking again before ALP's unsubscribe ack must wait for
        # the new subscribe's ack (one SUBSCRIBED), not hear SUBSCRIBED at once and then again
        self._states.unsubscribed(topics)
        if conn is None or not live:
            return
        for frame in ws_codec.unsubscribe_frames(live, self._settings.max_frame_bytes):
            if await conn.send(frame):
                self.unsubscribe_frames_sent += 1

    async def _connected(self, conn: WsConnection) -> None:
        async with self._lock:
            self._sent[conn.name] = set()
            self._pending.reset(conn.name)
            await self._apply(self._table.connection_reset(conn.name))

    def _disconnected(self, conn: WsConnection) -> None:
        topics = self._table.topics_of(conn.name)
        self._sent[conn.name] = set()
        self._pending.reset(conn.name)
        self._dedup.reset()  # a restarted upstream may number trades afresh
        for state, lost in self._states.lost(topics):
            self._notify(state, lost)

    def _connect_failed(self, conn: WsConnection) -> None:
        for state, waiting in self._states.unreachable(self._table.topics_of(conn.name)):
            self._notify(state, waiting)

    # -- upstream events -> listeners ----------------------------------------------------------
    def _dispatch(self, conn_id: str, event: ws_events.WsEvent) -> None:
        if isinstance(event, ws_events.Ack):
            if event.command == "subscribe":
                self._pending.acknowledged(conn_id, event.topics)
                for state, topics in self._states.acknowledged(event.topics):
                    self._notify(state, topics)
            if event.command == "unsubscribe":
                self._states.unsubscribed(event.topics)
            return
        if isinstance(event, ws_events.ErrorFrame):
            self._on_error(conn_id, event)
            return
        topic = ws_codec.topic_of(event)
        if topic is None:
            return
        if isinstance(event, ws_events.Trade):
            if self._dedup.seen(event.pair, event.trade_id):
                return  # the same trade again: trade.* and trade.PAIR both delivered it
            for listener in tuple(self._listeners.get("trade.*", ())):
                listener.on_event("trade.*", event)
        for listener in tuple(self._listeners.get(topic, ())):
            listener.on_event(topic, event)

    def _on_error(self, conn_id: str, event: ws_events.ErrorFrame) -> None:
        kind = classify_error(event.message, event.command)
        refusal = (
            self._pending.refused(conn_id, kind, event.topics)
            if kind
            in (ErrorKind.TOO_MANY_TOPICS, ErrorKind.TOPIC_NOT_FOUND, ErrorKind.TOPIC_INVALID)
            else None
        )
        if refusal is None or not refusal.topics:
            self.unsolicited_errors += 1
            log.warning(
                "ws %s: upstream error answering nothing of ours: %s", conn_id, event.message[:200]
            )
            return
        topics = tuple(
            t for t in refusal.topics if self._table.refcount(t) or t in self._sent.get(conn_id, ())
        )
        if kind is ErrorKind.TOO_MANY_TOPICS:
            log.warning("ws %s: upstream refused %d topics as too many", conn_id, len(topics))
            self._spawn(functools.partial(self._move, conn_id, topics))
        elif len(topics) > 1:
            # the error names no topic: ask again one topic a frame so the next answer does
            self._spawn(functools.partial(self._resend_singly, conn_id, topics))
        elif topics:
            self._reject(
                conn_id, topics[0], event.message, not_found=kind is ErrorKind.TOPIC_NOT_FOUND
            )

    def _reject(self, conn_id: str, topic: str, message: str, *, not_found: bool) -> None:
        self.topics_refused += 1
        self._sent.get(conn_id, set()).discard(topic)
        self._states.refused(topic)
        error = TopicRefused(topic, message, not_found=not_found)
        self._refused[topic] = error
        log.warning("ws %s: upstream refused topic %s: %s", conn_id, topic, message[:200])
        for listener in tuple(self._listeners.get(topic, ())):
            listener.on_rejected(topic, error)

    def _spawn(self, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """A one-shot follow-up of an upstream answer, owned by the supervisor."""
        self._spawned += 1
        self._supervisor.start(f"public-feed:task-{self._spawned}", factory, restart=False)

    async def _resend_singly(self, conn_id: str, topics: tuple[str, ...]) -> None:
        async with self._lock:
            conn = self._connections.get(conn_id)
            if conn is None or not conn.connected.is_set():
                return
            for topic in topics:
                if self._table.refcount(topic) or topic in self._sent.get(conn_id, ()):
                    await self._send_chunk(conn, (topic,))

    async def _move(self, conn_id: str, topics: tuple[str, ...]) -> None:
        async with self._lock:
            for topic in topics:
                self._sent.get(conn_id, set()).discard(topic)
                await self._apply(self._table.rejected(conn_id, topic, self._clock()))

    def _notify(self, state: str, topics: tuple[str, ...]) -> None:
        by_listener: dict[FeedListener, list[str]] = {}
        for topic in topics:
            for listener in self._listeners.get(topic, ()):
                by_listener.setdefault(listener, []).append(topic)
        for listener, mine in by_listener.items():
            listener.on_status(state, tuple(mine))

    # -- linger --------------------------------------------------------------------------------
    def _ensure_linger_task(self) -> None:
        if not self._linger_started:
            self._linger_started = True
            self._supervisor.start("public-feed:linger", self._linger_loop, restart=True)

    async def _linger_loop(self) -> None:
        """Sleeps until the table's next unsubscribe deadline (or a release moves it closer)."""
        while True:
            deadline = self._table.next_deadline()
            self._linger_wakeup.clear()
            if deadline is None:
                await self._linger_wakeup.wait()
                continue
            delay = deadline - self._clock()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancel
                    # that stops this loop when the wakeup fires at the same moment
                    async with asyncio.timeout(delay):
                        await self._linger_wakeup.wait()
                continue
            async with self._lock:
                await self._apply(self._table.due(self._clock()))
