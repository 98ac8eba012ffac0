"""The exception-class table of rpc/status_map covers every class of gateway/errors.py, by MRO."""

from __future__ import annotations

import inspect
import logging

import grpc
import pytest
from google.rpc import error_details_pb2

from gateway import errors
from gateway.rpc.status_map import ERROR_TABLE, map_error

# Bases that are never raised themselves; each has concrete subclasses with their own rows.
ABSTRACT = frozenset(
    {errors.GatewayError, errors.CallerError, errors.UpstreamError, errors.StreamError}
)


def error_classes() -> list[type[errors.GatewayError]]:
    return [
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.GatewayError) and cls.__module__ == errors.__name__
    ]


# One instance of every concrete class and the status it must map to.
SAMPLES: list[tuple[errors.GatewayError, grpc.StatusCode]] = [
    (errors.ConfigError("listen.port", "bad"), grpc.StatusCode.INTERNAL),
    (errors.ValidationError("pair", "bad"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.Unauthenticated("who"), grpc.StatusCode.UNAUTHENTICATED),
    (errors.PermissionDenied("no", scope="trade"), grpc.StatusCode.PERMISSION_DENIED),
    (errors.UnknownAccount("x"), grpc.StatusCode.NOT_FOUND),
    (errors.UpstreamHttpError(400, "1016", "unknown pair"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.UpstreamUnavailable("refused"), grpc.StatusCode.UNAVAILABLE),
    (errors.UpstreamTimeout("slow"), grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.UpstreamProtocolError("junk"), grpc.StatusCode.INTERNAL),
    (errors.AuthFailed(401, "INVALID_SECRET", "bad"), grpc.StatusCode.UNAUTHENTICATED),
    (errors.OrderOutcomeUnknown("cid", (1, 2)), grpc.StatusCode.FAILED_PRECONDITION),
    (errors.OrderNotPlaced(errors.UpstreamTimeout("t")), grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.SlowConsumer("trades", 3), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Draining(), grpc.StatusCode.UNAVAILABLE),
    (
        errors.TopicRefused("trade.X_Y", "Topic does not exist", not_found=True),
        grpc.StatusCode.NOT_FOUND,
    ),
    (
        errors.TopicRefused("trade.", "Invalid topic", not_found=False),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    (errors.PrivateLoginRefused("demo", "revoked"), grpc.StatusCode.UNAUTHENTICATED),
    (errors.RateLimited("public", 0.5), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.AuditUnavailable("disk full"), grpc.StatusCode.UNAVAILABLE),
    (errors.IdempotencyUnavailable("ConnectionError"), grpc.StatusCode.UNAVAILABLE),
]


def test_the_module_walk_finds_the_tree() -> None:
    names = {cls.__name__ for cls in error_classes()}
    assert {"GatewayError", "ValidationError", "TopicRefused", "AuditUnavailable"} <= names
    assert len(names) >= 20


@pytest.mark.parametrize("cls", error_classes(), ids=lambda cls: cls.__name__)
def test_every_concrete_error_class_has_its_own_row(cls: type[errors.GatewayError]) -> None:
    if cls in ABSTRACT:
        assert cls not in ERROR_TABLE, f"{cls.__name__} is listed as abstract but has a row"
        assert any(issubclass(other, cls) and other is not cls for other in error_classes())
        return
    assert cls in ERROR_TABLE, f"{cls.__name__} has no row in status_map.ERROR_TABLE"


def test_the_table_has_no_rows_for_classes_outside_the_tree() -> None:
    assert set(ERROR_TABLE) <= set(error_classes())
    assert set(error_classes()) >= ABSTRACT


def test_samples_cover_every_concrete_class() -> None:
    assert {type(error) for error, _ in SAMPLES} == set(error_classes()) - ABSTRACT


@pytest.mark.parametrize(
    "error,code", SAMPLES, ids=[f"{type(e).__name__}-{c.name}" for e, c in SAMPLES]
)
def test_each_sample_maps_to_its_status(error: errors.GatewayError, code: grpc.StatusCode) -> None:
    mapped = map_error(error)
    assert mapped.code == code
    assert mapped.to_status().code == code


def test_a_subclass_of_a_listed_class_inherits_its_row() -> None:
    class PairGone(errors.TopicRefused):
        pass

    mapped = map_error(PairGone("trade.X_Y", "Topic does not exist", not_found=True))
    assert mapped.code == grpc.StatusCode.NOT_FOUND
    (info,) = mapped.details
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.reason == "TOPIC_NOT_FOUND"


def test_an_unlisted_class_is_internal_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Forgotten(errors.GatewayError):
        pass

    with caplog.at_level(logging.ERROR, logger="gateway.rpc.status_map"):
        mapped = map_error(Forgotten("secret-ish detail"))
    assert mapped.code == grpc.StatusCode.INTERNAL
    assert mapped.message == "internal error" and not mapped.details
    assert any("Forgotten" in record.getMessage() for record in caplog.records)
