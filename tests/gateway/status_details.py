"""Reading google.rpc details off a failed grpc.aio call, as a Go or Java caller would."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2, status_pb2

_DETAILS_KEY = "grpc-status-details-bin"


@dataclass
class Details:
    code: grpc.StatusCode
    message: str
    error_info: error_details_pb2.ErrorInfo | None = None
    bad_request: error_details_pb2.BadRequest | None = None
    retry_info: error_details_pb2.RetryInfo | None = None
    trailing: dict[str, str] = field(default_factory=dict)

    @property
    def fields(self) -> list[str]:
        if self.bad_request is None:
            return []
        return [v.field for v in self.bad_request.field_violations]


def details_of(error: grpc.aio.AioRpcError) -> Details:
    trailing = {k: v for k, v in (error.trailing_metadata() or ()) if isinstance(v, str)}
    result = Details(error.code(), error.details() or "", trailing=trailing)
    for key, value in error.trailing_metadata() or ():
        if key != _DETAILS_KEY:
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            for cls, attr in (
                (error_details_pb2.ErrorInfo, "error_info"),
                (error_details_pb2.BadRequest, "bad_request"),
                (error_details_pb2.RetryInfo, "retry_info"),
            ):
                if detail.Is(cls.DESCRIPTOR):
                    message = cls()
                    detail.Unpack(message)
                    setattr(result, attr, message)
    return result
