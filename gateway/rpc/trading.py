"""TradingService: validated order entry through the OrderDesk, with an audit that cannot be abused.

Audit discipline: the request is validated first; a refused request leaves one compact `refused`
line (field names and reasons, never the values). A valid request leaves an `intent` line (bounded:
every value it holds passed validation) before anything is sent, and exactly one `outcome` line
after, also for calls cut by the drain. A failing audit sink refuses trading before upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from alp.v3 import trading_pb2 as pb
from alp.v3 import trading_pb2_grpc
from google.protobuf.message import Message

from gateway.audit import AuditLog
from gateway.core import rest_parsing, rest_requests
from gateway.core.models import Pair
from gateway.core.validation import (
    CancelByIds,
    CancelByPair,
    CancelTarget,
    OrderSpec,
    validate_cancel,
    validate_order,
    validate_pair,
)
from gateway.errors import AuditUnavailable, GatewayError, ValidationError
from gateway.exchange.order_desk import OrderDesk
from gateway.exchange.rest_client import AccountSession
from gateway.rpc import convert
from gateway.rpc.call import caller_var
from gateway.rpc.servicer_base import Context, UnaryServicerBase
from gateway.rpc.status_map import map_error

ResponseT = TypeVar("ResponseT", bound=Message)
log = logging.getLogger(__name__)
AUDIT_TEXT_MAX = 64  # longer caller-supplied text is recorded as its SHA-256


def bounded(text: str) -> str:
    if len(text) <= AUDIT_TEXT_MAX:
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()


def _order_record(spec: OrderSpec) -> dict[str, Any]:
    record: dict[str, Any] = {
        "pair": spec.pair,
        "side": spec.side.value,
        "type": spec.order_type.value,
        "wallet": spec.wallet_type.value,
        **rest_requests.order_terms(spec),
    }
    if spec.post_only:
        record["post_only"] = True
    if spec.client_order_id is not None:
        record["client_order_id"] = bounded(spec.client_order_id)
    return record


def _cancel_record(target: CancelTarget) -> dict[str, Any]:
    if isinstance(target, CancelByIds):
        return {"order_ids": list(target.ids)}
    if isinstance(target, CancelByPair):
        return {"pair": target.pair}
    return {"all": True}


class TradingServicer(UnaryServicerBase, trading_pb2_grpc.TradingServiceServicer):
    def __init__(
        self, *args: Any, desk: OrderDesk, audit: AuditLog | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._desk = desk
        self._audit = audit

    async def PlaceOrder(
        self, request: pb.PlaceOrderRequest, context: Context
    ) -> pb.PlaceOrderResponse:
        account = self._account(context)
        deadline = self._deadline(context)
        try:
            draft = convert.order_draft(request)
            spec = validate_order(draft, await self._rules(draft.pair, deadline))
        except ValidationError as exc:
            await self._refused("PlaceOrder", account, exc)
            raise
        record = self._record("PlaceOrder", account, _order_record(spec))
        return await self._audited(record, lambda: self._place(spec, account, deadline))

    async def _place(
        self, spec: OrderSpec, account: AccountSession, deadline: float
    ) -> pb.PlaceOrderResponse:
        placed = await self._desk.place(
            account, spec, caller=caller_var.get(), deadline=deadline, request_id=self._request_id()
        )
        return pb.PlaceOrderResponse(
            order_id=placed.order_ids[0],
            order_ids=list(placed.order_ids),
            client_order_id=spec.client_order_id or "",
            reconciled=placed.reconciled,
        )

    async def CancelOrders(
        self, request: pb.CancelOrdersRequest, context: Context
    ) -> pb.CancelOrdersResponse:
        account = self._account(context)
        kind = request.WhichOneof("target") or ""
        try:
            target = validate_cancel(
                kind,
                list(request.order_ids.ids) if kind == "order_ids" else [],
                request.pair if kind == "pair" else "",
            )
            if kind == "all" and not request.all:
                raise ValidationError("all", "must be true when set")
        except ValidationError as exc:
            await self._refused("CancelOrders", account, exc)
            raise
        deadline = self._deadline(context)
        record = self._record("CancelOrders", account, _cancel_record(target))
        return await self._audited(record, lambda: self._cancel(target, account, deadline))

    async def _cancel(
        self, target: CancelTarget, account: AccountSession, deadline: float
    ) -> pb.CancelOrdersResponse:
        result = await self._desk.cancel(
            account, target, deadline=deadline, request_id=self._request_id()
        )
        if result.reconciled_statuses is not None:
            return pb.CancelOrdersResponse(
                outcomes={
                    order_id: convert.cancel_outcome(
                        rest_parsing.cancel_outcome_of(order_id, status)
                    )
                    for order_id, status in result.reconciled_statuses.items()
                }
                if isinstance(target, CancelByIds)
                else {},
                accepted=not isinstance(target, CancelByIds),
                reconciled=True,
            )
        if not isinstance(target, CancelByIds) or result.payload is None:
            # cancel all / by pair answer 202 with no body; an empty 2xx to cancel-by-ids is ALP
            # taking the request without per-order results (API-NOTES: "202 with no body")
            return pb.CancelOrdersResponse(accepted=True)
        outcomes = rest_parsing.parse_cancel_result(result.payload)
        return pb.CancelOrdersResponse(
            outcomes={o.order_id: convert.cancel_outcome(o) for o in outcomes}
        )

    # -- helpers -------------------------------------------------------------------------------------
    async def _rules(self, pair: str, deadline: float) -> Pair | None:
        if not pair:
            return None  # validate_order reports the missing pair
        try:
            validate_pair(pair)
        except ValidationError:
            return None  # validate_order reports the bad syntax with every other violation
        try:
            return await self._upstream.pair_rules(pair, deadline=deadline)
        except KeyError:
            raise ValidationError("pair", f"ALP lists no pair {pair!r}") from None

    def _record(self, rpc: str, account: AccountSession, request: dict[str, Any]) -> dict[str, Any]:
        return {
            "rpc": rpc,
            "caller": bounded(caller_var.get()),
            "account": account.name,
            "request_id": bounded(self._request_id()),
            "request": request,
        }

    async def _refused(self, rpc: str, account: AccountSession, exc: ValidationError) -> None:
        """One compact line: which fields were refused and why, never the values."""
        if self._audit is None:
            return
        record = self._record(rpc, account, {})
        del record["request"]
        fields = [bounded(name) for name, _ in exc.violations][:20]
        line = {**record, "phase": "refused", "status": "INVALID_ARGUMENT", "fields": fields}
        try:
            await self._audit.write(line)
        except AuditUnavailable:
            log.error(
                "audit line for refused request %s could not be written", record["request_id"]
            )

    async def _intent(self, record: dict[str, Any]) -> None:
        """Write the intent line. Its write runs in a thread that finishes even if the call is
        cancelled meanwhile (the caller's deadline during a slow fsync): then the line is on disk
        and gets its outcome line too (CANCELLED, nothing sent)."""
        assert self._audit is not None
        writing = asyncio.get_running_loop().create_task(
            self._audit.write({**record, "phase": "intent"})
        )
        try:
            await asyncio.shield(writing)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await writing
                await self._audit.write(
                    {**record, "phase": "outcome", "status": "CANCELLED", "sent": False}
                )
            raise

    async def _audited(
        self, record: dict[str, Any], action: Callable[[], Awaitable[ResponseT]]
    ) -> ResponseT:
        """Intent line before anything is sent (a failing sink refuses the call), outcome after.

        An outcome line that cannot be written is logged but does not fail the call: the order
        may already exist, and failing would invite a duplicate.
        """
        if self._audit is None:
            return await action()
        await self._intent(record)
        started = time.monotonic()
        outcome: dict[str, Any] = {"status": "INTERNAL"}
        try:
            response = await action()
            outcome = {"status": "OK", "response": _response_record(response)}
            return response
        except GatewayError as exc:
            mapped = map_error(exc)
            outcome = {"status": mapped.code.name, "error": mapped.message[:300]}
            raise
        except BaseException as exc:
            cancelled = not isinstance(exc, Exception)
            outcome = {"status": "CANCELLED" if cancelled else "INTERNAL"}
            raise
        finally:
            latency_ms = round((time.monotonic() - started) * 1000, 3)
            try:
                await self._audit.write(
                    {**record, "phase": "outcome", **outcome, "latency_ms": latency_ms}
                )
            except (AuditUnavailable, RuntimeError):
                log.error("audit outcome for request %s could not be written", record["request_id"])


def _response_record(response: Message) -> dict[str, Any]:
    if isinstance(response, pb.PlaceOrderResponse):
        return {"order_ids": list(response.order_ids), "reconciled": response.reconciled}
    if isinstance(response, pb.CancelOrdersResponse):
        return {
            "outcomes": {
                str(k): pb.CancelStatus.Name(v.status) for k, v in response.outcomes.items()
            },
            "accepted": response.accepted,
            "reconciled": response.reconciled,
        }
    return {}
