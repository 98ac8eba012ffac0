"""PrivateFeed: one authenticated WebSocket per ALP account, shared by all its private streams."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import aiohttp

from gateway.core import ws_codec, ws_events
from gateway.core.backoff import reconnect_delay
from gateway.core.ws_commands import ErrorKind, classify_error
from gateway.errors import AuthFailed, PrivateLoginRefused
from gateway.exchange.token_manager import TokenManager
from gateway.exchange.ws_connection import WsConnection, WsSettings
from gateway.exchange.ws_public import RECONNECTING, RESYNCED, SUBSCRIBED, FeedListener
from gateway.supervisor import Supervisor

log = logging.getLogger(__name__)

PRIVATE_TOPIC = "private"
# ALP acknowledges a good `["auth", jwt]` with nothing; a refusal is an error frame. A login
# counts as accepted when no refusal came within this grace, or as soon as a private frame arrives.
AUTH_GRACE_S = 1.0
# Consecutive refused logins (each with a freshly fetched token) before the consumers are told.
MAX_REFUSALS = 3


class AccountFeed(Protocol):
    """What streams need of an account's private events: its PrivateFeed, or a fleet member's
    view of the one private socket the fleet keeps for the account (cluster/topic_share.py)."""

    async def add(self, listener: FeedListener) -> None: ...

    async def remove(self, listener: FeedListener) -> None: ...

    def is_live(self) -> bool: ...


class PrivateFeed:
    """Opens on the first listener, closes after the last one leaves (after a linger).

    Authentication uses the account's shared TokenManager (the same token as REST): `["auth", jwt]`
    after every (re)connect and again shortly before the token expires. Consumers see SUBSCRIBED
    (or RESYNCED) only once ALP did not refuse the login. A failing /auth or a refused login is
    retried with backoff for as long as the socket is up; after MAX_REFUSALS refusals in a row the
    consumers end with PrivateLoginRefused (UNAUTHENTICATED) instead of waiting silently.
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
        auth_grace_s: float = AUTH_GRACE_S,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.account = account
        self._supervisor = supervisor or Supervisor(f"private:{account}")
        self._owns_supervisor = supervisor is None
        self._session = session
        self._settings = settings
        self._tokens = tokens
        self._linger_s = linger_s
        self._reauth_margin = reauth_margin_s
        self._auth_grace_s = auth_grace_s
        self._clock = clock
        self._rand = rand
        self._listeners: set[FeedListener] = set()
        self._conn: WsConnection | None = None
        self._was_connected = False
        self._authed = False
        self._stalled = False  # consumers were told RECONNECTING and not told it is back yet
        self._auth_answer: asyncio.Future[str | None] | None = None
        self.auth_frames_sent = 0
        self.login_refusals = 0
        self.login_failures = 0  # /auth could not give a token
        self.unsolicited_errors = 0
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
        self._cancel("close")
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
                supervisor=self._supervisor,
                on_connect_failed=self._connect_failed,
            )
            self._conn.start()
            self._spawn("reauth", self._reauth_loop, restart=True)
        elif self.is_live():
            listener.on_status(SUBSCRIBED, (PRIVATE_TOPIC,))
        elif self._stalled:  # ALP unreachable or refusing logins right now: say so at once
            listener.on_status(RECONNECTING, (PRIVATE_TOPIC,))

    async def remove(self, listener: FeedListener) -> None:
        self._listeners.discard(listener)
        if not self._listeners and self._conn is not None and not self._running("close"):
            self._spawn("close", self._close_later)

    async def _close_later(self) -> None:
        await asyncio.sleep(self._linger_s)
        if not self._listeners:
            await self.close()

    async def close(self) -> None:
        for name in ("reauth", "login", "close"):
            await self._supervisor.stop(self._name(name))
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()
        # a later listener opens a new socket: its first login is SUBSCRIBED, not RESYNCED
        self._was_connected = self._stalled = self._authed = False
        if self._owns_supervisor:
            await self._supervisor.close()

    async def drop_connection_for_test(self) -> None:
        if self._conn is not None and self._conn._ws is not None:
            await self._conn._ws.close()

    # -- supervised tasks --------------------------------------------------------------------------
    def _name(self, name: str) -> str:
        return f"private:{self.account}:{name}"

    def _spawn(
        self, name: str, factory: Callable[[], Coroutine[Any, Any, None]], *, restart: bool = False
    ) -> None:
        self._supervisor.start(self._name(name), factory, restart=restart, replace=True)

    def _running(self, name: str) -> bool:
        return self._supervisor.running(self._name(name))

    def _cancel(self, name: str) -> None:
        self._supervisor.cancel(self._name(name))

    # -- login ---------------------------------------------------------------------------------------
    async def _connected(self, conn: WsConnection) -> None:
        self._spawn("login", functools.partial(self._login, conn, renewing=False))

    def _disconnected(self, conn: WsConnection) -> None:
        self._authed = False
        self._cancel("login")
        self._resolve_auth(None)
        self._stall()

    def _connect_failed(self, conn: WsConnection) -> None:
        self._stall()

    def _stall(self) -> None:
        """Consumers hear RECONNECTING once per outage (the socket went, cannot be opened, or
        cannot log in), whether they were live before or are still waiting for the first login;
        RESYNCED follows when a login is accepted."""
        if self._stalled:
            return
        self._stalled = True
        for listener in tuple(self._listeners):
            listener.on_status(RECONNECTING, (PRIVATE_TOPIC,))

    async def _login(self, conn: WsConnection, *, renewing: bool) -> None:
        """Send auth until ALP does not refuse it (or the socket goes); never gives up silently."""
        attempt = 0
        refusals = 0
        while self._conn is conn and conn.connected.is_set():
            refusal: str | None = None
            try:
                refusal = await self._attempt_login(conn)
            except asyncio.CancelledError:
                raise
            except AuthFailed as exc:  # /auth refused the key itself: as final as a WS refusal
                self.login_failures += 1
                refusal = f"POST /auth refused the key ({exc.code or exc.http_status})"
            except Exception as exc:  # /auth down or rate limited: transient, try again later
                self.login_failures += 1
                log.warning(
                    "private ws %s: cannot log in (%s: %s); retrying",
                    self.account,
                    type(exc).__name__,
                    str(exc)[:200],
                )
            else:
                if refusal is None:
                    self._accepted(renewing)
                    return
            if refusal is not None:
                refusals += 1
                self.login_refusals += 1
                log.warning(
                    "private ws %s: ALP refused the login (%d in a row): %s",
                    self.account,
                    refusals,
                    refusal[:200],
                )
                if refusals >= MAX_REFUSALS:
                    self._refused_for_good(refusal)
                    refusals = 0
            if not self._authed:  # (a renewal's failure: the current login still holds)
                self._stall()
            await self._backoff(attempt)
            attempt += 1

    async def _backoff(self, attempt: int) -> None:
        """The reconnect schedule's pause after `attempt` failures in a row (jittered, capped)."""
        await asyncio.sleep(
            reconnect_delay(
                attempt,
                base=self._settings.reconnect_base_s,
                cap=self._settings.reconnect_cap_s,
                rand=self._rand(),
            )
        )

    async def _attempt_login(self, conn: WsConnection) -> str | None:
        """One login: None if accepted, else ALP's refusal message."""
        token = await self._tokens.token()
        answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._auth_answer = answer
        if not await conn.send(ws_codec.auth_frame(token)):
            raise ConnectionError("socket closed before auth was sent")
        self.auth_frames_sent += 1
        try:
            async with asyncio.timeout(self._auth_grace_s):
                refusal = await asyncio.shield(answer)
        except TimeoutError:
            refusal = None  # no refusal within the grace: ALP took it
        finally:
            if self._auth_answer is answer:
                self._auth_answer = None
        if refusal is not None:
            await self._tokens.invalidate(token)
        return refusal

    def _resolve_auth(self, refusal: str | None) -> None:
        answer = self._auth_answer
        if answer is not None and not answer.done():
            answer.set_result(refusal)

    def _accepted(self, renewing: bool) -> None:
        was_authed, self._authed = self._authed, True
        if renewing and was_authed:
            return
        state = RESYNCED if self._was_connected or self._stalled else SUBSCRIBED
        self._was_connected, self._stalled = True, False
        for listener in tuple(self._listeners):
            listener.on_status(state, (PRIVATE_TOPIC,))

    def _refused_for_good(self, message: str) -> None:
        self._authed = False
        error = PrivateLoginRefused(self.account, message)
        for listener in tuple(self._listeners):
            listener.on_rejected(PRIVATE_TOPIC, error)

    async def _reauth_loop(self) -> None:
        """Log in again with a fresh token before the current one expires; survives any error."""
        failures = 0
        while True:
            try:
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
                if conn is not None and conn.connected.is_set() and not self._running("login"):
                    await self._tokens.token()
                    self._spawn("login", functools.partial(self._login, conn, renewing=True))
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                log.warning(
                    "private ws %s: token renewal failed (%s); retrying",
                    self.account,
                    type(exc).__name__,
                )
                await self._backoff(failures)

    def _dispatch(self, event: ws_events.WsEvent) -> None:
        if isinstance(event, ws_events.OrderUpdate | ws_events.WalletUpdate):
            self._resolve_auth(None)  # a private frame proves the login
            for listener in tuple(self._listeners):
                listener.on_event(PRIVATE_TOPIC, event)
        elif isinstance(event, ws_events.ErrorFrame):
            pending = self._auth_answer is not None
            kind = classify_error(event.message, event.command, auth_pending=pending)
            if kind is ErrorKind.AUTH_REFUSED and pending:
                self._resolve_auth(event.message or "login refused")
            elif kind is ErrorKind.AUTH_REFUSED and self._authed:
                # a refusal after the grace (slow answer, or a revoked key): log in again
                log.warning("private ws %s: late login refusal: %s", self.account, event.message)
                self._authed = False
                conn = self._conn
                if conn is not None and not self._running("login"):
                    self._spawn("login", functools.partial(self._login, conn, renewing=False))
            else:
                self.unsolicited_errors += 1
                log.warning("private ws %s: upstream error: %s", self.account, event.message[:200])
