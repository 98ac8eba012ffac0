"""Caller identity and permissions: who may call which RPC with which ALP account (pure)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from gateway.errors import PermissionDenied, Unauthenticated

SCOPES: Final = frozenset({"market", "account:read", "trade", "admin"})

# Service (or full method) -> scope it needs. Longest key wins; methods not listed are open only
# when their service is listed as None (health, reflection).
METHOD_SCOPES: Final[Mapping[str, str | None]] = {
    "/alp.v3.MarketDataService/": "market",
    "/alp.v3.AccountService/": "account:read",
    "/alp.v3.TradingService/": "trade",
    "/alp.v3.StreamService/": "market",
    "/alp.v3.StreamService/StreamOrderUpdates": "account:read",
    "/alp.v3.StreamService/StreamWalletUpdates": "account:read",
    "/alp.v3.GatewayService/": "admin",
    "/grpc.health.v1.Health/": None,
    "/grpc.reflection.v1alpha.ServerReflection/": None,
    "/grpc.reflection.v1.ServerReflection/": None,
}
# Methods that act on an ALP account and therefore check the caller's account list.
ACCOUNT_SCOPED_PREFIXES: Final = (
    "/alp.v3.AccountService/",
    "/alp.v3.TradingService/",
    "/alp.v3.StreamService/StreamOrderUpdates",
    "/alp.v3.StreamService/StreamWalletUpdates",
    "/alp.v3.StreamService/Subscribe",
)


@dataclass(frozen=True)
class Caller:
    """An authenticated caller; `accounts` may contain "*" for every configured account."""

    name: str
    scopes: frozenset[str]
    accounts: frozenset[str] = field(default_factory=frozenset)

    def may_use(self, account: str) -> bool:
        return "*" in self.accounts or account in self.accounts


DEV_CALLER: Final = Caller("dev-mode", frozenset(SCOPES), frozenset({"*"}))


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class CallerRegistry:
    """Callers by SHA-256 of their bearer token (compared in constant time) or by cert subject."""

    def __init__(
        self,
        by_token_sha256: Mapping[str, Caller],
        by_subject: Mapping[str, Caller] | None = None,
    ) -> None:
        self._tokens = [(digest.lower(), caller) for digest, caller in by_token_sha256.items()]
        self._subjects = dict(by_subject or {})

    def __repr__(self) -> str:
        return f"CallerRegistry(tokens={len(self._tokens)}, subjects={len(self._subjects)})"

    def by_token(self, token: str) -> Caller:
        digest = token_digest(token)
        found: Caller | None = None
        for known, caller in self._tokens:  # no early exit: constant time in the number of callers
            if hmac.compare_digest(known, digest):
                found = caller
        if found is None:
            raise Unauthenticated("unknown bearer token")
        return found

    def by_subject(self, subject: str) -> Caller:
        caller = self._subjects.get(subject)
        if caller is None:
            raise Unauthenticated(f"no caller configured for certificate subject {subject[:120]!r}")
        return caller


def bearer_token(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
    return token.strip()


def required_scope(method: str) -> str | None:
    """Scope `method` (e.g. "/alp.v3.TradingService/PlaceOrder") needs; None = open.

    Unknown methods need "admin", so a new service is closed until it is listed here.
    """
    best: str | None = None
    for key in METHOD_SCOPES:
        if method.startswith(key) and (best is None or len(key) > len(best)):
            best = key
    if best is None:
        return "admin"
    return METHOD_SCOPES[best]


def authorize(caller: Caller, method: str, account: str | None) -> None:
    scope = required_scope(method)
    if scope is not None and scope not in caller.scopes:
        raise PermissionDenied(
            f"caller {caller.name!r} lacks scope {scope!r} for {method}", scope=scope
        )
    scoped = account is not None and method.startswith(ACCOUNT_SCOPED_PREFIXES)
    if scoped and account is not None and not caller.may_use(account):
        raise PermissionDenied(f"caller {caller.name!r} may not use ALP account {account!r}")


def parse_scopes(values: Iterable[str], setting: str) -> frozenset[str]:
    scopes = frozenset(values)
    unknown = scopes - SCOPES
    if unknown:
        raise ValueError(f"{setting}: unknown scopes {sorted(unknown)}; known: {sorted(SCOPES)}")
    return scopes
