"""X-SIGN known answers and the HMAC property over arbitrary bodies and secrets."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.signing import sign


def test_known_answer_vector_matches_hmac_and_literal() -> None:
    body = b'{"pair":"BTC_USDT","order_ids":[1,2]}'
    expected = hmac.new(b"s3cr3t", body, hashlib.sha256).hexdigest()
    assert sign(body, "s3cr3t") == expected
    # RFC 4231-style fixed literal: HMAC-SHA256(key="key", msg="") computed offline.
    assert sign(b"", "key") == "5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0"


def test_signature_is_lowercase_hex_of_64_chars() -> None:
    signature = sign(b"abc", "secret")
    assert len(signature) == 64
    assert signature == signature.lower()
    int(signature, 16)


def test_secret_is_utf8_encoded() -> None:
    assert sign(b"x", "clé") == hmac.new("clé".encode(), b"x", hashlib.sha256).hexdigest()


def test_different_bodies_sign_differently() -> None:
    assert sign(b'{"a":1}', "k") != sign(b'{"a": 1}', "k")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.text(max_size=40))
def test_sign_equals_hmac_sha256(body: bytes, secret: str) -> None:
    assert sign(body, secret) == hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
