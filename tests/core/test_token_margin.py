"""The refresh margin adapts to short token lifetimes: never more than one /auth per lifetime."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.core.token_policy import effective_margin, needs_refresh


def test_long_lifetimes_keep_the_configured_margin() -> None:
    assert effective_margin(60.0, 3600.0) == 60.0
    assert effective_margin(60.0, None) == 60.0


def test_short_lifetimes_shrink_the_margin() -> None:
    assert effective_margin(60.0, 20.0) == 5.0  # a 20 s token is used for 15 s


@given(st.floats(0.0, 1e4), st.floats(0.01, 1e6))
def test_a_fresh_token_is_never_refreshed_at_once(margin: float, lifetime: float) -> None:
    obtained = 1000.0
    assert not needs_refresh(obtained, obtained + lifetime, effective_margin(margin, lifetime))
