"""Caller permissions: scopes per service, account lists, constant-time token lookup."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.core.authz import method_rule
from gateway.core.callers import (
    Caller,
    CallerRegistry,
    authorize,
    bearer_token,
    parse_scopes,
    token_digest,
)
from gateway.errors import PermissionDenied, Unauthenticated

READER = Caller("reader", frozenset({"market"}))
DESK = Caller("desk", frozenset({"market", "account:read", "trade"}), frozenset({"desk-a"}))


@pytest.mark.parametrize(
    "method,scope",
    [
        ("/alp.v3.MarketDataService/ListPairs", "market"),
        ("/alp.v3.AccountService/ListBalances", "account:read"),
        ("/alp.v3.TradingService/PlaceOrder", "trade"),
        ("/alp.v3.StreamService/StreamTrades", "market"),
        ("/alp.v3.StreamService/StreamOrderUpdates", "account:read"),
        ("/alp.v3.StreamService/StreamWalletUpdates", "account:read"),
        ("/grpc.health.v1.Health/Check", None),
    ],
)
def test_required_scope(method: str, scope: str | None) -> None:
    rule = method_rule(method)
    assert rule is not None and rule.scope == scope


def test_unknown_methods_are_denied_to_everyone() -> None:
    assert method_rule("/some.Unknown/Method") is None
    everything = Caller(
        "all", frozenset({"market", "account:read", "trade", "admin"}), frozenset("*")
    )
    with pytest.raises(PermissionDenied, match="not in the authorization table"):
        authorize(everything, "/some.Unknown/Method", "desk-a")


def test_scopes_and_accounts_are_enforced() -> None:
    authorize(READER, "/alp.v3.MarketDataService/ListPairs", None)
    with pytest.raises(PermissionDenied) as info:
        authorize(READER, "/alp.v3.TradingService/PlaceOrder", "desk-a")
    assert info.value.scope == "trade" and "trade" in str(info.value)
    authorize(DESK, "/alp.v3.TradingService/PlaceOrder", "desk-a")
    with pytest.raises(PermissionDenied):
        authorize(DESK, "/alp.v3.TradingService/PlaceOrder", "desk-b")
    authorize(DESK, "/alp.v3.MarketDataService/ListPairs", "desk-b")  # public: account ignored


def test_registry_by_token_and_subject() -> None:
    registry = CallerRegistry({token_digest("s3cret-token"): DESK}, {"CN=svc": READER})
    assert registry.by_token("s3cret-token") is DESK
    assert registry.by_subject("CN=svc") is READER
    with pytest.raises(Unauthenticated):
        registry.by_token("wrong")
    with pytest.raises(Unauthenticated):
        registry.by_subject("CN=other")
    assert "s3cret" not in repr(registry)


@pytest.mark.parametrize("header", ["Basic abc", "Bearer ", "token"])
def test_bad_authorization_header(header: str) -> None:
    with pytest.raises(Unauthenticated):
        bearer_token(header)


def test_bearer_token() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token(None) is None


def test_unknown_scope_rejected() -> None:
    with pytest.raises(ValueError, match="unknown scopes"):
        parse_scopes(["market", "root"], "callers.x.scopes")


@given(st.text(min_size=1, max_size=64))
def test_only_the_right_token_authenticates(token: str) -> None:
    registry = CallerRegistry({token_digest("the-one"): DESK})
    if token == "the-one":
        assert registry.by_token(token) is DESK
    else:
        with pytest.raises(Unauthenticated):
            registry.by_token(token)
