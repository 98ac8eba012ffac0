"""The API contract: every service and RPC the issue names exists with the stated streaming kind."""

from __future__ import annotations

import pytest
from alp.v3 import account_pb2, market_data_pb2, stream_pb2, trading_pb2
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FieldDescriptor

EXPECTED: dict[str, dict[str, bool]] = {
    "alp.v3.MarketDataService": {
        "GetServerTime": False,
        "GetCurrencyRates": False,
        "ListCurrencies": False,
        "ListPairs": False,
        "ListTickers": False,
        "GetOrderBook": False,
        "ListCandles": False,
        "ListTrades": False,
    },
    "alp.v3.AccountService": {
        "ListAccounts": False,
        "ListBalances": False,
        "ListFeeRules": False,
        "ListOrders": False,
        "ListAccountTrades": False,
        "ListActivity": False,
    },
    "alp.v3.TradingService": {"PlaceOrder": False, "CancelOrders": False},
    "alp.v3.StreamService": {
        "StreamTickers": True,
        "StreamTrades": True,
        "StreamBookDiffs": True,
        "StreamDepth": True,
        "StreamOrderBook": True,
        "StreamOrderUpdates": True,
        "StreamWalletUpdates": True,
        "Subscribe": True,
    },
}

POOL = descriptor_pool.Default()


@pytest.mark.parametrize("service_name", sorted(EXPECTED))
def test_service_has_exactly_the_named_rpcs(service_name: str) -> None:
    service = POOL.FindServiceByName(service_name)
    assert {m.name for m in service.methods} == set(EXPECTED[service_name])
    for method in service.methods:
        assert not method.client_streaming, method.full_name
        assert method.server_streaming is EXPECTED[service_name][method.name], method.full_name
        assert method.input_type.name == f"{method.name}Request"
        assert method.output_type.name == f"{method.name}Response"


def test_every_stream_response_carries_a_batch() -> None:
    for method in POOL.FindServiceByName("alp.v3.StreamService").methods:
        repeated = [
            f for f in method.output_type.fields if f.is_repeated and f.message_type is not None
        ]
        assert repeated, f"{method.output_type.name} has no repeated event field"


def _all_messages() -> list[object]:
    found = []
    for module in (account_pb2, market_data_pb2, stream_pb2, trading_pb2):
        found.extend(module.DESCRIPTOR.message_types_by_name.values())
    return found


MONEY_WORDS = ("price", "amount", "rate", "fee", "volume", "balance", "reserve", "total")


def test_no_float_or_double_anywhere() -> None:
    floating = (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE)
    for message in _all_messages():
        for field in message.fields:  # type: ignore[attr-defined]
            assert field.type not in floating, field.full_name


def test_money_fields_are_strings() -> None:
    checked = 0
    for message in _all_messages():
        for field in message.fields:  # type: ignore[attr-defined]
            if any(word in field.name for word in MONEY_WORDS) and field.message_type is None:
                if field.name.endswith(("_raw", "_id", "_precision")) or field.name == "op_type":
                    continue
                assert field.type == FieldDescriptor.TYPE_STRING, field.full_name
                checked += 1
    assert checked > 40


def test_enums_have_unspecified_zero() -> None:
    common = POOL.FindFileByName("alp/v3/common.proto")
    names = set(common.enum_types_by_name)
    assert {
        "WalletType",
        "OrderSide",
        "OrderType",
        "OrderStatus",
        "TimeInForce",
        "StopOperator",
        "ChartInterval",
        "DepositStatus",
        "WithdrawalStatus",
    } <= names
    for enum in common.enum_types_by_name.values():
        assert enum.values_by_number[0].name.endswith("_UNSPECIFIED")


def test_place_order_kinds_are_a_oneof() -> None:
    request = POOL.FindMessageTypeByName("alp.v3.PlaceOrderRequest")
    oneof = request.oneofs_by_name["order"]
    assert {f.name for f in oneof.fields} == {"limit", "market", "stop_limit", "stop_market"}
    target = POOL.FindMessageTypeByName("alp.v3.CancelOrdersRequest").oneofs_by_name["target"]
    assert {f.name for f in target.fields} == {"order_ids", "all", "pair"}


def test_file_options_for_go_and_java() -> None:
    for module in (account_pb2, market_data_pb2, stream_pb2, trading_pb2):
        options = module.DESCRIPTOR.GetOptions()
        assert options.go_package.endswith(";alpv3")
        assert options.java_package == "com.alp.gateway.v3"
        assert options.java_multiple_files
