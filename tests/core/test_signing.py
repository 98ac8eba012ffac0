"""X-SIGN known answers (computed with openssl, not with the code under test) and properties."""

from __future__ import annotations

import hashlib
import hmac
import random
import shutil
import subprocess
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import rest_requests
from gateway.core.constants import OrderSide, OrderType, WalletType
from gateway.core.signing import sign
from gateway.core.validation import OrderSpec

# The body the gateway sends for the docs' LIMIT order (tests/core/test_rest_requests.py pins it).
DOCS_LIMIT_ORDER = (
    b'{"pair":"BTC_USDT","order_type":"LIMIT","order_side":"BUY","wallet_type":"SPOT",'
    b'"base_amount":"0.5","limit_price":"45000.10"}'
)
NON_ASCII_BODY = '{"client_order_id":"ордер-№1 café 注文 🚀"}'.encode()

# (body, secret, X-SIGN), each digest from `printf '%s' BODY | openssl dgst -sha256 -hmac SECRET`
# (OpenSSL 3.0.19), pasted here: an independent implementation, so a wrong key encoding, hash or
# hex case in sign() cannot also be in the expectation.
KNOWN_ANSWERS = [
    (
        DOCS_LIMIT_ORDER,
        "demo-secret",
        "72ce4264b4c8e68fef630d5f03c7a42cba0a1215c0576aa204d41b621692803f",
    ),
    (
        NON_ASCII_BODY,
        "demo-secret",
        "3c73318e59c4d329efc111854ebe739a0ec93e9ea98b8b929d6c219cca076c63",
    ),
    (
        b'{"pair":"BTC_USDT","order_ids":[1,2]}',
        "s3cr3t",
        "cb51436529e6badcf832240a5e37381c8e23d072f92238f933a1acd9a4d1ce00",
    ),
    (b"", "key", "5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0"),
    # non-ASCII secret: UTF-8 key bytes (openssl -macopt hexkey:636cc3a9)
    (b"x", "clé", "522c16daef74b8d66aa5e041f7b0a331ced5c85d63a5c1fedbdb644bef7ca4bb"),
    # RFC 4231 test case 2
    (
        b"what do ya want for nothing?",
        "Jefe",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ),
]


@pytest.mark.parametrize(
    "body,secret,expected",
    KNOWN_ANSWERS,
    ids=["docs-limit", "non-ascii", "cancel", "empty", "clé", "rfc4231-2"],
)
def test_known_answer_vectors(body: bytes, secret: str, expected: str) -> None:
    assert sign(body, secret) == expected


def test_the_docs_limit_order_vector_is_what_the_gateway_sends() -> None:
    spec = OrderSpec(
        pair="BTC_USDT",
        side=OrderSide.BUY,
        wallet_type=WalletType.SPOT,
        order_type=OrderType.LIMIT,
        base_amount=Decimal("0.5"),
        quote_amount=None,
        limit_price=Decimal("45000.10"),
        stop_price=None,
        stop_operator=None,
        client_order_id=None,
        post_only=False,
    )
    body = rest_requests.place_order(spec).body
    assert body == DOCS_LIMIT_ORDER
    assert sign(body, "demo-secret") == KNOWN_ANSWERS[0][2]


def openssl_hmac(body: bytes, secret: str) -> str:
    command = ["openssl", "dgst", "-sha256", "-mac", "HMAC"]
    command += ["-macopt", f"hexkey:{secret.encode().hex()}"]
    result = subprocess.run(command, input=body, capture_output=True, check=True, timeout=10)
    return result.stdout.decode().rsplit("= ", 1)[1].strip()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_sign_agrees_with_openssl_at_test_time() -> None:
    rng = random.Random(7)
    cases = [(body, secret) for body, secret, _ in KNOWN_ANSWERS]
    cases += [(rng.randbytes(rng.randrange(300)), f"sécret-{i}") for i in range(5)]
    for body, secret in cases:
        assert sign(body, secret) == openssl_hmac(body, secret)


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
