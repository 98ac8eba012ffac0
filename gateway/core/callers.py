"""Caller identity and permissions: who may call which RPC with which ALP account (pure)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from gateway.core.authz import SCOPES, Rule, channel_rule, method_rule
from gateway.errors import PermissionDenied, Unauthenticated, shown_account


@dataclass(frozen=True)
class Caller:
    """An authenticated caller; `accounts` may contain "*" for every configured account."""

    name: str
    scopes: frozenset[str]
    accounts: frozenset[str] = field(default_factory=frozenset)
    rate_per_s: float = 0.0  # this caller's quota of gateway calls per second (0 = none)

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


def authorize(caller: Caller, method: str, account: str | None) -> None:
    """Raise PermissionDenied unless the table grants `method` to `caller` with `account`."""
    _check(caller, method_rule(method), method, account)


def authorize_channel(caller: Caller, channel: str, account: str | None) -> None:
    """Raise PermissionDenied unless the table grants Subscribe `channel` to `caller`."""
    _check(caller, channel_rule(channel), f"Subscribe channel {channel}", account)


def _check(caller: Caller, rule: Rule | None, what: str, account: str | None) -> None:
    if rule is None:
        raise PermissionDenied(f"{what} is not in the authorization table: denied")
    if rule.scope is not None and rule.scope not in caller.scopes:
        raise PermissionDenied(
            f"caller {caller.name!r} lacks scope {rule.scope!r} for {what}", scope=rule.scope
        )
    if rule.account and (account is None or not caller.may_use(account)):
        raise PermissionDenied(
            f"caller {caller.name!r} may not use ALP account {shown_account(account or '')!r} "
            f"for {what}"
        )


def parse_scopes(values: Iterable[str], setting: str) -> frozenset[str]:
    scopes = frozenset(values)
    unknown = scopes - SCOPES
    if unknown:
        raise ValueError(f"{setting}: unknown scopes {sorted(unknown)}; known: {sorted(SCOPES)}")
    return scopes
