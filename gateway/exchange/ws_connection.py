"""WsConnection: one upstream ALP WebSocket kept alive — reconnects, keepalive, staleness watchdog."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp

from gateway.core import ws_codec, ws_events
from gateway.core.backoff import reconnect_delay
from gateway.supervisor import Supervisor

log = logging.getLogger(__name__)
READER_YIELD_EVERY = 64


@dataclass(frozen=True)
class WsSettings:
    url: str
    stale_after_s: float = 45.0  # API-NOTES: ~45 s of silence means a dead socket
    reconnect_base_s: float = 0.25
    reconnect_cap_s: float = 15.0
    connect_timeout_s: float = 10.0
    max_frame_bytes: int = 800


@dataclass
class WsStats:
    connects: int = 0
    disconnects: int = 0
    frames_in: int = 0
    frames_out: int = 0
    text_pings_answered: int = 0
    stale_timeouts: int = 0


class WsConnection:
    """Owns one socket and its reconnect loop; everything it receives goes to `on_event`.

    Keepalive per API-NOTES: protocol pings are answered with pongs; a received text "1" is answered
    with "2"; the gateway never sends unsolicited text. Any frame (pings included) resets the
    staleness watchdog; `stale_after_s` of silence drops the socket and reconnects. `on_connected` runs after every
    (re)connect, before frames are dispatched, and must (re)send subscriptions or auth;
    `on_disconnected` runs after every loss so listeners can tell their consumers;
    `on_connect_failed` after every attempt that did not get a socket (ALP unreachable), so that
    consumers who never had a connection are not left waiting in silence.
    """

    def __init__(
        self,
        name: str,
        session: aiohttp.ClientSession,
        settings: WsSettings,
        *,
        on_event: Callable[[ws_events.WsEvent], None],
        on_connected: Callable[[WsConnection], Awaitable[None]],
        on_disconnected: Callable[[WsConnection], None],
        on_connect_failed: Callable[[WsConnection], None] | None = None,
        codec_stats: ws_codec.CodecStats | None = None,
        rand: Callable[[], float] = random.random,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.name = name
        self._supervisor = supervisor or Supervisor(f"ws:{name}")
        self._owns_supervisor = supervisor is None
        self._session = session
        self._settings = settings
        self._on_event = on_event
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._on_connect_failed = on_connect_failed
        self._rand = rand
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._started = False
        self._closing = False
        self.dispatch_errors = 0
        self.connected = asyncio.Event()
        self.stats = WsStats()
        self.codec_stats = codec_stats or ws_codec.CodecStats()
        self.last_frame_at = 0.0

    def __repr__(self) -> str:
        return f"WsConnection({self.name!r}, connected={self.connected.is_set()})"

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._supervisor.start(f"ws:{self.name}", self._run, restart=True, replace=True)

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()
        if self._started:
            await self._supervisor.stop(f"ws:{self.name}")
        if self._owns_supervisor:
            await self._supervisor.close()

    async def send(self, text: str) -> bool:
        """Send one frame if connected; False when not (the next (re)connect resends state)."""
        ws = self._ws
        if ws is None or ws.closed or not self.connected.is_set():
            return False
        if len(text.encode()) > self._settings.max_frame_bytes:
            raise ValueError(f"frame of {len(text.encode())} bytes exceeds the upstream limit")
        try:
            await ws.send_str(text)
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            return False
        self.stats.frames_out += 1
        return True

    async def _run(self) -> None:
        attempt = 0
        while not self._closing:
            handshaking = True
            try:
                ws = await self._connect()
                handshaking = False
                async with ws:
                    self._ws = ws
                    self.stats.connects += 1
                    self.last_frame_at = time.monotonic()
                    self.connected.set()
                    attempt = 0
                    await self._on_connected(self)
                    await self._read(ws)
            except asyncio.CancelledError:
                handshaking = False  # stopped, not failed
                raise
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                if handshaking and isinstance(exc, TimeoutError):
                    log.warning(
                        "ws %s: no handshake within %.1f s; retrying",
                        self.name,
                        self._settings.connect_timeout_s,
                    )
                else:
                    log.warning("ws %s: connection failed: %s", self.name, type(exc).__name__)
            except Exception:
                log.exception("ws %s: unexpected error; reconnecting", self.name)
            finally:
                was_connected = self.connected.is_set()
                self.connected.clear()
                self._ws = None
                if was_connected:
                    self.stats.disconnects += 1
                    self._on_disconnected(self)
                elif handshaking and self._on_connect_failed is not None and not self._closing:
                    self._on_connect_failed(self)
            if self._closing:
                return
            delay = reconnect_delay(
                attempt,
                base=self._settings.reconnect_base_s,
                cap=self._settings.reconnect_cap_s,
                rand=self._rand(),
            )
            attempt += 1
            await asyncio.sleep(delay)

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        """DNS, TCP, TLS and the HTTP upgrade within `connect_timeout_s`: a peer that accepts and
        never answers would otherwise hold this connection (and its topics) for the session's
        5-minute default. TimeoutError lets the loop back off and try again."""
        async with asyncio.timeout(self._settings.connect_timeout_s):
            return await self._session.ws_connect(
                self._settings.url,
                autoping=False,  # answered in _read so that pings count as liveness
                heartbeat=None,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                max_msg_size=16 * 1024 * 1024,
            )

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        stale = self._settings.stale_after_s
        burst = 0
        while True:
            burst += 1
            if burst >= READER_YIELD_EVERY:
                # Buffered frames are received without suspending; let consumers' writers run so a
                # burst upstream reaches them as batches instead of piling up in their queues.
                burst = 0
                await asyncio.sleep(0)
            try:
                message = await ws.receive(timeout=stale)
            except TimeoutError:
                self.stats.stale_timeouts += 1
                log.warning("ws %s: no frame for %.0f s; reconnecting", self.name, stale)
                return
            if message.type is aiohttp.WSMsgType.TEXT:
                self.last_frame_at = time.monotonic()
                self.stats.frames_in += 1
                event = ws_codec.decode_frame(message.data, self.codec_stats)
                if isinstance(event, ws_events.TextPing):
                    self.stats.text_pings_answered += 1
                    await ws.send_str(ws_codec.PONG_TEXT)
                    continue
                try:
                    self._on_event(event)
                except Exception:  # a consumer's bug must not reset the socket of every topic
                    self.dispatch_errors += 1
                    log.exception("ws %s: dispatching %s failed", self.name, type(event).__name__)
            elif message.type is aiohttp.WSMsgType.BINARY:
                self.last_frame_at = time.monotonic()
                self.codec_stats.malformed += 1
            elif message.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.ERROR,
            ):
                if self._closing:  # our own close (linger ended, shutdown)
                    log.debug("ws %s: closed", self.name)
                else:
                    log.info("ws %s: closed by upstream (%s)", self.name, ws.close_code)
                return
            elif message.type is aiohttp.WSMsgType.PING:
                self.last_frame_at = time.monotonic()
                await ws.pong(message.data)
            else:  # PONG or other control frames still prove liveness
                self.last_frame_at = time.monotonic()
