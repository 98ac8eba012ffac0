"""Token bucket: waits grow with debt, refill is linear and capped, rate 0 is unlimited."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.rate_limit import TokenBucket


def test_burst_then_waits() -> None:
    bucket = TokenBucket(rate=2, burst=2)
    assert bucket.reserve(0.0) == 0
    assert bucket.reserve(0.0) == 0
    assert bucket.reserve(0.0) == pytest.approx(0.5)
    assert bucket.reserve(0.0) == pytest.approx(1.0)
    bucket.cancel()
    assert bucket.reserve(0.0) == pytest.approx(1.0)


def test_refill_is_capped_at_burst() -> None:
    bucket = TokenBucket(rate=10, burst=3)
    for _ in range(3):
        bucket.reserve(0.0)
    assert bucket.headroom(100.0) == pytest.approx(3)


def test_zero_rate_is_unlimited() -> None:
    bucket = TokenBucket(rate=0, burst=0)
    assert all(bucket.reserve(0.0) == 0 for _ in range(1000))


@given(st.lists(st.floats(0, 0.5), min_size=1, max_size=200), st.floats(0.5, 50))
def test_admitted_rate_never_exceeds_limit(gaps: list[float], rate: float) -> None:
    bucket = TokenBucket(rate=rate, burst=1)
    now = 0.0
    starts: list[float] = []
    for gap in gaps:
        now += gap
        starts.append(now + bucket.reserve(now))
    span = max(starts) - min(starts)
    assert len(starts) <= 1 + span * rate + 1e-6
