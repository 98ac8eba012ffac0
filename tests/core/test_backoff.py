"""Backoff schedules: bounded, monotone ceilings, jitter inside the documented band."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.backoff import backoff_delay, reconnect_delay


def test_known_values() -> None:
    assert backoff_delay(0, base=0.1, cap=5, rand=1.0) == pytest.approx(0.1)
    assert backoff_delay(3, base=0.1, cap=5, rand=0.5) == pytest.approx(0.4)
    assert backoff_delay(10, base=0.1, cap=5, rand=1.0) == pytest.approx(5.0)
    assert reconnect_delay(0, base=1, cap=30, rand=0.0) == pytest.approx(0.5)
    assert reconnect_delay(20, base=1, cap=30, rand=1.0) == pytest.approx(30.0)


@given(
    attempt=st.integers(0, 10_000),
    base=st.floats(0.001, 10),
    cap=st.floats(0.001, 600),
    rand=st.floats(0, 1),
)
def test_delays_stay_in_band(attempt: int, base: float, cap: float, rand: float) -> None:
    full = backoff_delay(attempt, base=base, cap=cap, rand=rand)
    equal = reconnect_delay(attempt, base=base, cap=cap, rand=rand)
    ceiling = min(cap, base * 2 ** min(attempt, 62))
    assert 0 <= full <= ceiling + 1e-9
    assert ceiling / 2 - 1e-9 <= equal <= ceiling + 1e-9


@pytest.mark.parametrize("attempt,rand", [(-1, 0.5), (0, -0.1), (0, 1.5)])
def test_rejects_bad_arguments(attempt: int, rand: float) -> None:
    with pytest.raises(ValueError):
        backoff_delay(attempt, base=1, cap=1, rand=rand)
    with pytest.raises(ValueError):
        reconnect_delay(attempt, base=1, cap=1, rand=rand)
