"""Retry and reconnect schedules: jittered exponential backoff, pure (randomness is an argument)."""

from __future__ import annotations


def _ceiling(attempt: int, *, base: float, cap: float, rand: float) -> float:
    """The ceiling for `attempt` (exponential from `base`, at most `cap`), arguments checked."""
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    if not 0.0 <= rand <= 1.0:
        raise ValueError("rand must be in [0, 1]")
    return min(cap, base * 2.0 ** min(attempt, 62))


def backoff_delay(attempt: int, *, base: float, cap: float, rand: float) -> float:
    """Delay before retry number `attempt` (0-based): "full jitter", uniform in [0, min(cap, base*2^n)].

    `rand` is a uniform sample in [0, 1) supplied by the caller so the schedule is testable.
    """
    ceiling = _ceiling(attempt, base=base, cap=cap, rand=rand)
    return ceiling * rand


def reconnect_delay(attempt: int, *, base: float, cap: float, rand: float) -> float:
    """Delay before reconnect `attempt`: "equal jitter" so a storm spreads but never reconnects instantly."""
    ceiling = _ceiling(attempt, base=base, cap=cap, rand=rand)
    return ceiling / 2 + (ceiling / 2) * rand
