"""X-SIGN: lowercase hex HMAC-SHA256 keyed with the API secret over the exact body bytes sent."""

from __future__ import annotations

import hashlib
import hmac


def sign(body: bytes, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
