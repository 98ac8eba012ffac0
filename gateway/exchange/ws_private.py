"""PrivateFeed: one authenticated WebSocket per ALP account, shared by all its private streams."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import aiohttp

from gateway.core import ws_codec, ws_events
from gateway.errors import UpstreamError
from gateway.exchange.token_manager import TokenManager
from gateway.exchange.ws_connection import WsConnection, WsSettings
from gateway.exchange.ws_public import RECONNECTING, RESYNCED, SUBSCRIBED, FeedListener

log = logging.getLogger(__name__)

PRIVATE_TOPIC = "private"


class PrivateFeed:
    """Opens on the first listener, closes after the last one leaves (after a linger).

    Authentication uses the account's shared TokenManager (the same token as REST): `["auth", jwt]`
    after every (re)connect, and again shortly before the token expires so the socket never runs on
    an expired token.
    """

    def __init__(
        self,
        account: str,
        session: aiohttp.ClientSession,
        settings: WsSettings,
        tokens: TokenManager,
        *,
        linger_s: float = 2.0,
        reauth_margin_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = account
        self._session = session
        self._settings = settings
        self._tokens = tokens
        self._linger_s = linger_s
        self._reauth_margin = reauth_margin_s
        self._clock = clock
        self._listeners: set[FeedListener] = set()
        self._conn: WsConnection | None = None
        self._reauth_task: asyncio.Task[None] | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._was_connected = False
        self._authed = False
        self.auth_frames_sent = 0
        self.codec_stats = ws_codec.CodecStats()

    @property
    def connection(self) -> WsConnection | None:
        return self._conn

    @property
    def open(self) -> bool:
        return self._conn is not None

    def is_live(self) -> bool:
        return self._conn is not None and self._conn.connected.is_set() and self._authed

    def listener_count(self) -> int:
        return len(self._listeners)

    async def add(self, listener: FeedListener) -> None:
        if self._close_task is not None:
            self._close_task.cancel()
            self._close_task = None
        self._listeners.add(listener)
        if self._conn is None:
            self._conn = WsConnection(
                f"private:{self.account}",
                self._session,
                self._settings,
                on_event=self._dispatch,
                on_connected=self._connected,
                on_disconnected=self._disconnected,
                codec_stats=self.codec_stats,
            )
            self._conn.start()
            self._reauth_task = asyncio.get_running_loop().create_task(self._reauth_loop())
        elif self.is_live():
            listener.on_status(SUBSCRIBED, (PRIVATE_TOPIC,))

    async def remove(self, listener: FeedListener) -> None:
        self._listeners.discard(listener)
        if not self._listeners and self._conn is not None and self._close_task is None:
            self._close_task = asyncio.get_running_loop().create_task(self._close_later())

    async def _close_later(self) -> None:
        await asyncio.sleep(self._linger_s)
        self._close_task = None
        if not self._listeners:
            await self.close()

    async def close(self) -> None:
        if self._reauth_task is not None:
            self._reauth_task.cancel()
            self._reauth_task = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def drop_connection_for_test(self) -> None:
        if self._conn is not None and self._conn._ws is not None:
            await self._conn._ws.close()

    async def _authenticate(self, conn: WsConnection) -> bool:
        try:
            token = await self._tokens.token()
        except UpstreamError as exc:
            log.warning("private ws %s: cannot get a token: %s", self.account, type(exc).__name__)
            return False
        sent = await conn.send(ws_codec.auth_frame(token))
        if sent:
            self.auth_frames_sent += 1
        return sent

    async def _connected(self, conn: WsConnection) -> None:
        if not await self._authenticate(conn):
            return
        self._authed = True
        state = RESYNCED if self._was_connected else SUBSCRIBED
        self._was_connected = True
        for listener in tuple(self._listeners):
            listener.on_status(state, (PRIVATE_TOPIC,))

    def _disconnected(self, conn: WsConnection) -> None:
        self._authed = False
        for listener in tuple(self._listeners):
            listener.on_status(RECONNECTING, (PRIVATE_TOPIC,))

    async def _reauth_loop(self) -> None:
        """Re-send auth with a fresh token before the current one expires."""
        while True:
            expires_at = self._tokens.expires_at
            if expires_at is None:
                await asyncio.sleep(1.0)
                continue
            left = expires_at - self._clock()
            wait = left - self._reauth_margin
            if wait < 0.5:  # short-lived tokens: renew half-way through what is left
                wait = max(0.5, left / 2)
            await asyncio.sleep(wait)
            conn = self._conn
            if conn is not None and conn.connected.is_set():
                await self._tokens.token()
                await self._authenticate(conn)

    def _dispatch(self, event: ws_events.WsEvent) -> None:
        if isinstance(event, ws_events.OrderUpdate | ws_events.WalletUpdate):
            for listener in tuple(self._listeners):
                listener.on_event(PRIVATE_TOPIC, event)
        elif isinstance(event, ws_events.ErrorFrame):
            log.warning("private ws %s: upstream error: %s", self.account, event.message[:200])
