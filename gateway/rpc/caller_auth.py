"""CallerGate: authenticates every call (bearer token or mTLS subject) and checks its permissions."""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from gateway.core.authz import SUBSCRIBE, method_rule
from gateway.core.callers import (
    DEV_CALLER,
    Caller,
    CallerRegistry,
    authorize,
    authorize_channel,
    bearer_token,
)
from gateway.core.rate_limit import Lane, SlidingWindow
from gateway.errors import (
    CallerError,
    PermissionDenied,
    RateLimited,
    Unauthenticated,
    shown_account,
)
from gateway.rpc.call import ACCOUNT_HEADER, caller_var, metadata_value

log = logging.getLogger(__name__)

# The caller the gate let in, for handlers that authorize per item (Subscribe channels).
caller_identity_var: contextvars.ContextVar[Caller | None] = contextvars.ContextVar(
    "caller_identity", default=None
)

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

    def __init__(
        self,
        registry: CallerRegistry | None,
        default_account: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._default_account = default_account
        self._clock = clock
        self._quotas: dict[str, SlidingWindow] = {}

    def _spend_quota(self, caller: Caller) -> None:
        """Per-caller quota (`callers.NAME.rate_per_s`): one caller cannot take another's share."""
        if caller.rate_per_s <= 0:
            return
        window = self._quotas.get(caller.name)
        if window is None:
            window = self._quotas[caller.name] = SlidingWindow.for_rate(
                caller.rate_per_s, margin_s=0.0
            )
        now = self._clock()
        wait = window.wait(now, Lane.TRADE)
        if wait > 0:
            raise RateLimited(f"caller:{caller.name}", wait)
        window.record(now)

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
        rule = method_rule(method)
        if rule is not None and rule.open:
            return None  # health and reflection are open so probes and grpcurl work
        account = metadata_value(context, ACCOUNT_HEADER) or self._default_account
        caller: Caller | None = None
        try:
            caller = self.identify(context)
            caller_var.set(caller.name)  # known from here: the access line names it, refused or not
            authorize(caller, method, account)  # not in the table: denied
        except CallerError as exc:
            log_refusal(caller, method, account, exc)
            raise
        caller_identity_var.set(caller)
        self._spend_quota(caller)
        return caller


def authorize_subscribe_channel(channel: str, account: str) -> None:
    """Subscribe: refuse `channel` unless the table grants it to the caller the gate let in."""
    caller = caller_identity_var.get()
    try:
        if caller is None:  # no gate ran for this call: nothing is granted
            raise PermissionDenied(f"Subscribe channel {channel}: no authenticated caller")
        authorize_channel(caller, channel, account)
    except PermissionDenied as exc:
        log_refusal(caller, SUBSCRIBE, account, exc)
        raise


def log_refusal(caller: Caller | None, method: str, account: str, exc: CallerError) -> None:
    """One audit line per refused call: who, which RPC, which ALP account, why."""
    name = caller.name if caller is not None else "(unauthenticated)"
    account = shown_account(account)
    log.warning(
        "refused caller=%s rpc=%s account=%r reason=%s",
        name,
        method,
        account[:64],
        exc,
        extra={"caller": name, "rpc_method": method, "account": account[:64]},
    )
