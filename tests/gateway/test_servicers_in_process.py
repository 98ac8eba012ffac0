"""The gateway's unary servicers driven through grpc_testing: statuses without a gRPC socket.

What is real: the Gateway composition root (gateway/app.py) starts as in production against the
sandbox exchange on 127.0.0.1:0 with caller authentication on, and build_server (gateway/rpc/
server.py) builds the servicers and the ErrorBarrier with its CallerGate. Only the grpc.aio server
is replaced, for the length of `Gateway.start`, by `CapturedServer`, which keeps what build_server
registers (generic handlers, interceptors) and binds no port. Calls then enter through
grpc_testing.server_from_dictionary, which owns the call: invocation metadata, deadline, and the
final (response, trailing metadata, code, details).

grpc_testing cannot run grpc.aio handlers. Its server looks the method up on the servicer object
and calls it synchronously in a thread of its own; an `async def` handler hands back an un-awaited
coroutine, which it would record as the response. Asyncio support is not planned (grpc/grpc#24942,
open), and its ServicerContext is the sync one: `abort(code, details)` is not awaitable, takes no
trailing metadata and drops whatever trailing metadata was set, and `peer()`/`auth_context()`
raise NotImplementedError. So each service is registered as a `ServiceBridge`, whose methods are
sync functions that
  1. run, on the gateway's event loop (a thread of this module), the same steps grpc.aio runs for
     a unary call: the interceptors over the registered generic handlers, the handler's request
     deserializer on the request's bytes, the handler with an `AioContext`, the response serializer;
  2. wait for that coroutine, and give grpc_testing the response message; or, when the handler
     aborted, return None with code, details and trailing metadata already set on grpc_testing's
     context (how a sync handler ends a call with a status).
`AioContext` is the grpc.aio ServicerContext surface the gateway uses, over grpc_testing's context:
`abort` sets the status there and raises grpc.aio.AbortError as grpc.aio does; `auth_context()` is
empty (no TLS) and `peer()` a fixed name. Exceptions the barrier lets escape are not caught: they
reach grpc_testing and end the call UNKNOWN, so a barrier bug fails these tests.

Not covered here: decoding of undecodable bytes and transport behaviour (tests with a real channel
do that), and streaming RPCs.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
from collections import namedtuple
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import grpc
import grpc_testing
import pytest
from alp.v3 import account_pb2, common_pb2, market_data_pb2, trading_pb2
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

from gateway.app import Gateway
from gateway.config import CallerSpec
from gateway.core.callers import token_digest
from gateway.rpc import server as server_module
from gateway.sandbox import Sandbox, SandboxConfig
from tests.gateway.conftest import gateway_config
from tests.gateway.status_details import Details, details_of

CALL_TIMEOUT_S = 10.0

MARKET = market_data_pb2.DESCRIPTOR.services_by_name["MarketDataService"]
TRADING = trading_pb2.DESCRIPTOR.services_by_name["TradingService"]
ACCOUNT = account_pb2.DESCRIPTOR.services_by_name["AccountService"]

TRADER, VIEWER, METERED = "in-process-trader", "in-process-viewer", "in-process-metered"
CALLERS = {
    "trader": CallerSpec(
        "trader",
        frozenset({"market", "account:read", "trade"}),
        frozenset({"*"}),
        token_digest(TRADER),
    ),
    "viewer": CallerSpec(
        "viewer", frozenset({"market", "account:read"}), frozenset({"demo"}), token_digest(VIEWER)
    ),
    # one call per 100 s: the second call in this module is over the caller's quota
    "metered": CallerSpec(
        "metered",
        frozenset({"market"}),
        frozenset({"demo"}),
        token_digest(METERED),
        rate_per_s=0.01,
    ),
}
BUY, SELL = common_pb2.ORDER_SIDE_BUY, common_pb2.ORDER_SIDE_SELL


# -- the harness --------------------------------------------------------------------------------
class CapturedServer:
    """Stands where build_server constructs its grpc.aio server: keeps what is registered on it."""

    def __init__(
        self,
        thread_pool: object,
        handlers: Sequence[Any],
        interceptors: Sequence[Any],
        options: object,
        maximum_concurrent_rpcs: object,
        compression: object,
    ) -> None:
        self.generic_handlers = list(handlers)
        self.interceptors = tuple(interceptors)

    def add_generic_rpc_handlers(self, handlers: Sequence[Any]) -> None:
        self.generic_handlers.extend(handlers)

    def add_registered_method_handlers(self, service: str, handlers: object) -> None:
        pass  # the same handlers also arrive in a generic handler, where `_serve` finds them

    def add_insecure_port(self, address: str) -> int:
        return 0

    async def start(self) -> None:
        pass

    async def stop(self, grace: float | None) -> None:
        pass


class _CallDetails(
    namedtuple("_CallDetails", ("method", "invocation_metadata")), grpc.HandlerCallDetails
):
    pass


Metadatum = namedtuple("Metadatum", ("key", "value"))  # what grpc.aio's metadata items look like


class AioContext:
    """The grpc.aio ServicerContext surface the gateway uses, over grpc_testing's sync context."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context
        self._code: grpc.StatusCode | None = None

    def invocation_metadata(self) -> tuple[Metadatum, ...]:
        return tuple(Metadatum(k, v) for k, v in self._context.invocation_metadata() or ())

    def time_remaining(self) -> float | None:
        return self._context.time_remaining()

    def peer(self) -> str:
        return "in-process"

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}  # no TLS: no certificate subject

    def set_trailing_metadata(self, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self._context.set_trailing_metadata(tuple(metadata))

    def code(self) -> grpc.StatusCode | None:
        return self._code

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
    ) -> None:
        # grpc.aio: trailing metadata given to abort replaces what was set before
        self._code = code
        self._context.set_code(code)
        self._context.set_details(details)
        if trailing_metadata:
            self._context.set_trailing_metadata(tuple(trailing_metadata))
        raise grpc.aio.AbortError()


@dataclass
class InProcess:
    """The started gateway, its sandbox, and grpc_testing's server in front of its servicers."""

    loop: asyncio.AbstractEventLoop
    gateway: Gateway
    sandbox: Sandbox
    captured: CapturedServer
    audit_path: Path
    server: Any = None  # grpc_testing.Server

    # what grpc.aio does for one unary call, on the gateway's loop
    async def _serve(self, method: MethodDescriptor, raw: bytes, context: AioContext) -> Message:
        name = f"/{method.containing_service.full_name}/{method.name}"

        async def registered(details: grpc.HandlerCallDetails) -> Any:
            for generic in self.captured.generic_handlers:
                found = generic.service(details)
                if found is not None:
                    return found
            return None

        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]] = registered
        for interceptor in reversed(self.captured.interceptors):  # the first one is outermost
            continuation = functools.partial(interceptor.intercept_service, continuation)
        handler = await continuation(_CallDetails(name, context.invocation_metadata()))
        assert handler is not None and handler.unary_unary is not None, name
        request = handler.request_deserializer(raw)
        response = await handler.unary_unary(request, context)
        output = message_factory.GetMessageClass(method.output_type)
        return output.FromString(handler.response_serializer(response))

    def serve_sync(
        self, method: MethodDescriptor, request: Message, context: grpc.ServicerContext
    ) -> Message | None:
        """Called by grpc_testing in its service thread."""
        future = asyncio.run_coroutine_threadsafe(
            self._serve(method, request.SerializeToString(), AioContext(context)), self.loop
        )
        try:
            return future.result(CALL_TIMEOUT_S)
        except grpc.aio.AbortError:
            return None  # the status is set on grpc_testing's context
        except TimeoutError:
            future.cancel()
            raise


class ServiceBridge:
    """What grpc_testing sees as the servicer of one service: sync methods into InProcess."""

    def __init__(self, service: ServiceDescriptor, target: InProcess) -> None:
        self._service = service
        self._target = target

    def __getattr__(self, name: str) -> Callable[[Message, grpc.ServicerContext], Message | None]:
        method = self._service.methods_by_name.get(name)
        if method is None or method.server_streaming or method.client_streaming:
            raise AttributeError(name)
        return functools.partial(self._target.serve_sync, method)


@pytest.fixture(scope="module")
def in_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="in-process-gateway", daemon=True)
    thread.start()
    stack = contextlib.AsyncExitStack()
    audit_path = tmp_path_factory.mktemp("in-process") / "audit.jsonl"

    async def start() -> tuple[Gateway, Sandbox, CapturedServer]:
        sandbox = await stack.enter_async_context(Sandbox(SandboxConfig(market=False)))
        config = gateway_config(
            sandbox, callers__dev_mode=False, audit__path=str(audit_path)
        ).with_callers(CALLERS)
        captured: list[CapturedServer] = []

        def capture(*args: Any) -> CapturedServer:
            captured.append(CapturedServer(*args))
            return captured[-1]

        with mock.patch.object(server_module, "ExclusiveServer", capture):
            gateway = await stack.enter_async_context(Gateway(config))
        assert len(captured) == 1
        return gateway, sandbox, captured[0]

    def finish() -> None:
        asyncio.run_coroutine_threadsafe(stack.aclose(), loop).result(CALL_TIMEOUT_S)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CALL_TIMEOUT_S)
        loop.close()

    try:
        gateway, sandbox, captured = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
    except BaseException:
        finish()
        raise
    target = InProcess(loop, gateway, sandbox, captured, audit_path)
    target.server = grpc_testing.server_from_dictionary(
        {s: ServiceBridge(s, target) for s in (MARKET, TRADING, ACCOUNT)},
        grpc_testing.strict_real_time(),
    )
    try:
        yield target
    finally:
        finish()


# -- calling -------------------------------------------------------------------------------------
@dataclass
class Ended:
    """How a call ended, as grpc_testing reports it; readable by status_details.details_of."""

    response: Message | None
    trailing: tuple[tuple[str, str | bytes], ...]
    status: grpc.StatusCode
    text: str

    def code(self) -> grpc.StatusCode:
        return self.status

    def details(self) -> str:
        return self.text

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        return self.trailing

    @property
    def info(self) -> Details:
        return details_of(self)  # type: ignore[arg-type]  # duck-typed like grpc.aio.AioRpcError


def call(
    target: InProcess,
    service: ServiceDescriptor,
    method: str,
    request: Message,
    *,
    token: str | None = TRADER,
    metadata: Sequence[tuple[str, str]] = (),
) -> Ended:
    sent = (*((("authorization", f"Bearer {token}"),) if token else ()), *metadata)
    rpc = target.server.invoke_unary_unary(
        service.methods_by_name[method], sent, request, CALL_TIMEOUT_S
    )
    response, trailing, code, details = rpc.termination()
    return Ended(response, tuple(trailing), code, details)


def limit(
    side: int, amount: str, price: str, *, pair: str = "BTC_USDT", **kw: Any
) -> trading_pb2.PlaceOrderRequest:
    return trading_pb2.PlaceOrderRequest(
        pair=pair,
        side=side,  # type: ignore[arg-type]  # an OrderSide number; the stubs want the enum type
        limit=trading_pb2.LimitOrder(base_amount=amount, limit_price=price),
        **kw,
    )


def order_posts(target: InProcess) -> int:
    return int(target.sandbox.stats.rest_requests[("POST", "/api/v3/trading/order")])


# -- values through the servicers ----------------------------------------------------------------
def test_a_valid_call_answers_ok_with_values_and_the_request_id(in_process: InProcess) -> None:
    ended = call(
        in_process,
        MARKET,
        "ListPairs",
        market_data_pb2.ListPairsRequest(),
        metadata=(("x-request-id", "in-process-1"),),
    )
    assert ended.status == grpc.StatusCode.OK, ended.text
    assert isinstance(ended.response, market_data_pb2.ListPairsResponse)
    btc = {p.name: p for p in ended.response.pairs}["BTC_USDT"]
    assert (btc.currency1, btc.currency2, btc.price_precision) == ("BTC", "USDT", 2)
    assert ended.info.trailing["x-request-id"] == "in-process-1"


def test_a_valid_order_is_placed_once(in_process: InProcess) -> None:
    before = order_posts(in_process)
    ended = call(
        in_process,
        TRADING,
        "PlaceOrder",
        limit(BUY, "0.01", "20000", client_order_id="in-process-ok-1"),
    )
    assert ended.status == grpc.StatusCode.OK, ended.text
    assert isinstance(ended.response, trading_pb2.PlaceOrderResponse)
    assert ended.response.order_id > 0
    assert list(ended.response.order_ids) == [ended.response.order_id]
    assert ended.response.client_order_id == "in-process-ok-1"
    assert order_posts(in_process) == before + 1


# -- argument validation: INVALID_ARGUMENT naming the field --------------------------------------
@pytest.mark.parametrize(
    "method,request_message,field",
    [
        ("GetOrderBook", market_data_pb2.GetOrderBookRequest(pair="btc-usdt"), "pair"),
        ("GetOrderBook", market_data_pb2.GetOrderBookRequest(pair=""), "pair"),
        (
            "GetOrderBook",
            market_data_pb2.GetOrderBookRequest(pair="BTC_USDT", limit_buy=21),
            "limit_buy",
        ),
        ("ListTrades", market_data_pb2.ListTradesRequest(pair="BTC_USDT", limit=0), "limit"),
        ("ListTickers", market_data_pb2.ListTickersRequest(pair="BTC/USDT"), "pair"),
        ("ListPairs", market_data_pb2.ListPairsRequest(currency1="b t c"), "currency1"),
        (
            "ListCandles",
            market_data_pb2.ListCandlesRequest(pair="BTC_USDT"),
            "interval",
        ),
    ],
)
def test_market_data_refuses_malformed_requests(
    in_process: InProcess, method: str, request_message: Message, field: str
) -> None:
    ended = call(in_process, MARKET, method, request_message)
    assert ended.status == grpc.StatusCode.INVALID_ARGUMENT, ended.text
    assert ended.info.fields == [field]
    assert ended.text.startswith(f"invalid request: {field}: ")
    assert ended.response is None


@pytest.mark.parametrize(
    "request_message,fields",
    [
        (limit(BUY, "1,5", "20000"), ["limit.base_amount"]),
        (limit(BUY, "0.1", "2e4"), ["limit.limit_price"]),
        (limit(BUY, "0.1", "-20000"), ["limit.limit_price"]),
        (limit(BUY, "0.1", "20000.001"), ["limit.limit_price"]),  # BTC_USDT: 2 decimals
        (limit(BUY, "0.1", ""), ["limit.limit_price"]),
        (limit(BUY, "0.1", "20000", pair="BTCUSDT"), ["pair"]),
        (limit(BUY, "0.1", "20000", pair="NOPE_USDT"), ["pair"]),  # well formed, not listed
        (limit(0, "0.1", "20000", pair=""), ["pair", "side"]),
        (limit(BUY, "0.1", "20000", client_order_id="x" * 65), ["client_order_id"]),
        (limit(BUY, "0.1", "20000", client_order_id=""), ["client_order_id"]),
        (limit(BUY, "0.1", "20000", client_order_id="has space"), ["client_order_id"]),
        (trading_pb2.PlaceOrderRequest(pair="BTC_USDT", side=SELL), ["order"]),
    ],
)
def test_place_order_refuses_malformed_orders_before_alp(
    in_process: InProcess, request_message: trading_pb2.PlaceOrderRequest, fields: list[str]
) -> None:
    before = order_posts(in_process)
    ended = call(in_process, TRADING, "PlaceOrder", request_message)
    assert ended.status == grpc.StatusCode.INVALID_ARGUMENT, ended.text
    assert ended.info.fields == fields
    assert order_posts(in_process) == before


@pytest.mark.parametrize(
    "request_message,field",
    [
        (trading_pb2.CancelOrdersRequest(), "target"),
        (trading_pb2.CancelOrdersRequest(all=False), "all"),
        (trading_pb2.CancelOrdersRequest(pair="btc_usdt"), "pair"),
        (
            trading_pb2.CancelOrdersRequest(order_ids=trading_pb2.OrderIdList(ids=[7, 7])),
            "order_ids.ids",
        ),
    ],
)
def test_cancel_orders_refuses_malformed_targets(
    in_process: InProcess, request_message: trading_pb2.CancelOrdersRequest, field: str
) -> None:
    ended = call(in_process, TRADING, "CancelOrders", request_message)
    assert ended.status == grpc.StatusCode.INVALID_ARGUMENT, ended.text
    assert ended.info.fields == [field]


def test_a_refused_order_is_audited_by_field_name_only(in_process: InProcess) -> None:
    secret_looking = "9" * 40
    ended = call(
        in_process,
        TRADING,
        "PlaceOrder",
        limit(BUY, secret_looking + "x", "20000"),
        metadata=(("x-request-id", "in-process-audit-1"),),
    )
    assert ended.status == grpc.StatusCode.INVALID_ARGUMENT
    lines = [json.loads(line) for line in in_process.audit_path.read_text().splitlines()]
    mine = [line for line in lines if line.get("request_id") == "in-process-audit-1"]
    assert [(m["phase"], m["status"], m["fields"]) for m in mine] == [
        ("refused", "INVALID_ARGUMENT", ["limit.base_amount"])
    ]
    assert mine[0]["caller"] == "trader" and mine[0]["account"] == "demo"
    assert secret_looking not in json.dumps(mine)


# -- caller authentication and permissions (the CallerGate inside the barrier) -------------------
@pytest.mark.parametrize(
    "metadata,message",
    [
        ((), "missing credentials"),
        ((("authorization", "Bearer not-a-known-token"),), "unknown bearer token"),
        ((("authorization", "Basic dXNlcjpwYXNz"),), "must be 'Bearer <token>'"),
        ((("authorization", "Bearer "),), "must be 'Bearer <token>'"),
    ],
)
def test_unauthenticated_callers_are_refused(
    in_process: InProcess, metadata: tuple[tuple[str, str], ...], message: str
) -> None:
    before = order_posts(in_process)
    ended = call(
        in_process,
        TRADING,
        "PlaceOrder",
        limit(BUY, "0.01", "20000"),
        token=None,
        metadata=metadata,
    )
    assert ended.status == grpc.StatusCode.UNAUTHENTICATED
    assert message in ended.text
    assert ended.info.trailing.get("x-request-id")
    assert order_posts(in_process) == before


def test_a_missing_scope_is_permission_denied_naming_it(in_process: InProcess) -> None:
    ended = call(in_process, TRADING, "PlaceOrder", limit(BUY, "0.01", "20000"), token=VIEWER)
    assert ended.status == grpc.StatusCode.PERMISSION_DENIED
    assert "lacks scope 'trade'" in ended.text
    info = ended.info.error_info
    assert info is not None
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "MISSING_SCOPE",
        "gateway.alp.internal",
        {"scope": "trade"},
    )


def test_the_gate_runs_before_validation(in_process: InProcess) -> None:
    # a malformed request from a caller without the scope learns nothing about its fields
    ended = call(in_process, TRADING, "PlaceOrder", limit(BUY, "x", "y"), token=VIEWER)
    assert ended.status == grpc.StatusCode.PERMISSION_DENIED
    assert ended.info.bad_request is None


def test_granted_scope_is_let_through(in_process: InProcess) -> None:
    ended = call(in_process, MARKET, "GetServerTime", market_data_pb2.GetServerTimeRequest())
    assert ended.status == grpc.StatusCode.OK, ended.text
    viewer = call(
        in_process, MARKET, "GetServerTime", market_data_pb2.GetServerTimeRequest(), token=VIEWER
    )
    assert viewer.status == grpc.StatusCode.OK, viewer.text
    assert isinstance(viewer.response, market_data_pb2.GetServerTimeResponse)
    assert viewer.response.server_time.seconds > 1_600_000_000


def test_a_caller_over_its_quota_is_told_when_to_retry(in_process: InProcess) -> None:
    request = market_data_pb2.GetServerTimeRequest()
    first = call(in_process, MARKET, "GetServerTime", request, token=METERED)
    second = call(in_process, MARKET, "GetServerTime", request, token=METERED)
    assert first.status == grpc.StatusCode.OK, first.text
    assert second.status == grpc.StatusCode.RESOURCE_EXHAUSTED
    info, retry = second.info.error_info, second.info.retry_info
    assert info is not None and retry is not None
    assert (info.reason, info.metadata["bucket"]) == ("RATE_LIMITED", "caller:metered")
    assert 90 <= retry.retry_delay.seconds <= 100


# -- the error -> status table, seen through a servicer ------------------------------------------
def test_an_unknown_account_is_not_found(in_process: InProcess) -> None:
    ended = call(
        in_process,
        TRADING,
        "PlaceOrder",
        limit(BUY, "0.01", "20000"),
        metadata=(("x-alp-account", "nobody"),),
    )
    assert ended.status == grpc.StatusCode.NOT_FOUND
    info = ended.info.error_info
    assert info is not None
    assert (info.reason, info.metadata["account"]) == ("UNKNOWN_ACCOUNT", "nobody")


def test_an_account_outside_the_callers_list_is_permission_denied(in_process: InProcess) -> None:
    request = account_pb2.ListBalancesRequest()
    mine = call(in_process, ACCOUNT, "ListBalances", request, token=VIEWER)
    assert mine.status == grpc.StatusCode.OK, mine.text
    assert isinstance(mine.response, account_pb2.ListBalancesResponse)
    balances = {b.currency: Decimal(b.balance) for b in mine.response.balances}
    assert balances["USDT"] == Decimal("100000")
    other = call(
        in_process,
        ACCOUNT,
        "ListBalances",
        request,
        token=VIEWER,
        metadata=(("x-alp-account", "desk-b"),),
    )
    assert other.status == grpc.StatusCode.PERMISSION_DENIED
    assert "may not use ALP account 'desk-b'" in other.text


def test_insufficient_funds_is_failed_precondition_with_alps_code(in_process: InProcess) -> None:
    ended = call(in_process, TRADING, "PlaceOrder", limit(BUY, "90", "20000"))
    assert ended.status == grpc.StatusCode.FAILED_PRECONDITION, ended.text
    assert ended.text.startswith("ALP: ")
    info = ended.info.error_info
    assert info is not None
    assert (info.reason, info.domain, info.metadata["http_status"]) == ("2002", "alp.com", "400")
    assert ended.info.retry_info is None
