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


GATEWAY = "gateway.alp.internal"
# Pinned from the isinstance chain the table replaced: message and every detail, exactly.
EXACT = [
    (errors.ConfigError("listen.port", "bad"), "INTERNAL", "internal error", []),
    (
        errors.ValidationError("pair", "bad"),
        "INVALID_ARGUMENT",
        "invalid request: pair: bad",
        [("BadRequest", "pair", "bad")],
    ),
    (errors.Unauthenticated("who"), "UNAUTHENTICATED", "who", []),
    (
        errors.PermissionDenied("no", scope="trade"),
        "PERMISSION_DENIED",
        "no",
        [("MISSING_SCOPE", GATEWAY, {"scope": "trade"})],
    ),
    (errors.PermissionDenied("no"), "PERMISSION_DENIED", "no", []),
    (
        errors.UnknownAccount("x"),
        "NOT_FOUND",
        "unknown ALP account 'x'",
        [("UNKNOWN_ACCOUNT", GATEWAY, {"account": "x"})],
    ),
    (
        errors.UpstreamHttpError(400, "1016", "unknown pair"),
        "INVALID_ARGUMENT",
        "ALP: unknown pair",
        [("1016", "alp.com", {"alp_message": "unknown pair", "http_status": "400"})],
    ),
    (
        errors.UpstreamUnavailable("refused"),
        "UNAVAILABLE",
        "ALP is unreachable: refused",
        [("UPSTREAM_UNAVAILABLE", GATEWAY, {}), ("retry", 1, 0)],
    ),
    (
        errors.UpstreamTimeout("slow"),
        "DEADLINE_EXCEEDED",
        "ALP did not answer within the deadline",
        [("UPSTREAM_TIMEOUT", GATEWAY, {})],
    ),
    (
        errors.UpstreamProtocolError("junk"),
        "INTERNAL",
        "ALP answered in an unexpected format",
        [("UPSTREAM_PROTOCOL", GATEWAY, {})],
    ),
    (
        errors.AuthFailed(401, "INVALID_SECRET", "bad"),
        "UNAUTHENTICATED",
        "ALP refused the gateway's API key for this account",
        [("INVALID_SECRET", "alp.com", {"alp_message": "bad", "http_status": "401"})],
    ),
    (
        errors.OrderOutcomeUnknown("cid", (1, 2)),
        "FAILED_PRECONDITION",
        "order outcome unknown (ambiguous failure); candidate order ids 1, 2; "
        "retry with the same client_order_id or check ListOrders",
        [
            (
                "ORDER_OUTCOME_UNKNOWN",
                GATEWAY,
                {"client_order_id": "cid", "candidate_order_ids": "1,2"},
            )
        ],
    ),
    (
        errors.OrderNotPlaced(errors.UpstreamTimeout("t")),
        "DEADLINE_EXCEEDED",
        "ALP did not answer within the deadline; verified by ALP's order list: no order was placed",
        [("ORDER_NOT_PLACED", GATEWAY, {})],
    ),
    (
        errors.OrderNotPlaced(
            errors.UpstreamHttpError(429, "X", "y", retry_after=2), reason="NOTHING_CANCELLED"
        ),
        "RESOURCE_EXHAUSTED",
        "ALP: y; verified by ALP's order list: nothing was cancelled",
        [("NOTHING_CANCELLED", GATEWAY, {}), ("retry", 2, 0)],
    ),
    (
        errors.SlowConsumer("trades", 3),
        "RESOURCE_EXHAUSTED",
        "consumer too slow on trades: queue overflowed, 3 events could not be delivered",
        [],
    ),
    (errors.Draining(), "UNAVAILABLE", "gateway draining, reconnect", [("retry", 1, 0)]),
    (
        errors.TopicRefused("trade.X_Y", "Topic does not exist", not_found=True),
        "NOT_FOUND",
        "topic trade.X_Y does not exist upstream: Topic does not exist",
        [
            (
                "TOPIC_NOT_FOUND",
                "alp.com",
                {"alp_message": "Topic does not exist", "topic": "trade.X_Y"},
            )
        ],
    ),
    (
        errors.TopicRefused("trade.", "Invalid topic", not_found=False),
        "INVALID_ARGUMENT",
        "topic trade. is not a valid ALP topic: Invalid topic",
        [("TOPIC_INVALID", "alp.com", {"alp_message": "Invalid topic", "topic": "trade."})],
    ),
    (
        errors.PrivateLoginRefused("demo", "revoked"),
        "UNAUTHENTICATED",
        "ALP refused the WebSocket login of account demo: revoked",
        [("WS_LOGIN_REFUSED", "alp.com", {"account": "demo"})],
    ),
    (
        errors.RateLimited("public", 0.5),
        "RESOURCE_EXHAUSTED",
        "gateway rate limit public reached",
        [("RATE_LIMITED", GATEWAY, {"bucket": "public"}), ("retry", 0, 500_000_000)],
    ),
    (
        errors.AuditUnavailable("disk full"),
        "UNAVAILABLE",
        "audit trail unavailable (disk full); trading refused until it is fixed",
        [("AUDIT_UNAVAILABLE", GATEWAY, {}), ("retry", 1, 0)],
    ),
]


def _detail(detail: object) -> tuple[object, ...]:
    if isinstance(detail, error_details_pb2.ErrorInfo):
        return (detail.reason, detail.domain, dict(detail.metadata))
    if isinstance(detail, error_details_pb2.RetryInfo):
        return ("retry", detail.retry_delay.seconds, detail.retry_delay.nanos)
    assert isinstance(detail, error_details_pb2.BadRequest)
    (violation,) = detail.field_violations
    return ("BadRequest", violation.field, violation.description)


@pytest.mark.parametrize(
    "error,code,message,details", EXACT, ids=[f"{type(e).__name__}-{c}" for e, c, _, _ in EXACT]
)
def test_exact_message_and_details(
    error: errors.GatewayError, code: str, message: str, details: list[tuple[object, ...]]
) -> None:
    mapped = map_error(error)
    assert (mapped.code.name, mapped.message) == (code, message)
    assert [_detail(d) for d in mapped.details] == details
