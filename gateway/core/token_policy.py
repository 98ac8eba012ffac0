"""ALP bearer tokens: reading `exp`, deciding when to refresh, and a secret type that never prints."""

from __future__ import annotations

import math

import jwt

from gateway.errors import UpstreamProtocolError


class Secret:
    """A string that shows as <redacted> in str/repr/format; `.reveal()` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    def __str__(self) -> str:
        return "<redacted>"

    def __format__(self, spec: str) -> str:
        return "<redacted>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


def read_expiry(token: str) -> float:
    """The `exp` claim (Unix seconds) of a JWT, read without verifying its signature."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError as exc:
        raise UpstreamProtocolError("ALP token is not a readable JWT") from exc
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise UpstreamProtocolError("ALP token has no numeric exp claim")
    if not math.isfinite(exp):  # a NaN/infinite exp would never trigger a refresh
        raise UpstreamProtocolError("ALP token has a non-finite exp claim")
    return float(exp)


# A token is renewed at most this far into its life, whatever the configured margin says.
SHORT_LIFETIME_SHARE = 0.25


def effective_margin(margin: float, lifetime: float | None) -> float:
    """The refresh margin for a token that lives `lifetime` seconds from when it was obtained.

    A configured margin longer than the lifetime would renew on every call (one POST /auth per
    private call); the margin never exceeds a quarter of the lifetime, so a token is used for at
    least three quarters of its life: at most one /auth per lifetime.
    """
    if lifetime is None or lifetime <= 0:
        return margin
    return min(margin, lifetime * SHORT_LIFETIME_SHARE)


def needs_refresh(now: float, expires_at: float | None, margin: float) -> bool:
    return expires_at is None or now >= expires_at - margin
