"""Sandbox authentication as ALP does it: /auth issues an HS256 JWT, X-SIGN signs bodies."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable

import jwt

from gateway.sandbox.config import SandboxAccount
from gateway.sandbox.wire import Reject


class Authority:
    def __init__(
        self,
        accounts: tuple[SandboxAccount, ...],
        key: str,
        lifetime: Callable[[], float],
        clock: Callable[[], float],
    ) -> None:
        self._by_key = {a.api_key: a for a in accounts}
        self._by_id = {a.account_id: a for a in accounts}
        self._key = key
        self._lifetime = lifetime
        self._clock = clock
        self._generation = 0

    def revoke_all(self) -> None:
        """Every token issued so far is refused from now on (as after a key rotation upstream)."""
        self._generation += 1

    def __repr__(self) -> str:
        return f"Authority(accounts={len(self._by_id)})"

    def account(self, account_id: int) -> SandboxAccount:
        return self._by_id[account_id]

    def issue(self, api_key: object, api_secret: object) -> str:
        account = self._by_key.get(api_key) if isinstance(api_key, str) else None
        secret_ok = (
            account is not None
            and isinstance(api_secret, str)
            and hmac.compare_digest(account.api_secret.encode(), api_secret.encode())
        )
        if account is None or not secret_ok:
            raise Reject(401, "INVALID_SECRET", "invalid api key or secret")
        now = self._clock()
        claims = {
            "sub": str(account.account_id),
            "iat": int(now),
            "exp": now + self._lifetime(),
            "jti": uuid.uuid4().hex,
            "gen": self._generation,
        }
        return jwt.encode(claims, self._key, algorithm="HS256")

    def verify(self, authorization: str | None) -> SandboxAccount:
        if not authorization or not authorization.startswith("Bearer "):
            raise Reject(401, "UNAUTHORIZED", "missing or invalid Authorization header")
        try:
            claims = jwt.decode(
                authorization[7:].strip(),
                self._key,
                algorithms=["HS256"],
                options={"verify_exp": False},
            )
            account = self._by_id[int(claims["sub"])]
        except (jwt.PyJWTError, KeyError, ValueError):
            raise Reject(401, "UNAUTHORIZED", "invalid token") from None
        if claims.get("gen") != self._generation:
            raise Reject(401, "UNAUTHORIZED", "token revoked")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self._clock():
            raise Reject(401, "UNAUTHORIZED", "token expired")
        return account

    @staticmethod
    def check_signature(account: SandboxAccount, body: bytes, signature: str | None) -> None:
        expected = hmac.new(account.api_secret.encode(), body, hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(expected, signature.strip().lower()):
            raise Reject(403, "FORBIDDEN", "missing or invalid X-SIGN signature")
