"""Errors to gRPC statuses: one table for ALP HTTP/ALP codes, rich details via google.rpc."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2, status_pb2

from gateway import errors

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


def map_error(exc: errors.GatewayError) -> MappedError:
    """The status a caller sees for an expected failure. Messages never contain secrets."""
    if isinstance(exc, errors.ValidationError):
        return _validation(exc)
    if isinstance(exc, errors.UpstreamHttpError):
        return _upstream_http(exc)
    if isinstance(exc, errors.AuthFailed):
        return MappedError(
            grpc.StatusCode.UNAUTHENTICATED,
            "ALP refused the gateway's API key for this account",
            [
                _error_info(
                    exc.code, http_status=str(exc.http_status), alp_message=exc.message[:500]
                )
            ],
        )
    if isinstance(exc, errors.UpstreamTimeout):
        return MappedError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "ALP did not answer within the deadline",
            [_error_info("UPSTREAM_TIMEOUT", GATEWAY_DOMAIN)],
        )
    if isinstance(exc, errors.UpstreamUnavailable):
        return MappedError(
            grpc.StatusCode.UNAVAILABLE,
            f"ALP is unreachable: {exc}",
            [_error_info("UPSTREAM_UNAVAILABLE", GATEWAY_DOMAIN), _retry_info(DEFAULT_RETRY_S)],
        )
    if isinstance(exc, errors.UpstreamProtocolError):
        return MappedError(
            grpc.StatusCode.INTERNAL,
            "ALP answered in an unexpected format",
            [_error_info("UPSTREAM_PROTOCOL", GATEWAY_DOMAIN)],
        )
    if isinstance(exc, errors.RateLimited):
        return MappedError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"gateway rate limit {exc.bucket} reached",
            [
                _error_info("RATE_LIMITED", GATEWAY_DOMAIN, bucket=exc.bucket),
                _retry_info(exc.retry_after),
            ],
        )
    if isinstance(exc, errors.OrderOutcomeUnknown):
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
    if isinstance(exc, errors.OrderNotPlaced):
        cause = map_error(exc.cause)
        kept = [d for d in cause.details if not isinstance(d, error_details_pb2.ErrorInfo)]
        return MappedError(
            cause.code,
            f"{cause.message}; verified by ALP's order list: {str(exc).rpartition(': ')[2]}",
            [_error_info(exc.reason, GATEWAY_DOMAIN), *kept],
        )
    if isinstance(exc, errors.Unauthenticated):
        return MappedError(grpc.StatusCode.UNAUTHENTICATED, str(exc))
    if isinstance(exc, errors.PermissionDenied):
        details: list[object] = []
        if exc.scope:
            details.append(_error_info("MISSING_SCOPE", GATEWAY_DOMAIN, scope=exc.scope))
        return MappedError(grpc.StatusCode.PERMISSION_DENIED, str(exc), details)
    if isinstance(exc, errors.UnknownAccount):
        return MappedError(
            grpc.StatusCode.NOT_FOUND,
            str(exc),
            [_error_info("UNKNOWN_ACCOUNT", GATEWAY_DOMAIN, account=exc.account[:64])],
        )
    if isinstance(exc, errors.SlowConsumer):
        return MappedError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
    if isinstance(exc, errors.AuditUnavailable):
        return MappedError(
            grpc.StatusCode.UNAVAILABLE,
            str(exc),
            [_error_info("AUDIT_UNAVAILABLE", GATEWAY_DOMAIN), _retry_info(DEFAULT_RETRY_S)],
        )
    if isinstance(exc, errors.TopicRefused):
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
    if isinstance(exc, errors.PrivateLoginRefused):
        return MappedError(
            grpc.StatusCode.UNAUTHENTICATED,
            str(exc),
            [_error_info("WS_LOGIN_REFUSED", ALP_DOMAIN, account=exc.account[:64])],
        )
    if isinstance(exc, errors.Draining):
        return MappedError(grpc.StatusCode.UNAVAILABLE, str(exc), [_retry_info(DEFAULT_RETRY_S)])
    return MappedError(grpc.StatusCode.INTERNAL, "internal error")
