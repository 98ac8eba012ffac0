"""Token-bucket rate limiting as pure arithmetic: the caller passes the clock and does the waiting."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class TokenBucket:
    """`rate` tokens per second, at most `burst` saved; rate 0 means unlimited."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float = 0.0

    def __post_init__(self) -> None:
        if self.rate < 0 or self.burst < 0:
            raise ValueError("rate and burst must be >= 0")
        if self.tokens < 0:
            self.tokens = self.burst

    def reserve(self, now: float) -> float:
        """Take one token; return how long the caller must wait before using it (0 = now)."""
        if self.rate == 0:
            return 0.0
        self._refill(now)
        self.tokens -= 1.0
        if self.tokens >= 0:
            return 0.0
        return -self.tokens / self.rate

    def cancel(self) -> None:
        """Give back a token taken by `reserve` that will not be used (the caller gave up waiting)."""
        if self.rate:
            self.tokens = min(self.burst, self.tokens + 1.0)

    def headroom(self, now: float) -> float:
        """Tokens available right now (negative when callers are queued)."""
        if self.rate == 0:
            return math.inf
        self._refill(now)
        return self.tokens

    def _refill(self, now: float) -> None:
        if now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
            self.updated = now
