"""CallerGate: authenticates every call (bearer token or mTLS subject) and checks its permissions."""

from __future__ import annotations

import logging
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


class CallerGate:
    """Checks every call, unary and streaming alike (the error barrier runs it first);
    `registry=None` is development mode."""

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

    def __call__(self, method: str, context: Context) -> Caller | None:
        if required_scope(method) is None:
            return None  # health and reflection are open so probes and grpcurl work
        caller = self.identify(context)
        account = metadata_value(context, ACCOUNT_HEADER) or self._default_account
        authorize(caller, method, account)
        caller_var.set(caller.name)
        return caller
