"""Every spelling ALP uses normalises to one member; unknown spellings give None, never an error."""

from __future__ import annotations

import enum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import constants as c


@pytest.mark.parametrize(
    ("raw", "member"),
    [
        ("MARGIN_CROSS", c.WalletType.MARGIN_CROSS),
        ("CROSS_MARGIN", c.WalletType.MARGIN_CROSS),
        ("MARGIN_ISOLATED", c.WalletType.MARGIN_ISOLATED),
        ("ISOLATED_MARGIN", c.WalletType.MARGIN_ISOLATED),
        ("SPOT", c.WalletType.SPOT),
        ("spot", c.WalletType.SPOT),
        ("FUNDING", c.WalletType.FUNDING),
    ],
)
def test_wallet_aliases(raw: str, member: c.WalletType) -> None:
    assert c.normalize_wallet_type(raw) is member


@pytest.mark.parametrize("raw", ["P2P", "", "MARGIN", None, 1, ["SPOT"]])
def test_unknown_wallet_is_none(raw: object) -> None:
    assert c.normalize_wallet_type(raw) is None


@pytest.mark.parametrize(
    ("raw", "member"),
    [
        ("BUY", c.OrderSide.BUY),
        ("BID", c.OrderSide.BUY),
        ("buy", c.OrderSide.BUY),
        ("bid", c.OrderSide.BUY),
        ("SELL", c.OrderSide.SELL),
        ("ASK", c.OrderSide.SELL),
        ("sell", c.OrderSide.SELL),
        ("ask", c.OrderSide.SELL),
    ],
)
def test_side_aliases(raw: str, member: c.OrderSide) -> None:
    assert c.normalize_order_side(raw) is member


def test_unknown_side_is_none() -> None:
    assert c.normalize_order_side("HOLD") is None
    assert c.normalize_order_side(None) is None


@pytest.mark.parametrize(
    ("raw", "member"),
    [
        ("PARTIAL_CANCELED", c.OrderStatus.PARTIAL_CANCELED),
        ("PARTIAL_CANCELLED", c.OrderStatus.PARTIAL_CANCELED),
        ("EXPIRED", c.OrderStatus.EXPIRED),
        ("UNDEFINED", c.OrderStatus.UNDEFINED),
        ("CANCELLED", c.OrderStatus.CANCELLED),
        ("CANCELED", c.OrderStatus.CANCELLED),
        ("open", c.OrderStatus.OPEN),
    ],
)
def test_status_aliases(raw: str, member: c.OrderStatus) -> None:
    assert c.normalize_order_status(raw) is member


@pytest.mark.parametrize("raw", ["GTC", "IOC", "FOK", "AON"])
def test_time_in_force(raw: str) -> None:
    tif = c.normalize_time_in_force(raw)
    assert tif is not None and tif.value == raw
    assert c.normalize_time_in_force("DAY") is None


@pytest.mark.parametrize("raw", ["1", "5", "15", "30", "60", "240", "1D", "1d"])
def test_chart_intervals(raw: str) -> None:
    interval = c.normalize_chart_interval(raw)
    assert interval is not None and interval.value == raw.upper()
    assert c.normalize_chart_interval("2") is None


@pytest.mark.parametrize("raw", ["PENDING", "MODERATION", "CONFIRMED", "REJECTED"])
def test_deposit_statuses(raw: str) -> None:
    assert c.normalize_deposit_status(raw) is c.DepositStatus(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "NEW",
        "CONFIRMED",
        "VERIFIED",
        "MODERATION",
        "APPROVED",
        "SUSPENDED",
        "DONE",
        "REFUSED",
        "CANCELED",
    ],
)
def test_withdrawal_statuses(raw: str) -> None:
    assert c.normalize_withdrawal_status(raw) is c.WithdrawalStatus(raw)
    assert c.normalize_withdrawal_status("CANCELLED") is c.WithdrawalStatus.CANCELED


def test_order_type_and_stop_operator() -> None:
    assert c.normalize_order_type("stop_market") is c.OrderType.STOP_MARKET
    assert c.normalize_order_type("ICEBERG") is None
    assert c.normalize_stop_operator("GTE") is c.StopOperator.GTE
    assert c.normalize_stop_operator(">=") is None


def test_outbound_wallet_spellings() -> None:
    assert c.OUTBOUND_WALLET["docs"][c.WalletType.MARGIN_CROSS] == "MARGIN_CROSS"
    assert c.OUTBOUND_WALLET["alias"][c.WalletType.MARGIN_CROSS] == "CROSS_MARGIN"
    assert c.OUTBOUND_WALLET["alias"][c.WalletType.MARGIN_ISOLATED] == "ISOLATED_MARGIN"
    for table in c.OUTBOUND_WALLET.values():
        assert set(table) == set(c.WalletType)
        # whatever we send must read back as the same member
        for member, text in table.items():
            assert c.normalize_wallet_type(text) is member


_NORMALIZERS = [
    c.normalize_wallet_type,
    c.normalize_order_side,
    c.normalize_order_type,
    c.normalize_order_status,
    c.normalize_time_in_force,
    c.normalize_stop_operator,
    c.normalize_chart_interval,
    c.normalize_deposit_status,
    c.normalize_withdrawal_status,
]


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.text(max_size=20), st.integers(), st.none(), st.booleans()))
def test_normalizers_never_raise(raw: object) -> None:
    for normalize in _NORMALIZERS:
        result = normalize(raw)
        assert result is None or isinstance(result, enum.Enum)
