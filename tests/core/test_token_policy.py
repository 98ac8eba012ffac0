"""Token expiry from real JWTs, refresh boundaries, and a Secret that never prints its value."""

from __future__ import annotations

import base64
import json
import logging

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.token_policy import Secret, needs_refresh, read_expiry
from gateway.errors import UpstreamProtocolError

_KEY = "k" * 32  # pyjwt warns on HMAC keys shorter than the hash


def test_read_expiry_from_pyjwt_token() -> None:
    token = jwt.encode({"exp": 1_900_000_000, "sub": "acct"}, _KEY, algorithm="HS256")
    assert read_expiry(token) == 1_900_000_000.0


def test_read_expiry_ignores_signature_and_past_exp() -> None:
    token = jwt.encode({"exp": 1}, _KEY + "-other", algorithm="HS256")
    assert read_expiry(token) == 1.0


def test_fractional_exp() -> None:
    assert (
        read_expiry(jwt.encode({"exp": 1_900_000_000.5}, _KEY, algorithm="HS256"))
        == 1_900_000_000.5
    )


@pytest.mark.parametrize(
    "claims", [{}, {"exp": "soon"}, {"exp": None}, {"exp": True}, {"exp": [1]}]
)
def test_missing_or_bad_exp_is_protocol_error(claims: dict[str, object]) -> None:
    with pytest.raises(UpstreamProtocolError):
        read_expiry(jwt.encode(claims, _KEY, algorithm="HS256"))


def _unsigned(payload: str) -> str:
    def part(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    return f"{part(json.dumps({'alg': 'HS256', 'typ': 'JWT'}))}.{part(payload)}.{part('sig')}"


@pytest.mark.parametrize("payload", ['{"exp": NaN}', '{"exp": Infinity}', '{"exp": -Infinity}'])
def test_non_finite_exp_is_protocol_error(payload: str) -> None:
    # A NaN expiry would make needs_refresh() false forever.
    with pytest.raises(UpstreamProtocolError):
        read_expiry(_unsigned(payload))


@pytest.mark.parametrize(
    "token", ["", "not.a.jwt", "abc", _unsigned("[1, 2]"), _unsigned("not json")]
)
def test_unreadable_token_is_protocol_error(token: str) -> None:
    with pytest.raises(UpstreamProtocolError):
        read_expiry(token)


def test_error_messages_never_contain_the_token() -> None:
    token = _unsigned('{"sub": "x"}')
    with pytest.raises(UpstreamProtocolError) as info:
        read_expiry(token)
    assert token not in str(info.value) and token not in repr(info.value)


@pytest.mark.parametrize(
    ("now", "expires_at", "margin", "expected"),
    [
        (100.0, None, 30.0, True),
        (69.9, 100.0, 30.0, False),
        (70.0, 100.0, 30.0, True),
        (70.1, 100.0, 30.0, True),
        (100.0, 100.0, 0.0, True),
        (99.99, 100.0, 0.0, False),
        (200.0, 100.0, 30.0, True),
    ],
)
def test_needs_refresh_boundaries(
    now: float, expires_at: float | None, margin: float, expected: bool
) -> None:
    assert needs_refresh(now, expires_at, margin) is expected


@settings(max_examples=100, deadline=None)
@given(st.floats(0, 1e10), st.floats(0, 1e10), st.floats(0, 1e5))
def test_needs_refresh_is_monotonic_in_time(now: float, expires_at: float, margin: float) -> None:
    if needs_refresh(now, expires_at, margin):
        assert needs_refresh(now + 1, expires_at, margin)
    assert needs_refresh(expires_at, expires_at, margin)


def test_secret_never_shows(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret("hunter2-very-secret")
    renderings = [
        repr(secret), str(secret), format(secret), f"{secret}", f"{secret!r}", f"{secret!s}",
        f"{secret:>40}", repr([secret]), repr({"k": secret}), str((secret,)),
    ]  # fmt: skip
    # the old-style renderings are the point here
    renderings += ["{}".format(secret), "%s" % secret, "%r" % secret]  # noqa: UP031, UP032
    for text in renderings:
        assert "hunter2" not in text
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("secret=%s %r", secret, secret)
    assert "hunter2" not in caplog.text
    assert secret.reveal() == "hunter2-very-secret"


def test_secret_equality_and_truthiness() -> None:
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b")
    assert Secret("a") != "a"
    assert hash(Secret("a")) == hash(Secret("a"))
    assert bool(Secret("a")) and not bool(Secret(""))


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=3, max_size=30).filter(lambda s: "redacted" not in s and "Secret" not in s))
def test_secret_hides_any_value(value: str) -> None:
    secret = Secret(value)
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r}"):
        assert value not in text
