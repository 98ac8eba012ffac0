"""Sandbox authentication as ALP does it: /auth issues an HS256 JWT, X-SIGN signs bodies.

Codes and statuses from API-NOTES "Authentication and signing":
  /auth without api_key/api_secret strings   422 VALIDATION_ERROR
  /auth with an unknown key                  404 API_KEY_NOT_FOUND
  /auth with a wrong secret                  401 INVALID_SECRET
  key deleted / account inactive / IP        403 API_KEY_DELETED / ACCOUNT_INACTIVE / IP_NOT_ALLOWED
  private call without a Bearer header       401 UNAUTHORIZED
  Bearer token that is no JWT of ours        401 AUTH_ERROR
  expired or revoked token                   401 UNAUTHORIZED
  missing or wrong X-SIGN                    403 FORBIDDEN
Key states are set per API key (`Sandbox.set_key_state`, `PUT /admin/keys/{api_key}`) and apply
to /auth and to every private call made with that key's tokens, as a key change at ALP would.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Callable

import jwt

from gateway.sandbox.config import SandboxAccount
from gateway.sandbox.wire import Reject

# key state -> (HTTP status, ALP code, message)
KEY_STATES: dict[str, tuple[int, str, str]] = {
    "deleted": (403, "API_KEY_DELETED", "api key deleted"),
    "inactive": (403, "ACCOUNT_INACTIVE", "account is inactive"),
    "ip_not_allowed": (403, "IP_NOT_ALLOWED", "ip address is not allowed for this api key"),
}


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
        self._key_states: dict[str, str] = {}

    def set_key_state(self, api_key: str, state: str) -> None:
        """`active` or one of KEY_STATES; unknown keys and states raise ValueError."""
        if api_key not in self._by_key:
            raise ValueError("unknown api key")
        if state != "active" and state not in KEY_STATES:
            raise ValueError(f"state must be active or one of {', '.join(KEY_STATES)}")
        if state == "active":
            self._key_states.pop(api_key, None)
        else:
            self._key_states[api_key] = state

    def _check_state(self, account: SandboxAccount) -> None:
        state = self._key_states.get(account.api_key)
        if state is not None:
            status, code, message = KEY_STATES[state]
            raise Reject(status, code, message)

    def revoke_all(self) -> None:
        """Every token issued so far is refused from now on (as after a key rotation upstream)."""
        self._generation += 1

    def __repr__(self) -> str:
        return f"Authority(accounts={len(self._by_id)})"

    def account(self, account_id: int) -> SandboxAccount:
        return self._by_id[account_id]

    def issue(self, api_key: object, api_secret: object) -> str:
        if not isinstance(api_key, str) or not api_key or not isinstance(api_secret, str):
            raise Reject(422, "VALIDATION_ERROR", "api_key and api_secret are required strings")
        account = self._by_key.get(api_key)
        if account is None:
            raise Reject(404, "API_KEY_NOT_FOUND", "api key not found")
        if not hmac.compare_digest(account.api_secret.encode(), api_secret.encode()):
            raise Reject(401, "INVALID_SECRET", "invalid api secret")
        self._check_state(account)
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
        except (jwt.PyJWTError, KeyError, ValueError, TypeError):
            raise Reject(401, "AUTH_ERROR", "invalid token") from None
        if claims.get("gen") != self._generation:
            raise Reject(401, "UNAUTHORIZED", "token revoked")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self._clock():
            raise Reject(401, "UNAUTHORIZED", "token expired")
        self._check_state(account)
        return account

    @staticmethod
    def check_signature(account: SandboxAccount, body: bytes, signature: str | None) -> None:
        # lower-case hex exactly (API-NOTES); upper case or padding is a different string
        expected = hmac.new(account.api_secret.encode(), body, hashlib.sha256).hexdigest()
        if not signature or not hmac.compare_digest(expected.encode(), signature.encode()):
            raise Reject(403, "FORBIDDEN", "missing or invalid X-SIGN signature")
