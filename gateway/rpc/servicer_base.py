"""What every unary servicer shares: the caller's deadline, request id and selected account."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from gateway.errors import ValidationError
from gateway.exchange.rest_client import AccountSession
from gateway.exchange.upstream import Upstream
from gateway.rpc.call import ACCOUNT_HEADER, deadline_of, metadata_value, request_id_var

if TYPE_CHECKING:
    Context = grpc.aio.ServicerContext[Any, Any]
else:  # generic only in the stubs
    Context = grpc.aio.ServicerContext


class UnaryServicerBase:
    def __init__(self, upstream: Upstream, *, deadline_margin_s: float, default_timeout_s: float):
        self._upstream = upstream
        self._margin = deadline_margin_s
        self._default_timeout = default_timeout_s

    def _deadline(self, context: Context) -> float:
        return deadline_of(
            context.time_remaining(), margin_s=self._margin, default_s=self._default_timeout
        )

    @staticmethod
    def _request_id() -> str:
        return request_id_var.get()

    def _account(self, context: Context) -> AccountSession:
        return self._upstream.account(metadata_value(context, ACCOUNT_HEADER))


def optional_limit(request: Any, field: str, maximum: int) -> int | None:
    """proto3 `optional` int: unset means ALP's default; an explicit value must be in 1..maximum."""
    if not request.HasField(field):
        return None
    value = getattr(request, field)
    if not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValidationError(field, f"must be between 1 and {maximum}")
    return value
