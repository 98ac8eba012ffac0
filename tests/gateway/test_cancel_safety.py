"""CancelOrders after an ambiguous failure: read back from ALP's order list, never "failed" for a
cancel that happened, and CANCEL_NOT_APPLIED (safe to repeat) for one that did not."""

from __future__ import annotations

import grpc
import pytest
from alp.v3 import common_pb2, trading_pb2, trading_pb2_grpc

from gateway.sandbox import Sandbox
from tests.gateway.status_details import details_of


async def place(stub: trading_pb2_grpc.TradingServiceStub, price: str) -> int:
    reply = await stub.PlaceOrder(
        trading_pb2.PlaceOrderRequest(
            pair="BTC_USDT",
            side=common_pb2.ORDER_SIDE_BUY,
            limit=trading_pb2.LimitOrder(base_amount="0.01", limit_price=price),
        )
    )
    return int(reply.order_id)


def status_of(sandbox: Sandbox, order_id: int) -> str:
    order = sandbox.exchange.order(1001, order_id)
    assert order is not None
    return order.status


async def test_a_cancel_applied_then_answered_500_is_reconciled(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    order_id = await place(stub, "20000")
    sandbox.faults.update(
        {
            "error_rate": 1.0,
            "error_status": 500,
            "error_after_apply": True,
            "error_path_prefix": "/trading",
        }
    )
    reply = await stub.CancelOrders(
        trading_pb2.CancelOrdersRequest(order_ids=trading_pb2.OrderIdList(ids=[order_id])),
        timeout=5,
    )
    assert reply.reconciled
    assert reply.outcomes[order_id].status == trading_pb2.CANCEL_STATUS_CANCELLED
    assert status_of(sandbox, order_id) == "CANCELLED"


async def test_a_cancel_refused_before_apply_is_not_applied_and_says_so(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    order_id = await place(stub, "20001")
    sandbox.faults.update({"error_rate": 1.0, "error_status": 503, "error_path_prefix": "/trading"})
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.CancelOrders(
            trading_pb2.CancelOrdersRequest(order_ids=trading_pb2.OrderIdList(ids=[order_id])),
            timeout=5,
        )
    details = details_of(info.value)
    assert details.code is grpc.StatusCode.UNAVAILABLE
    assert details.error_info is not None and details.error_info.reason == "CANCEL_NOT_APPLIED"
    assert status_of(sandbox, order_id) == "OPEN"  # the answer matches ALP


async def test_cancel_all_reset_after_apply_is_reconciled_as_accepted(
    channel: grpc.aio.Channel, sandbox: Sandbox
) -> None:
    stub = trading_pb2_grpc.TradingServiceStub(channel)
    ids = [await place(stub, price) for price in ("20002", "20003")]
    sandbox.faults.update({"reset_after_apply": True, "error_path_prefix": "/trading"})
    reply = await stub.CancelOrders(trading_pb2.CancelOrdersRequest(all=True), timeout=5)
    assert reply.reconciled and reply.accepted and not reply.outcomes
    assert [status_of(sandbox, i) for i in ids] == ["CANCELLED", "CANCELLED"]
