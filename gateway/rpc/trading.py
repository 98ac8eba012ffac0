"""TradingService: validated, signed order entry with reconciliation of ambiguous failures."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from alp.v3 import trading_pb2 as pb
from alp.v3 import trading_pb2_grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from gateway.audit import AuditLog
from gateway.core import rest_parsing, rest_requests
from gateway.core.validation import (
    PairRules,
    validate_cancel,
    validate_order,
    validate_pair,
)
from gateway.errors import (
    AuditUnavailable,
    GatewayError,
    OrderOutcomeUnknown,
    UpstreamError,
    UpstreamHttpError,
    UpstreamTimeout,
    UpstreamUnavailable,
    ValidationError,
)
from gateway.exchange.rest_client import AccountSession
from gateway.rpc import convert
from gateway.rpc.call import ACCOUNT_HEADER, caller_var, metadata_value
from gateway.rpc.servicer_base import Context, UnaryServicerBase
from gateway.rpc.status_map import map_error

ResponseT = TypeVar("ResponseT", bound=Message)

log = logging.getLogger(__name__)

# Part of the caller's remaining time held back from PlaceOrder's upstream call so that an
# ambiguous failure can still be reconciled (ListOrders) before the caller's deadline.
RECONCILE_SHARE = 0.3
RECONCILE_MAX_S = 2.0
RECONCILE_MIN_S = 0.5
RECONCILE_LOOKUPS = 2
RECONCILE_PAUSE_S = 0.2


def _is_ambiguous(exc: UpstreamError) -> bool:
    """True when the order may exist although the call failed."""
    if isinstance(exc, UpstreamTimeout):
        return True
    if isinstance(exc, UpstreamUnavailable):
        return exc.maybe_sent
    return isinstance(exc, UpstreamHttpError) and exc.http_status in (500, 502, 504)


class TradingServicer(UnaryServicerBase, trading_pb2_grpc.TradingServiceServicer):
    def __init__(
        self,
        *args: Any,
        wallet_spelling: str = "docs",
        audit: AuditLog | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._wallet_spelling = wallet_spelling
        self._audit = audit

    async def PlaceOrder(
        self, request: pb.PlaceOrderRequest, context: Context
    ) -> pb.PlaceOrderResponse:
        return await self._audited("PlaceOrder", request, context, self._place_order)

    async def CancelOrders(
        self, request: pb.CancelOrdersRequest, context: Context
    ) -> pb.CancelOrdersResponse:
        return await self._audited("CancelOrders", request, context, self._cancel_orders)

    async def _audited(
        self,
        rpc: str,
        request: Message,
        context: Context,
        action: Callable[[Any, Context], Awaitable[ResponseT]],
    ) -> ResponseT:
        """Intent line before anything happens (a failing sink refuses the call), outcome after.

        An outcome line that cannot be written is logged but does not fail the call: the order
        may already exist, and failing would invite a duplicate.
        """
        if self._audit is None:
            return await action(request, context)
        record: dict[str, Any] = {
            "rpc": rpc,
            "caller": caller_var.get(),
            "account": metadata_value(context, ACCOUNT_HEADER) or self._upstream.default_account,
            "request_id": self._request_id(),
            "request": MessageToDict(request, preserving_proto_field_name=True),
        }
        await self._audit.write({**record, "phase": "intent"})
        started = time.monotonic()
        outcome: dict[str, Any] = {"status": "INTERNAL"}
        try:
            response = await action(request, context)
            outcome = {
                "status": "OK",
                "response": MessageToDict(response, preserving_proto_field_name=True),
            }
            return response
        except GatewayError as exc:
            outcome = {"status": map_error(exc).code.name, "error": str(exc)[:300]}
            raise
        finally:
            latency_ms = round((time.monotonic() - started) * 1000, 3)
            try:
                await self._audit.write(
                    {**record, "phase": "outcome", **outcome, "latency_ms": latency_ms}
                )
            except AuditUnavailable:
                log.error("audit outcome for request %s could not be written", record["request_id"])

    async def _place_order(
        self, request: pb.PlaceOrderRequest, context: Context
    ) -> pb.PlaceOrderResponse:
        draft = convert.order_draft(request)
        account = self._account(context)
        deadline = self._deadline(context)
        rules = await self._rules(draft.pair, deadline)
        spec = validate_order(draft, rules)
        client_order_id = spec.client_order_id or f"gw-{uuid.uuid4().hex[:24]}"
        spec = convert.with_client_order_id(spec, client_order_id)
        body = rest_requests.place_order(spec, wallet_spelling=self._wallet_spelling)
        remaining = deadline - time.monotonic()
        reserve = min(RECONCILE_MAX_S, max(RECONCILE_MIN_S, remaining * RECONCILE_SHARE))
        send_deadline = deadline - reserve if remaining > 2 * reserve else deadline
        try:
            payload = await self._upstream.private(
                account, body, deadline=send_deadline, request_id=self._request_id()
            )
        except UpstreamError as exc:
            if not _is_ambiguous(exc):
                raise
            log.warning(
                "PlaceOrder outcome ambiguous (%s); reconciling client_order_id %s",
                type(exc).__name__,
                client_order_id,
            )
            order_id = await self._reconcile(account, client_order_id, deadline)
            if order_id is None:
                raise
            return pb.PlaceOrderResponse(
                order_id=order_id,
                order_ids=[order_id],
                client_order_id=client_order_id,
                reconciled=True,
            )
        ids = rest_parsing.parse_place_order(payload)
        return pb.PlaceOrderResponse(
            order_id=ids[0], order_ids=ids, client_order_id=client_order_id
        )

    async def _rules(self, pair: str, deadline: float) -> PairRules | None:
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

    async def _reconcile(
        self, account: AccountSession, client_order_id: str, deadline: float
    ) -> int | None:
        """Find the order by client_order_id; None if ALP certainly does not list it."""
        for attempt in range(RECONCILE_LOOKUPS):
            if attempt:
                await asyncio.sleep(RECONCILE_PAUSE_S)
            try:
                payload = await self._upstream.private(
                    account, rest_requests.orders(), deadline=deadline
                )
            except UpstreamError as exc:
                raise OrderOutcomeUnknown(client_order_id) from exc
            for order in rest_parsing.parse_orders(payload):
                if order.client_order_id == client_order_id:
                    log.info("reconciled client_order_id %s as order %d", client_order_id, order.id)
                    return int(order.id)
        return None

    async def _cancel_orders(
        self, request: pb.CancelOrdersRequest, context: Context
    ) -> pb.CancelOrdersResponse:
        kind = request.WhichOneof("target") or ""
        target = validate_cancel(
            kind,
            list(request.order_ids.ids) if kind == "order_ids" else [],
            request.pair if kind == "pair" else "",
        )
        if kind == "all" and not request.all:
            raise ValidationError("all", "must be true when set")
        account = self._account(context)
        payload = await self._upstream.private(
            account,
            rest_requests.cancel_orders(target),
            deadline=self._deadline(context),
            request_id=self._request_id(),
        )
        if kind != "order_ids" or payload is None:
            # cancel all / by pair answer 202 with no body; an empty 2xx to cancel-by-ids is ALP
            # taking the request without per-order results (API-NOTES: "202 with no body")
            return pb.CancelOrdersResponse(accepted=True)
        outcomes = rest_parsing.parse_cancel_result(payload)
        return pb.CancelOrdersResponse(
            outcomes={o.order_id: convert.cancel_outcome(o) for o in outcomes}
        )
