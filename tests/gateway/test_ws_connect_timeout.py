"""A WebSocket upstream that accepts TCP and never answers the handshake: give up, back off, retry."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from gateway.exchange.ws_connection import WsConnection, WsSettings
from tests.gateway.test_streams import eventually

CONNECT_TIMEOUT_S = 0.3


class SilentServer:
    """Accepts every TCP connection, reads whatever comes, answers nothing."""

    def __init__(self) -> None:
        self.accepted_at: list[float] = []
        self.closed_by_client = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted_at.append(time.monotonic())
        try:
            while await reader.read(4096):
                pass  # the upgrade request: never answered
            self.closed_by_client += 1
        finally:
            writer.close()

    async def __aenter__(self) -> SilentServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def silent() -> AsyncIterator[SilentServer]:
    async with SilentServer() as server:
        yield server


def connection(session: aiohttp.ClientSession, port: int) -> WsConnection:
    connected: list[WsConnection] = []

    async def on_connected(conn: WsConnection) -> None:
        connected.append(conn)

    return WsConnection(
        "silent",
        session,
        WsSettings(
            url=f"ws://127.0.0.1:{port}/ws",
            connect_timeout_s=CONNECT_TIMEOUT_S,
            reconnect_base_s=0.05,
            reconnect_cap_s=0.1,
        ),
        on_event=lambda event: None,
        on_connected=on_connected,
        on_disconnected=lambda conn: None,
        rand=lambda: 0.5,
    )


async def test_unanswered_handshake_times_out_and_is_retried_with_backoff(
    silent: SilentServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.exchange.ws_connection")
    async with aiohttp.ClientSession() as session:
        conn = connection(session, silent.port)
        started = time.monotonic()
        conn.start()
        try:
            await eventually(lambda: len(silent.accepted_at) >= 3, within=5)
            # every abandoned attempt released its socket
            await eventually(lambda: silent.closed_by_client >= 2, within=2)
        finally:
            await conn.close()
        assert not conn.connected.is_set()
        assert conn.stats.connects == 0
    gaps = [b - a for a, b in zip([started, *silent.accepted_at], silent.accepted_at, strict=False)]
    # each retry waited out the handshake timeout plus a backoff, never hammering or hanging
    assert all(gap >= CONNECT_TIMEOUT_S for gap in gaps[1:]), gaps
    assert all(gap < CONNECT_TIMEOUT_S + 1.0 for gap in gaps), gaps
    timeouts = [r.getMessage() for r in caplog.records if "handshake" in r.getMessage()]
    assert len(timeouts) >= 2, timeouts


async def test_close_during_an_unanswered_handshake_returns_promptly(
    silent: SilentServer,
) -> None:
    async with aiohttp.ClientSession() as session:
        conn = connection(session, silent.port)
        conn.start()
        await eventually(lambda: len(silent.accepted_at) >= 1, within=5)
        await asyncio.wait_for(conn.close(), 1.0)
        await eventually(lambda: silent.closed_by_client >= 1, within=2)
        assert conn.stats.connects == 0
