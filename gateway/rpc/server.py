"""The grpc.aio server: servicers, the error barrier, health and reflection (v1 and v1alpha), limits."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from typing import Any, cast

import grpc
from alp.v3 import (
    account_pb2,
    account_pb2_grpc,
    gateway_service_pb2,
    gateway_service_pb2_grpc,
    market_data_pb2,
    market_data_pb2_grpc,
    stream_pb2,
    trading_pb2,
    trading_pb2_grpc,
)
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc.aio._server import Server as _AioServer
from grpc_health.v1 import _async as health_aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import _async as reflection_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

from gateway.audit import AuditLog
from gateway.errors import ConfigError
from gateway.exchange.order_desk import OrderDesk
from gateway.exchange.upstream import Upstream
from gateway.rpc.account import AccountServicer
from gateway.rpc.barrier import ErrorBarrier, Gate, RpcObserver
from gateway.rpc.gateway_status import GatewayStatusServicer
from gateway.rpc.market_data import MarketDataServicer
from gateway.rpc.stream import StreamServicer
from gateway.rpc.stream import register as register_streams
from gateway.rpc.trading import TradingServicer
from gateway.status import GatewayState, Health

# Health services: market data (public streams ride StreamService) follows ALP; the account
# services follow its accounts too; GatewayService answers from the gateway alone.
MARKET_SERVICES: tuple[str, ...] = (
    market_data_pb2.DESCRIPTOR.services_by_name["MarketDataService"].full_name,
    stream_pb2.DESCRIPTOR.services_by_name["StreamService"].full_name,
)
ACCOUNT_SERVICES: tuple[str, ...] = (
    account_pb2.DESCRIPTOR.services_by_name["AccountService"].full_name,
    trading_pb2.DESCRIPTOR.services_by_name["TradingService"].full_name,
)
GATEWAY_SERVICE = gateway_service_pb2.DESCRIPTOR.services_by_name["GatewayService"].full_name
SERVICE_NAMES: tuple[str, ...] = (*MARKET_SERVICES, *ACCOUNT_SERVICES, GATEWAY_SERVICE)
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
REFLECTION_V1_SERVICE = "grpc.reflection.v1.ServerReflection"

# PERF-NOTES: with core defaults a burst of 5,000 stream calls only got ~3,000 into handlers.
SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.server.max_pending_requests", 20000),
    ("grpc.server.max_pending_requests_hard_limit", 40000),
    ("grpc.max_concurrent_streams", 10000),
    ("grpc.keepalive_time_ms", 60000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10000),
    # grpc sets SO_REUSEPORT by default: a second gateway on the same port would silently share it.
    ("grpc.so_reuseport", 0),
)


class BindFailed(ConfigError):
    """The listen address cannot be bound (another process holds the port, or not our address)."""

    def __init__(self, address: str, why: str) -> None:
        super().__init__("listen", f"cannot listen on {address}: {why}")
        self.address = address
        self.why = why


def bind_problem(address: str) -> str:
    """Why `address` cannot be bound, asked of the OS with a plain socket: grpc does not say."""
    host, _, port = address.rpartition(":")
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc binds
            probe.bind(sockaddr)
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    except ValueError:
        return "not a host:port address"
    return "address in use or not available"


class ExclusiveServer(_AioServer):
    """The grpc.aio server whose ports raise BindFailed, naming the address, when taken."""

    def add_insecure_port(self, address: str) -> int:
        try:
            return int(super().add_insecure_port(address))
        except RuntimeError as exc:  # grpc only says "Failed to bind to address"
            raise BindFailed(address, bind_problem(address)) from exc

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        try:
            return int(super().add_secure_port(address, server_credentials))
        except RuntimeError as exc:
            raise BindFailed(address, bind_problem(address)) from exc


def build_server(
    upstream: Upstream,
    *,
    deadline_margin_s: float,
    default_timeout_s: float,
    desk: OrderDesk,
    streams: StreamServicer,
    audit: AuditLog | None = None,
    status: Callable[[], GatewayState] | None = None,
    gate: Gate | None = None,
    observer: RpcObserver | None = None,
    reuse_port: bool = False,
) -> tuple[grpc.aio.Server, health_aio.HealthServicer]:
    # One interceptor: a wrapper per call layer costs latency and memory per open stream.
    # Built as grpc.aio.server() builds it: (thread pool, handlers, interceptors, options,
    # maximum_concurrent_rpcs, compression). The cast: grpc-stubs type grpc.aio.Server apart from
    # the runtime class it is.
    server = cast(
        grpc.aio.Server,
        ExclusiveServer(
            None,
            (),
            (ErrorBarrier(observer, gate, default_account=upstream.default_account),),
            # port sharing only for the workers of `serve --workers`, which ask for it explicitly
            (*SERVER_OPTIONS[:-1], ("grpc.so_reuseport", 1)) if reuse_port else SERVER_OPTIONS,
            None,
            None,
        ),
    )
    timing: dict[str, Any] = {
        "deadline_margin_s": deadline_margin_s,
        "default_timeout_s": default_timeout_s,
    }
    market_data_pb2_grpc.add_MarketDataServiceServicer_to_server(
        MarketDataServicer(upstream, **timing), server
    )
    account_pb2_grpc.add_AccountServiceServicer_to_server(
        AccountServicer(upstream, **timing), server
    )
    trading_pb2_grpc.add_TradingServiceServicer_to_server(
        TradingServicer(upstream, desk=desk, audit=audit, **timing), server
    )
    if status is not None:
        gateway_service_pb2_grpc.add_GatewayServiceServicer_to_server(
            GatewayStatusServicer(status), server
        )
    register_streams(server, streams)
    # starts with "" SERVING: set_health(health, ...) before the server starts
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    add_reflection(server, (*SERVICE_NAMES, HEALTH_SERVICE))
    return server, health


def health_statuses(verdict: Health) -> dict[str, bool]:
    """Health service name -> SERVING ("" is the overall status: ALP answers)."""
    statuses = {"": verdict.serving}
    statuses.update({name: verdict.serving for name in MARKET_SERVICES})
    statuses.update({name: verdict.accounts_serving for name in ACCOUNT_SERVICES})
    statuses[GATEWAY_SERVICE] = not verdict.draining
    return statuses


async def set_health(health: health_aio.HealthServicer, statuses: Mapping[str, bool]) -> None:
    for name, serving in statuses.items():
        await health.set(
            name,
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING,
        )


def add_reflection(server: grpc.aio.Server, service_names: tuple[str, ...]) -> None:
    """Server reflection as grpc.reflection.v1 and v1alpha, both answered by one servicer.

    grpcio-reflection ships only v1alpha (grpc/grpc#38576). v1 is the same schema under another
    package, so v1 requests parse as v1alpha messages and v1alpha answers are v1 bytes; the v1
    file is added to the descriptor pool so that reflection can describe the v1 service too.
    """
    _register_reflection_v1_file()
    names = (*service_names, reflection.SERVICE_NAME, REFLECTION_V1_SERVICE)
    servicer = reflection_aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(REFLECTION_V1_SERVICE, {"ServerReflectionInfo": v1}),)
    )


def _register_reflection_v1_file() -> None:
    """grpc/reflection/v1/reflection.proto in the default pool: v1alpha's file, renamed."""
    pool = descriptor_pool.Default()
    name = "grpc/reflection/v1/reflection.proto"
    try:
        pool.FindFileByName(name)
        return
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = ".grpc.reflection.v1alpha.", ".grpc.reflection.v1."
    proto.name, proto.package = name, "grpc.reflection.v1"
    proto.ClearField("options")  # v1alpha's file is marked deprecated; v1 is not
    for message in proto.message_type:
        for entry in message.field:
            if entry.type_name:  # message and enum fields only
                entry.type_name = entry.type_name.replace(old, new)
    for service in proto.service:
        for method in service.method:
            method.input_type = method.input_type.replace(old, new)
            method.output_type = method.output_type.replace(old, new)
    pool.AddSerializedFile(proto.SerializeToString())
