"""Sliding-window budget: never more than the limit in ANY window, reads leave trading its share."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.rate_limit import Lane, SlidingWindow, window_for_rate


def test_rates_become_sends_per_window() -> None:
    assert window_for_rate(2) == (2, 1.0)
    assert window_for_rate(0.5) == (1, 2.0)
    assert window_for_rate(2.5) == (2, pytest.approx(0.8))
    assert window_for_rate(0) == (0, 1.0)


def test_no_burst_after_an_idle_spell() -> None:
    """A token bucket would admit 2 at t=0.99 right after 2 at t=0; the window does not."""
    window = SlidingWindow(limit=2, window_s=1.0, margin_s=0.1)
    for t in (0.0, 0.0):
        assert window.wait(t, Lane.TRADE) == 0
        window.record(t)
    assert window.wait(0.99, Lane.TRADE) == pytest.approx(0.11)
    assert window.wait(1.1, Lane.TRADE) == 0


def test_reads_leave_the_reserved_share_to_trading() -> None:
    window = SlidingWindow.for_rate(2, margin_s=0.0, trade_share=0.5)
    assert window.trade_reserve == 1
    window.record(0.0)
    assert window.wait(0.0, Lane.READ) == pytest.approx(1.0)  # reads: 1 a window
    assert window.wait(0.0, Lane.TRADE) == 0  # the reserved slot
    window.record(0.0)
    assert window.wait(0.5, Lane.RECONCILE) == pytest.approx(0.5)


def test_a_limit_of_one_keeps_reads_possible() -> None:
    window = SlidingWindow.for_rate(1, trade_share=0.5)
    assert window.trade_reserve == 0 and window.wait(0.0, Lane.READ) == 0


def test_unlimited() -> None:
    window = SlidingWindow.for_rate(0)
    assert all(window.wait(0.0, Lane.READ) == 0 for _ in range(100))
    assert math.isinf(window.headroom(0.0))


@given(
    st.lists(st.tuples(st.floats(0, 0.7), st.sampled_from(list(Lane))), min_size=1, max_size=120),
    st.integers(1, 6),
    st.floats(0, 0.9),
)
def test_any_window_holds_at_most_the_limit(
    arrivals: list[tuple[float, Lane]], limit: int, share: float
) -> None:
    window = SlidingWindow.for_rate(limit, margin_s=0.05, trade_share=share)
    now = 0.0
    sends: list[tuple[float, Lane]] = []
    for gap, lane in arrivals:
        now += gap
        at = now + window.wait(now, lane)
        assert window.wait(at, lane) == 0
        window.record(at)
        sends.append((at, lane))
        now = at
    span = window.span
    for i, (start, _) in enumerate(sends):
        inside = [lane for t, lane in sends[i:] if t < start + span - 1e-9]  # float slack
        assert len(inside) <= window.limit
