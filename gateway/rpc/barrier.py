"""The final error barrier: request ids, one access-log line per RPC, errors mapped to statuses."""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import grpc
from google.protobuf.message import DecodeError

from gateway.errors import GatewayError, shown_account
from gateway.rpc.call import (
    ACCOUNT_HEADER,
    REQUEST_ID_HEADER,
    caller_var,
    choose_request_id,
    metadata_value,
    request_id_var,
)
from gateway.rpc.status_map import MappedError, map_error

log = logging.getLogger("gateway.access")
errlog = logging.getLogger("gateway.rpc")

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]
else:  # generic only in the stubs
    Context = grpc.aio.ServicerContext


class RpcObserver(Protocol):
    """Told when a call starts and how it ended; `kind` as gRPC metrics name it ("unary",
    "server_stream"), `code` a grpc.StatusCode name."""

    def rpc_started(self, method: str, kind: str) -> None: ...

    def rpc_handled(self, method: str, kind: str, code: str, seconds: float) -> None: ...


UNARY: Final = "unary"
SERVER_STREAM: Final = "server_stream"
# What an access-log line may quote of caller-supplied text (metadata, peer): anything else is
# replaced, so a header cannot forge a line or smuggle a token into the log.
_LOGGABLE: Final = re.compile(r"[^A-Za-z0-9_.:\[\]/@=+-]")
# Caller authentication/authorization, run first inside the barrier so its errors are mapped too.
Gate = Callable[[str, Any], object]

# Stands in for a request whose bytes are not the method's message. grpc.aio deserialises before
# any handler or interceptor code runs, and a raising deserializer ends the call UNKNOWN with the
# DecodeError text and a logged traceback; so the barrier's deserializer returns this instead and
# the wrapped handler answers INVALID_ARGUMENT like any other bad request.
_UNDECODABLE: Any = object()
_UNDECODABLE_STATUS = MappedError(grpc.StatusCode.INVALID_ARGUMENT, "request could not be decoded")


class ErrorBarrier(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    """Wraps every handler so that no exception escapes unmapped and every call is logged once.

    GatewayError subclasses become their mapped status with google.rpc details; anything else is a
    bug: INTERNAL with a generic message (and the request id) while the traceback goes to the log.
    """

    def __init__(
        self,
        observer: RpcObserver | None = None,
        gate: Gate | None = None,
        *,
        default_account: str = "",
    ) -> None:
        self._observer = observer
        self._gate = gate
        self._default_account = default_account

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap_unary(method, handler.unary_unary),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            # a handler is an async generator (yields messages) or a coroutine that writes them
            # with context.write (grpc's health Watch); grpc tells the two apart by the function,
            # so the wrapper must be of the same kind
            inner = handler.unary_stream
            wrap = self._wrap_stream if inspect.isasyncgenfunction(inner) else self._wrap_writer
            return grpc.unary_stream_rpc_method_handler(
                wrap(method, inner),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        return handler

    def _wrap_unary(self, method: str, inner: Any) -> Any:
        async def behavior(request: Any, context: Context) -> Any:
            async with _Call(self, method, UNARY, context) as call:
                await call.admit(request)
                return await inner(request, context)

        return behavior

    def _wrap_stream(self, method: str, inner: Any) -> Any:
        async def behavior(request: Any, context: Context) -> AsyncIterator[Any]:
            async with _Call(self, method, SERVER_STREAM, context) as call:
                await call.admit(request)
                async for item in inner(request, context):
                    yield item

        return behavior

    def _wrap_writer(self, method: str, inner: Any) -> Any:
        """A server-streaming handler that writes with context.write and returns None."""

        async def behavior(request: Any, context: Context) -> None:
            async with _Call(self, method, SERVER_STREAM, context) as call:
                await call.admit(request)
                await inner(request, context)

        return behavior

    def _begin(self, method: str, kind: str, context: Context) -> tuple[str, tuple[str, str]]:
        """The request id, and the account and peer for the access log: read now, while the call
        is alive (the context of a cancelled call must not be touched)."""
        if self._observer is not None:
            self._observer.rpc_started(method, kind)
        asked = metadata_value(context, ACCOUNT_HEADER) or self._default_account
        account = _loggable(shown_account(asked))
        return _begin(context), (account, _loggable(context.peer() or ""))

    def _finish(
        self,
        method: str,
        kind: str,
        code: str,
        started: float,
        request_id: str,
        where: tuple[str, str],
    ) -> None:
        elapsed = time.perf_counter() - started
        caller = caller_var.get() or "-"
        account, peer = where
        log.info(
            "rpc %s %s %.2fms request_id=%s caller=%s account=%s peer=%s",
            method,
            code,
            elapsed * 1000,
            request_id,
            caller,
            account,
            peer,
            extra={
                "request_id": request_id,
                "rpc_method": method,
                "rpc_code": code,
                "rpc_ms": round(elapsed * 1000, 3),
                "caller": caller,
                "account": account,
                "peer": peer,
            },
        )
        if self._observer is not None:
            self._observer.rpc_handled(method, kind, code, elapsed)


class _Call:
    """One call inside the barrier, whatever its kind: request id and access-log fields taken at
    the start; inside, the gate and the request's decoding checked first (`admit`); on the way out
    every exception mapped to a status (the caller's cancellation and grpc's own aborts pass
    through), and the access line written and the observer told however it ended."""

    __slots__ = (
        "_barrier",
        "_code",
        "_context",
        "_kind",
        "_method",
        "_request_id",
        "_started",
        "_where",
    )

    def __init__(self, barrier: ErrorBarrier, method: str, kind: str, context: Context) -> None:
        self._barrier = barrier
        self._method = method
        self._kind = kind
        self._context = context
        self._code = "OK"
        self._request_id = ""
        self._started = 0.0
        self._where = ("", "")

    async def __aenter__(self) -> _Call:
        self._request_id, self._where = self._barrier._begin(
            self._method, self._kind, self._context
        )
        self._started = time.perf_counter()
        return self

    async def admit(self, request: Any) -> None:
        gate = self._barrier._gate
        if gate is not None:
            gate(self._method, self._context)
        if request is _UNDECODABLE:
            await _abort(self._context, _UNDECODABLE_STATUS, self._request_id)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, _: object
    ) -> None:
        context, request_id = self._context, self._request_id
        try:
            if isinstance(exc, grpc.aio.AbortError):
                self._code = _code_name(context)
            elif isinstance(exc, asyncio.CancelledError):
                self._code = "CANCELLED"
            elif isinstance(exc, GatewayError):
                mapped = map_error(exc)
                self._code = mapped.code.name
                await _abort(context, mapped, request_id)
            elif isinstance(exc, Exception):
                self._code = _unexpected(exc, context, self._method, request_id)
                await _abort(context, _internal(request_id), request_id)
        finally:
            self._barrier._finish(
                self._method, self._kind, self._code, self._started, request_id, self._where
            )


def _tolerant(
    deserializer: Callable[[bytes], Any] | None,
) -> Callable[[bytes], Any] | None:
    if deserializer is None:  # the handler takes raw bytes: nothing to decode
        return None

    def decode(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError:  # corrupt wire format, truncated field, invalid UTF-8 in a string
            return _UNDECODABLE

    return decode


def _loggable(text: str) -> str:
    """Caller-supplied text as one short token for a log line ("-" when empty)."""
    return _LOGGABLE.sub("?", text[:64]) or "-"


def _begin(context: Context) -> str:
    request_id = choose_request_id(metadata_value(context, REQUEST_ID_HEADER))
    request_id_var.set(request_id)
    context.set_trailing_metadata(((REQUEST_ID_HEADER, request_id),))
    return request_id


def _internal(request_id: str) -> MappedError:
    return MappedError(grpc.StatusCode.INTERNAL, f"internal error (request id {request_id})")


def _unexpected(exc: Exception, context: Context, method: str, request_id: str) -> str:
    errlog.error("unexpected error in %s (request id %s)", method, request_id, exc_info=exc)
    return "INTERNAL"


def _code_name(context: Context) -> str:
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "ABORTED"


async def _abort(context: Context, mapped: MappedError, request_id: str) -> None:
    status = mapped.to_status()
    trailing = (*status.trailing_metadata, (REQUEST_ID_HEADER, request_id))
    await context.abort(status.code, status.details, trailing)
