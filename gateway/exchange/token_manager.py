"""TokenManager: one ALP bearer JWT per credential, shared by REST and WebSocket, single-flight refresh."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from gateway.core.token_policy import effective_margin, needs_refresh, read_expiry
from gateway.errors import UpstreamProtocolError

log = logging.getLogger(__name__)

Authenticate = Callable[[], Awaitable[str]]


@dataclass(frozen=True)
class HeldToken:
    """A JWT with its `exp` and when it was obtained (Unix seconds); the token never prints."""

    token: str = field(repr=False)
    expires_at: float
    obtained_at: float


class SharedTokenStore(Protocol):
    """One account's token shared by a fleet of gateways (`gateway.cluster.tokens.SharedTokens`)."""

    async def obtain(
        self, fetch: Callable[[], Awaitable[HeldToken]], fresh: Callable[[HeldToken], bool]
    ) -> HeldToken | None:
        """The fleet's token if `fresh` accepts it, else one from `fetch` (one member at a time).

        None when the store is unreachable: the caller authenticates on its own.
        """
        ...

    async def invalidate(self, rejected: str) -> None:
        """Drop the fleet's token if it is `rejected`; never raises for the store being down."""
        ...


class TokenManager:
    """Holds the current JWT of one ALP account and renews it ahead of `exp`.

    `token()` is safe to call from any number of tasks: at most one `POST /auth` runs at a time and
    every waiter re-checks after it. `invalidate(token)` drops a token ALP refused (401) unless a
    newer one has already replaced it, so one 401 burst causes one re-authentication.

    With a `shared` store the members of a fleet hold one token per account: a member needing a
    token takes the fleet's, at most one member authenticates per lifetime, and a 401 on any
    member drops it for all. Without the store (or while it is down) each member authenticates
    for itself.
    """

    def __init__(
        self,
        account: str,
        api_key: str,
        authenticate: Authenticate,
        *,
        refresh_margin_s: float,
        cache_dir: Path | None = None,
        clock: Callable[[], float] = time.time,
        shared: SharedTokenStore | None = None,
    ) -> None:
        self.account = account
        self._shared = shared
        self._authenticate = authenticate
        self._margin = refresh_margin_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._refreshing: asyncio.Task[str] | None = None
        self._token: str | None = None
        self._expires_at: float | None = None
        self._lifetime: float | None = None
        self.refreshes = 0
        self._cache_file: Path | None = None
        if cache_dir is not None:
            digest = hashlib.sha256(api_key.encode()).hexdigest()[:16]
            self._cache_file = cache_dir / f"{account}-{digest}.jwt"
            self._load_cached()

    def __repr__(self) -> str:
        return f"TokenManager(account={self.account!r}, expires_at={self._expires_at!r})"

    @property
    def expires_at(self) -> float | None:
        return self._expires_at

    def current(self) -> str | None:
        """The held token if it is still fresh (no I/O)."""
        margin = effective_margin(self._margin, self._lifetime)
        if self._token and not needs_refresh(self._clock(), self._expires_at, margin):
            return self._token
        return None

    async def token(self, *, timeout_s: float | None = None) -> str:
        """The fresh token, refreshing it when needed. One refresh at a time, run as a task of
        its own: every waiter shares its result or failure, a waiter that gives up (`timeout_s`:
        TimeoutError; or is cancelled) leaves it running for the others, so a slow /auth still
        ends with a token although every single caller would have waited less."""
        fresh = self.current()
        if fresh is not None:
            return fresh
        task = self._refreshing
        if task is None or task.done():
            task = self._refreshing = asyncio.get_running_loop().create_task(
                self._obtain(), name=f"token:{self.account}"
            )
            task.add_done_callback(_retrieved)
        async with asyncio.timeout(timeout_s):
            return await asyncio.shield(task)

    async def _obtain(self) -> str:
        async with self._lock:
            fresh = self.current()
            if fresh is not None:
                return fresh
            if self._shared is not None:
                held = await self._shared.obtain(self._fetch, self._fresh)
                if held is not None:
                    self._adopt(held)
                    self._store()
                    return held.token
            return await self._refresh()

    async def invalidate(self, rejected: str) -> None:
        async with self._lock:
            if self._token == rejected:
                self._token = None
                self._expires_at = None
            if self._shared is not None:
                # under the lock: no task of this member can take the refused token back meanwhile
                await self._shared.invalidate(rejected)

    def _fresh(self, held: HeldToken) -> bool:
        margin = effective_margin(self._margin, held.expires_at - held.obtained_at)
        return not needs_refresh(self._clock(), held.expires_at, margin)

    def _adopt(self, held: HeldToken) -> None:
        self._token, self._expires_at = held.token, held.expires_at
        self._lifetime = held.expires_at - held.obtained_at

    async def _refresh(self) -> str:
        held = await self._fetch()
        self._adopt(held)
        self._store()
        return held.token

    async def _fetch(self) -> HeldToken:
        """One POST /auth: the new token, read but not yet held."""
        obtained_at = self._clock()
        token = await self._authenticate()
        try:
            expires_at = read_expiry(token)
        except UpstreamProtocolError:
            log.warning(
                "ALP token for account %s has no readable exp; refreshing per call", self.account
            )
            expires_at = self._clock()
        self.refreshes += 1
        log.info("ALP token for account %s refreshed, expires at %.0f", self.account, expires_at)
        return HeldToken(token, expires_at, obtained_at)

    def _load_cached(self) -> None:
        assert self._cache_file is not None
        try:
            token = self._cache_file.read_text().strip()
            expires_at = read_expiry(token)
        except (OSError, UpstreamProtocolError):
            return
        if not needs_refresh(self._clock(), expires_at, self._margin):
            self._token, self._expires_at = token, expires_at
            log.info("ALP token for account %s loaded from cache", self.account)

    def _store(self) -> None:
        if self._cache_file is None or self._token is None:
            return
        try:
            self._cache_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self._cache_file.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(self._token)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self._cache_file)
        except OSError as exc:
            log.warning("cannot persist ALP token for account %s: %s", self.account, exc.strerror)


def _retrieved(task: asyncio.Task[str]) -> None:
    """A refresh whose waiters all gave up still says how it ended (never unretrieved)."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("token refresh failed: %s", type(task.exception()).__name__)
