"""Errors to gRPC statuses: tables by exception class and ALP HTTP/ALP code, google.rpc details."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeVar

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from gateway import errors

log = logging.getLogger(__name__)

ALP_DOMAIN: Final = "alp.com"
GATEWAY_DOMAIN: Final = "gateway.alp.internal"
DEFAULT_RETRY_S: Final = 1.0

# ALP error code -> gRPC status, consulted before the HTTP status table.
ALP_CODE_STATUS: Final[dict[str, grpc.StatusCode]] = {
    "2002": grpc.StatusCode.FAILED_PRECONDITION,  # insufficient funds
    "1011": grpc.StatusCode.NOT_FOUND,  # order not found
    "3003": grpc.StatusCode.UNAVAILABLE,  # service overloaded, retry later
    "3004": grpc.StatusCode.UNAVAILABLE,  # ALP internal error (as a 4xx body)
}

HTTP_STATUS: Final[dict[int, grpc.StatusCode]] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    405: grpc.StatusCode.INTERNAL,  # the gateway used a wrong method: our bug
    406: grpc.StatusCode.INTERNAL,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.UNAVAILABLE,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.UNAVAILABLE,
}

# Statuses whose callers should back off and retry: they get a google.rpc.RetryInfo.
RETRY_HINTED: Final = frozenset({429, 503})
ALP_RETRY_HINTED: Final = frozenset({"3003"})


@dataclass
class MappedError:
    code: grpc.StatusCode
    message: str
    details: list[object] = field(default_factory=list)

    def to_status(self) -> grpc.Status:
        from grpc_status import rpc_status

        proto = status_pb2.Status(code=_code_number(self.code), message=self.message)
        for detail in self.details:
            proto.details.add().Pack(detail)
        return rpc_status.to_status(proto)


def _code_number(code: grpc.StatusCode) -> int:
    value = code.value[0]
    assert isinstance(value, int)
    return value


def _retry_info(seconds: float) -> error_details_pb2.RetryInfo:
    seconds = max(0.0, seconds)
    whole = math.floor(seconds)
    delay = duration_pb2.Duration(seconds=whole, nanos=int((seconds - whole) * 1e9))
    return error_details_pb2.RetryInfo(retry_delay=delay)


def _error_info(
    reason: str, domain: str = ALP_DOMAIN, **metadata: str
) -> error_details_pb2.ErrorInfo:
    return error_details_pb2.ErrorInfo(
        reason=reason or "UNKNOWN", domain=domain, metadata={k: v for k, v in metadata.items() if v}
    )


def _fixed(
    code: grpc.StatusCode, reason: str = "", *, message: str = "", retry: bool = False
) -> Callable[[errors.GatewayError], MappedError]:
    """A mapper for an error whose status does not depend on its fields: `message` (default: the
    error's own text), an ErrorInfo of the gateway's domain when `reason` is given, and the default
    RetryInfo when `retry`."""

    def mapper(exc: errors.GatewayError) -> MappedError:
        details: list[object] = [_error_info(reason, GATEWAY_DOMAIN)] if reason else []
        if retry:
            details.append(_retry_info(DEFAULT_RETRY_S))
        return MappedError(code, message or str(exc), details)

    return mapper


def _upstream_http(exc: errors.UpstreamHttpError) -> MappedError:
    # ALP codes refine 4xx answers; a 5xx is the transport's verdict whatever code rides along.
    by_code = ALP_CODE_STATUS.get(exc.code) if exc.http_status < 500 else None
    code = by_code or HTTP_STATUS.get(exc.http_status)
    if code is None:
        code = grpc.StatusCode.UNAVAILABLE if exc.http_status >= 500 else grpc.StatusCode.UNKNOWN
    message = f"ALP: {exc.message or exc.code or 'HTTP ' + str(exc.http_status)}"
    details: list[object] = [
        _error_info(exc.code, http_status=str(exc.http_status), alp_message=exc.message[:500])
    ]
    if exc.http_status in RETRY_HINTED or exc.code in ALP_RETRY_HINTED:
        details.append(
            _retry_info(exc.retry_after if exc.retry_after is not None else DEFAULT_RETRY_S)
        )
    return MappedError(code, message, details)


def _validation(exc: errors.ValidationError) -> MappedError:
    request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
            for f, d in exc.violations
        ]
    )
    summary = "; ".join(f"{f}: {d}" for f, d in exc.violations[:5])
    return MappedError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid request: {summary}", [request])


def _auth_failed(exc: errors.AuthFailed) -> MappedError:
    return MappedError(
        grpc.StatusCode.UNAUTHENTICATED,
        "ALP refused the gateway's API key for this account",
        [_error_info(exc.code, http_status=str(exc.http_status), alp_message=exc.message[:500])],
    )


def _upstream_unavailable(exc: errors.UpstreamUnavailable) -> MappedError:
    return MappedError(
        grpc.StatusCode.UNAVAILABLE,
        f"ALP is unreachable: {exc}",
        [_error_info("UPSTREAM_UNAVAILABLE", GATEWAY_DOMAIN), _retry_info(DEFAULT_RETRY_S)],
    )


def _rate_limited(exc: errors.RateLimited) -> MappedError:
    return MappedError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"gateway rate limit {exc.bucket} reached",
        [
            _error_info("RATE_LIMITED", GATEWAY_DOMAIN, bucket=exc.bucket),
            _retry_info(exc.retry_after),
        ],
    )


def _order_outcome_unknown(exc: errors.OrderOutcomeUnknown) -> MappedError:
    return MappedError(
        grpc.StatusCode.FAILED_PRECONDITION,
        str(exc) + "; retry with the same client_order_id or check ListOrders",
        [
            _error_info(
                "ORDER_OUTCOME_UNKNOWN",
                GATEWAY_DOMAIN,
                client_order_id=exc.client_order_id[:64],
                candidate_order_ids=",".join(map(str, exc.candidates[:20])),
                why=exc.why[:100],
            )
        ],
    )


def _order_not_placed(exc: errors.OrderNotPlaced) -> MappedError:
    cause = map_error(exc.cause)
    kept = [d for d in cause.details if not isinstance(d, error_details_pb2.ErrorInfo)]
    return MappedError(
        cause.code,
        f"{cause.message}; verified by ALP's order list: {str(exc).rpartition(': ')[2]}",
        [_error_info(exc.reason, GATEWAY_DOMAIN), *kept],
    )


def _permission_denied(exc: errors.PermissionDenied) -> MappedError:
    details: list[object] = []
    if exc.scope:
        details.append(_error_info("MISSING_SCOPE", GATEWAY_DOMAIN, scope=exc.scope))
    return MappedError(grpc.StatusCode.PERMISSION_DENIED, str(exc), details)


def _unknown_account(exc: errors.UnknownAccount) -> MappedError:
    return MappedError(
        grpc.StatusCode.NOT_FOUND,
        str(exc),
        [_error_info("UNKNOWN_ACCOUNT", GATEWAY_DOMAIN, account=exc.account[:64])],
    )


def _topic_refused(exc: errors.TopicRefused) -> MappedError:
    return MappedError(
        grpc.StatusCode.NOT_FOUND if exc.not_found else grpc.StatusCode.INVALID_ARGUMENT,
        str(exc),
        [
            _error_info(
                "TOPIC_NOT_FOUND" if exc.not_found else "TOPIC_INVALID",
                ALP_DOMAIN,
                topic=exc.topic[:80],
                alp_message=exc.alp_message[:200],
            )
        ],
    )


def _private_login_refused(exc: errors.PrivateLoginRefused) -> MappedError:
    return MappedError(
        grpc.StatusCode.UNAUTHENTICATED,
        str(exc),
        [_error_info("WS_LOGIN_REFUSED", ALP_DOMAIN, account=exc.account[:64])],
    )


E = TypeVar("E", bound=errors.GatewayError)
Row = tuple[type[errors.GatewayError], Callable[[Any], MappedError]]


def _row(cls: type[E], mapper: Callable[[E], MappedError]) -> Row:
    """A table row; the type checker proves that `mapper` takes exactly what `cls` is."""
    return cls, mapper


# Exception class -> its status, looked up along the raised class's MRO. One row per concrete class
# of gateway/errors.py (tests/gateway/test_error_table.py walks the module and fails on a gap).
ERROR_TABLE: Final[Mapping[type[errors.GatewayError], Callable[[Any], MappedError]]] = (
    MappingProxyType(
        dict(
            [
                # A ConfigError reaching a caller is the gateway's fault; its text is not theirs.
                _row(
                    errors.ConfigError, _fixed(grpc.StatusCode.INTERNAL, message="internal error")
                ),
                _row(errors.ValidationError, _validation),
                _row(errors.Unauthenticated, _fixed(grpc.StatusCode.UNAUTHENTICATED)),
                _row(errors.PermissionDenied, _permission_denied),
                _row(errors.UnknownAccount, _unknown_account),
                _row(errors.UpstreamHttpError, _upstream_http),
                _row(errors.UpstreamUnavailable, _upstream_unavailable),
                _row(
                    errors.UpstreamTimeout,
                    _fixed(
                        grpc.StatusCode.DEADLINE_EXCEEDED,
                        "UPSTREAM_TIMEOUT",
                        message="ALP did not answer within the deadline",
                    ),
                ),
                _row(
                    errors.UpstreamProtocolError,
                    _fixed(
                        grpc.StatusCode.INTERNAL,
                        "UPSTREAM_PROTOCOL",
                        message="ALP answered in an unexpected format",
                    ),
                ),
                _row(errors.AuthFailed, _auth_failed),
                _row(errors.OrderOutcomeUnknown, _order_outcome_unknown),
                _row(errors.OrderNotPlaced, _order_not_placed),
                _row(errors.SlowConsumer, _fixed(grpc.StatusCode.RESOURCE_EXHAUSTED)),
                _row(errors.Draining, _fixed(grpc.StatusCode.UNAVAILABLE, retry=True)),
                _row(errors.TopicRefused, _topic_refused),
                _row(errors.PrivateLoginRefused, _private_login_refused),
                _row(errors.RateLimited, _rate_limited),
                _row(
                    errors.AuditUnavailable,
                    _fixed(grpc.StatusCode.UNAVAILABLE, "AUDIT_UNAVAILABLE", retry=True),
                ),
                _row(
                    errors.IdempotencyUnavailable,
                    _fixed(grpc.StatusCode.UNAVAILABLE, "IDEMPOTENCY_UNAVAILABLE", retry=True),
                ),
            ]
        )
    )
)


def map_error(exc: errors.GatewayError) -> MappedError:
    """The status a caller sees for an expected failure. Messages never contain secrets."""
    for cls in type(exc).__mro__:
        mapper = ERROR_TABLE.get(cls)
        if mapper is not None:
            return mapper(exc)
    # Only a class missing from the table gets here: say so loudly rather than look expected.
    log.error("no status mapping for %s; answering INTERNAL", type(exc).__name__, exc_info=exc)
    return MappedError(grpc.StatusCode.INTERNAL, "internal error")
