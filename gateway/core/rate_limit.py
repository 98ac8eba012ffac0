"""ALP's rate limit as pure arithmetic: a sliding window with lanes; the caller passes the clock.

ALP publishes no v3 limits and may count in any window, so the safe reading of "N calls per
second" is: never more than N sends in ANY interval of one second, plus a margin for network
jitter (two requests sent a full second apart can arrive closer together). A token bucket admits
a burst of N after an idle spell and N more right after it, which a sliding-window server refuses.

Lanes share one window. READ calls may use only `limit - trade_reserve` sends of any window, so
reads can never take the slots orders and cancels need; TRADE and RECONCILE may use all of it.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass, field

_EPSILON_S = 1e-9  # float rounding: `now + wait` can land a hair before the slot frees


class Lane(enum.IntEnum):
    READ = 0
    TRADE = 1  # PlaceOrder and CancelOrders
    RECONCILE = 2  # the lookups that settle an ambiguous order: never starved, never surfaced


def window_for_rate(rate: float) -> tuple[int, float]:
    """`rate` calls/s as (sends, window seconds): 2 -> (2, 1.0); 0.5 -> (1, 2.0); 2.5 -> (2, 0.8)."""
    if rate <= 0:
        return 0, 1.0
    sends = max(1, math.floor(rate))
    return sends, sends / rate


@dataclass
class SlidingWindow:
    """At most `limit` sends in any interval of `window_s + margin_s`; limit 0 means unlimited."""

    limit: int
    window_s: float = 1.0
    margin_s: float = 0.1
    trade_reserve: int = 0
    _sends: deque[float] = field(default_factory=deque)

    def __post_init__(self) -> None:
        if self.limit < 0 or self.window_s <= 0 or self.margin_s < 0:
            raise ValueError("limit must be >= 0, window_s > 0 and margin_s >= 0")
        if self.limit and not 0 <= self.trade_reserve < self.limit:
            raise ValueError("trade_reserve must leave reads at least one send a window")

    @classmethod
    def for_rate(
        cls, rate: float, *, margin_s: float = 0.1, trade_share: float = 0.0
    ) -> SlidingWindow:
        limit, window = window_for_rate(rate)
        reserve = min(max(0, limit - 1), math.ceil(limit * trade_share)) if limit else 0
        return cls(limit, window, margin_s, reserve)

    @property
    def span(self) -> float:
        return self.window_s + self.margin_s

    def _cap(self, lane: Lane) -> int:
        return self.limit - self.trade_reserve if lane is Lane.READ else self.limit

    def _purge(self, now: float) -> None:
        horizon = now - self.span + _EPSILON_S  # a wait computed to the instant has passed
        while self._sends and self._sends[0] <= horizon:
            self._sends.popleft()

    def wait(self, now: float, lane: Lane) -> float:
        """Seconds until a send in `lane` fits (0 = now). Does not record anything."""
        if self.limit == 0:
            return 0.0
        self._purge(now)
        cap = self._cap(lane)
        excess = len(self._sends) - cap
        if excess < 0:
            return 0.0
        return max(0.0, self._sends[excess] + self.span - now)

    def record(self, now: float) -> None:
        if self.limit:
            self._sends.append(now)

    def headroom(self, now: float) -> float:
        """Sends any lane could make right now (inf when unlimited)."""
        if self.limit == 0:
            return math.inf
        self._purge(now)
        return float(self.limit - len(self._sends))
