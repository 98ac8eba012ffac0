"""Client-side rate limits toward ALP: one bucket for public calls, one per account for private ones."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gateway.core.rate_limit import TokenBucket
from gateway.errors import RateLimited


class RateLimiter:
    """Waits for a token when the wait fits the caller's deadline, else raises RateLimited.

    Defaults follow API-NOTES (v1's published limits: 100/s per IP public, 2/s per account private);
    a rate of 0 disables a bucket. `waits` counts calls that had to wait (metrics).
    """

    def __init__(
        self,
        *,
        public_rps: float,
        private_rps: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._public = TokenBucket(public_rps, max(1.0, public_rps))
        self._private_rps = private_rps
        self._private: dict[str, TokenBucket] = {}
        self._paused_until: dict[str | None, float] = {}
        self._clock = clock
        self.waits = 0
        self.rejections = 0
        self.pauses = 0

    def _bucket(self, account: str | None) -> TokenBucket:
        if account is None:
            return self._public
        bucket = self._private.get(account)
        if bucket is None:
            bucket = TokenBucket(self._private_rps, max(1.0, self._private_rps))
            self._private[account] = bucket
        return bucket

    def headroom(self) -> dict[str, float]:
        now = self._clock()
        room = {"public": self._public.headroom(now)}
        room.update({f"account:{n}": b.headroom(now) for n, b in self._private.items()})
        return room

    def pause(self, account: str | None, seconds: float) -> None:
        """ALP answered 429 for this pool: nobody in it calls again for `seconds` (Retry-After)."""
        until = self._clock() + max(0.0, seconds)
        if until > self._paused_until.get(account, 0.0):
            self._paused_until[account] = until
            self.pauses += 1

    async def acquire(self, account: str | None, deadline: float) -> None:
        paused = self._paused_until.get(account, 0.0) - self._clock()
        if paused > 0:
            if self._clock() + paused >= deadline:
                self.rejections += 1
                raise RateLimited("public" if account is None else f"account:{account}", paused)
            self.waits += 1
            await asyncio.sleep(paused)
        bucket = self._bucket(account)
        now = self._clock()
        wait = bucket.reserve(now)
        if wait <= 0:
            return
        if now + wait >= deadline:
            bucket.cancel()
            self.rejections += 1
            raise RateLimited("public" if account is None else f"account:{account}", wait)
        self.waits += 1
        try:
            await asyncio.sleep(wait)
        except asyncio.CancelledError:
            bucket.cancel()
            raise
