"""Client-side rate limits toward ALP: one window for public calls, one per account for private."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from gateway.core.rate_limit import Lane, SlidingWindow
from gateway.core.rest_parsing import MAX_RETRY_AFTER_S
from gateway.errors import RateLimited

# After a 429 or while higher lanes wait, re-check at least this often.
_RECHECK_S = 0.02


class SharedBudget(Protocol):
    """A window that a fleet of gateways shares (`gateway.cluster.rate_budget.RedisBudget`)."""

    @property
    def degraded(self) -> bool:
        """True while the fleet store is unreachable and this member decides on its own."""
        ...

    async def acquire(
        self, pool: str | None, lane: Lane, window: SlidingWindow, now: float
    ) -> float:
        """Record a send in `pool` and return 0, or return the seconds until one may fit.

        `window` carries the rule (limit, span, trade reserve); the budget never raises for its
        store being down: it answers from a conservative local share instead.
        """
        ...


class RateLimiter:
    """Waits for a slot when the wait fits the caller's deadline, else raises RateLimited.

    Defaults follow API-NOTES (v1's published limits: 100/s per IP public, 2/s per account private);
    a rate of 0 disables a window. Reads yield to waiting orders and reconciliations of the same
    account. After a 429 the pool pauses for Retry-After; the waiters then resume through the
    window, so ALP sees at most its limit, never the whole queue at once.

    With a `shared` budget the windows' rule is applied fleet-wide by it instead of by the local
    windows; deadlines, RateLimited, the 429 pause and lane priority stay local.
    """

    def __init__(
        self,
        *,
        public_rps: float,
        private_rps: float,
        trading_reserve: float = 0.5,
        margin_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedBudget | None = None,
    ) -> None:
        self._shared = shared
        self._public = SlidingWindow.for_rate(public_rps, margin_s=margin_s)
        self._private_rps = private_rps
        self._trading_reserve = trading_reserve
        self._margin_s = margin_s
        self._private: dict[str, SlidingWindow] = {}
        self._paused_until: dict[str | None, float] = {}
        self._waiting: dict[str | None, Counter[Lane]] = {}
        self._clock = clock
        self.waits = 0
        self.rejections = 0
        self.pauses = 0

    def _window(self, account: str | None) -> SlidingWindow:
        if account is None:
            return self._public
        window = self._private.get(account)
        if window is None:
            window = SlidingWindow.for_rate(
                self._private_rps, margin_s=self._margin_s, trade_share=self._trading_reserve
            )
            self._private[account] = window
        return window

    @property
    def degraded(self) -> bool:
        """True while the shared budget is unreachable (each member keeps a local share)."""
        return self._shared is not None and self._shared.degraded

    def headroom(self) -> dict[str, float]:
        """Sends each pool could make now; with a shared budget, judged by this member's sends."""
        now = self._clock()
        room = {"public": self._public.headroom(now)}
        room.update({f"account:{n}": w.headroom(now) for n, w in self._private.items()})
        return room

    def pause(self, account: str | None, seconds: float) -> None:
        """ALP answered 429 for this pool: nobody in it calls again for `seconds` (Retry-After)."""
        until = self._clock() + min(max(0.0, seconds), MAX_RETRY_AFTER_S)
        if until > self._paused_until.get(account, 0.0):
            self._paused_until[account] = until
            self.pauses += 1

    def _outranked(self, account: str | None, lane: Lane) -> bool:
        waiting = self._waiting.get(account)
        return waiting is not None and any(n > 0 for k, n in waiting.items() if k > lane)

    async def acquire(self, account: str | None, deadline: float, lane: Lane = Lane.READ) -> None:
        window = self._window(account)
        waiting = self._waiting.setdefault(account, Counter())
        counted = False
        waiting[lane] += 1
        try:
            while True:
                now = self._clock()
                wait = self._paused_until.get(account, 0.0) - now
                if self._shared is None:
                    wait = max(wait, window.wait(now, lane))
                if wait <= 0 and self._outranked(account, lane):
                    wait = _RECHECK_S
                if wait <= 0 and self._shared is not None:
                    try:  # a hung Redis must not hold the caller past its deadline
                        async with asyncio.timeout(max(0.0, deadline - now)):
                            wait = await self._shared.acquire(account, lane, window, now)
                    except TimeoutError:
                        self.rejections += 1
                        raise RateLimited(_pool_name(account), 0.0) from None
                if wait <= 0:
                    window.record(now)
                    if self._shared is not None:
                        window.headroom(now)  # purges old sends, as wait() does when unshared
                    return
                if now + wait >= deadline:
                    self.rejections += 1
                    raise RateLimited(_pool_name(account), wait)
                if not counted:
                    self.waits += 1
                    counted = True
                await asyncio.sleep(wait)
        finally:
            waiting[lane] -= 1


def _pool_name(account: str | None) -> str:
    return "public" if account is None else f"account:{account}"
