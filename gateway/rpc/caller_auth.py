"""CallerAuth: authenticates every call (bearer token or mTLS subject) and checks its permissions."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from gateway.core.callers import (
    DEV_CALLER,
    Caller,
    CallerRegistry,
    authorize,
    bearer_token,
    required_scope,
)
from gateway.errors import Unauthenticated
from gateway.rpc.call import ACCOUNT_HEADER, caller_var, metadata_value

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]
else:  # generic only in the stubs
    Context = grpc.aio.ServicerContext


def certificate_subject(context: Context) -> str | None:
    """RFC 4514 subject of the verified client certificate, if the call came over mTLS."""
    auth = context.auth_context() or {}
    pems = list(auth.get("x509_pem_cert") or ())
    if not pems:
        return None
    from cryptography import x509

    certificate = x509.load_pem_x509_certificate(pems[0])
    return certificate.subject.rfc4514_string()


class CallerAuth(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    """One interceptor for unary and streaming calls alike; `registry=None` is development mode."""

    def __init__(self, registry: CallerRegistry | None, default_account: str) -> None:
        self._registry = registry
        self._default_account = default_account

    def identify(self, context: Context) -> Caller:
        if self._registry is None:
            return DEV_CALLER
        token = bearer_token(metadata_value(context, "authorization"))
        if token is not None:
            return self._registry.by_token(token)
        subject = certificate_subject(context)
        if subject is not None:
            return self._registry.by_subject(subject)
        raise Unauthenticated(
            "missing credentials: send 'authorization: Bearer <token>' or use mTLS"
        )

    def check(self, method: str, context: Context) -> Caller | None:
        if required_scope(method) is None:
            return None  # health and reflection are open so probes and grpcurl work
        caller = self.identify(context)
        account = metadata_value(context, ACCOUNT_HEADER) or self._default_account
        authorize(caller, method, account)
        caller_var.set(caller.name)
        return caller

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
            inner_unary: Any = handler.unary_unary

            async def unary(request: Any, context: Context) -> Any:
                self.check(method, context)
                return await inner_unary(request, context)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner_stream: Any = handler.unary_stream

            async def stream(request: Any, context: Context) -> AsyncIterator[Any]:
                self.check(method, context)
                async for item in inner_stream(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
