"""Every row of the error table: ALP HTTP status / code -> gRPC status and google.rpc details."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import error_details_pb2

from gateway import errors
from gateway.rpc.status_map import map_error

ROWS = [
    (
        errors.UpstreamHttpError(400, "1003", "invalid order amount"),
        grpc.StatusCode.INVALID_ARGUMENT,
        False,
    ),
    (
        errors.UpstreamHttpError(400, "2002", "insufficient funds"),
        grpc.StatusCode.FAILED_PRECONDITION,
        False,
    ),
    (errors.UpstreamHttpError(400, "1011", "order not found"), grpc.StatusCode.NOT_FOUND, False),
    (
        errors.UpstreamHttpError(401, "UNAUTHORIZED", "invalid token"),
        grpc.StatusCode.UNAUTHENTICATED,
        False,
    ),
    (
        errors.UpstreamHttpError(403, "FORBIDDEN", "pair not allowed"),
        grpc.StatusCode.PERMISSION_DENIED,
        False,
    ),
    (errors.UpstreamHttpError(404, "NOT_FOUND", "not found"), grpc.StatusCode.NOT_FOUND, False),
    (
        errors.UpstreamHttpError(429, "TOO_MANY_REQUESTS", "slow down", retry_after=3),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        True,
    ),
    (errors.UpstreamHttpError(500, "3004", "internal"), grpc.StatusCode.UNAVAILABLE, False),
    (errors.UpstreamHttpError(502, "", "<html>"), grpc.StatusCode.UNAVAILABLE, False),
    (
        errors.UpstreamHttpError(503, "3003", "maintenance", retry_after=30),
        grpc.StatusCode.UNAVAILABLE,
        True,
    ),
    (errors.UpstreamHttpError(504, "", ""), grpc.StatusCode.UNAVAILABLE, False),
]


@pytest.mark.parametrize(
    "error,code,retry", ROWS, ids=[f"{e.http_status}-{e.code}" for e, _, _ in ROWS]
)
def test_alp_errors(error: errors.UpstreamHttpError, code: grpc.StatusCode, retry: bool) -> None:
    mapped = map_error(error)
    assert mapped.code == code
    infos = [d for d in mapped.details if isinstance(d, error_details_pb2.ErrorInfo)]
    assert len(infos) == 1
    info = infos[0]
    assert info.domain == "alp.com" and info.reason == (error.code or "UNKNOWN")
    assert info.metadata["http_status"] == str(error.http_status)
    retries = [d for d in mapped.details if isinstance(d, error_details_pb2.RetryInfo)]
    assert bool(retries) is retry
    if retry:
        assert retries[0].retry_delay.seconds == error.retry_after
    status = mapped.to_status()
    assert status.code == code and any(
        k == "grpc-status-details-bin" for k, _ in status.trailing_metadata
    )


@pytest.mark.parametrize(
    "error,code",
    [
        (errors.UpstreamTimeout("slow"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (errors.UpstreamUnavailable("refused"), grpc.StatusCode.UNAVAILABLE),
        (errors.UpstreamProtocolError("junk"), grpc.StatusCode.INTERNAL),
        (errors.AuthFailed(401, "INVALID_SECRET", "bad"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.ValidationError("pair", "bad"), grpc.StatusCode.INVALID_ARGUMENT),
        (errors.RateLimited("public", 0.5), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.SlowConsumer("trades", 10), grpc.StatusCode.RESOURCE_EXHAUSTED),
        (errors.Draining(), grpc.StatusCode.UNAVAILABLE),
        (errors.UnknownAccount("x"), grpc.StatusCode.NOT_FOUND),
        (errors.PermissionDenied("no", scope="trade"), grpc.StatusCode.PERMISSION_DENIED),
        (errors.Unauthenticated("who"), grpc.StatusCode.UNAUTHENTICATED),
        (errors.AuditUnavailable("disk full"), grpc.StatusCode.UNAVAILABLE),
        (errors.OrderOutcomeUnknown("cid"), grpc.StatusCode.FAILED_PRECONDITION),
        (errors.OrderNotPlaced(errors.UpstreamTimeout("t")), grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
def test_gateway_errors(error: errors.GatewayError, code: grpc.StatusCode) -> None:
    assert map_error(error).code == code
