"""AccountService: private read-only ALP REST endpoints of the selected account."""

from __future__ import annotations

from typing import Any

from alp.v3 import account_pb2 as pb
from alp.v3 import account_pb2_grpc

from gateway.core import rest_parsing, rest_requests
from gateway.core.rest_requests import RestRequest
from gateway.core.validation import validate_pair, validate_time_range
from gateway.errors import ValidationError
from gateway.rpc import convert
from gateway.rpc.servicer_base import Context, UnaryServicerBase, optional_limit

MAX_ACCOUNT_TRADES = 100
MAX_ACTIVITY = 1000
MAX_OFFSET = 1_000_000


class AccountServicer(UnaryServicerBase, account_pb2_grpc.AccountServiceServicer):
    async def _get(self, request: RestRequest, context: Context) -> Any:
        account = self._account(context)
        return await self._upstream.private(
            account, request, deadline=self._deadline(context), request_id=self._request_id()
        )

    async def ListAccounts(
        self, request: pb.ListAccountsRequest, context: Context
    ) -> pb.ListAccountsResponse:
        payload = await self._get(
            rest_requests.accounts(include_subaccounts=request.include_subaccounts), context
        )
        return pb.ListAccountsResponse(
            accounts=[convert.account(a) for a in rest_parsing.parse_accounts(payload)]
        )

    async def ListBalances(
        self, request: pb.ListBalancesRequest, context: Context
    ) -> pb.ListBalancesResponse:
        payload = await self._get(rest_requests.balances(), context)
        return pb.ListBalancesResponse(
            balances=[convert.balance(b) for b in rest_parsing.parse_balances(payload)]
        )

    async def ListFeeRules(
        self, request: pb.ListFeeRulesRequest, context: Context
    ) -> pb.ListFeeRulesResponse:
        payload = await self._get(rest_requests.fee_info(), context)
        return pb.ListFeeRulesResponse(
            fee_rules=[convert.fee_rule(f) for f in rest_parsing.parse_fee_rules(payload)]
        )

    async def ListOrders(
        self, request: pb.ListOrdersRequest, context: Context
    ) -> pb.ListOrdersResponse:
        payload = await self._get(rest_requests.orders(), context)
        return pb.ListOrdersResponse(
            orders=[convert.order(o) for o in rest_parsing.parse_orders(payload)]
        )

    async def ListAccountTrades(
        self, request: pb.ListAccountTradesRequest, context: Context
    ) -> pb.ListAccountTradesResponse:
        pair = validate_pair(request.pair) if request.HasField("pair") else None
        side = convert.side_filter(request.side)
        start = convert.unix_seconds(request, "start_time")
        end = convert.unix_seconds(request, "end_time")
        validate_time_range(start, end, "start_time", "end_time")
        limit = optional_limit(request, "limit", MAX_ACCOUNT_TRADES)
        payload = await self._get(
            rest_requests.account_trades(
                pair=pair, side=side, start_time=start, end_time=end, limit=limit
            ),
            context,
        )
        return pb.ListAccountTradesResponse(
            trades=[convert.account_trade(t) for t in rest_parsing.parse_account_trades(payload)]
        )

    async def ListActivity(
        self, request: pb.ListActivityRequest, context: Context
    ) -> pb.ListActivityResponse:
        limit = optional_limit(request, "limit", MAX_ACTIVITY)
        offset = request.offset if request.HasField("offset") else None
        if offset is not None and not 0 <= offset <= MAX_OFFSET:
            raise ValidationError("offset", f"must be between 0 and {MAX_OFFSET}")
        payload = await self._get(rest_requests.activity(limit=limit, offset=offset), context)
        return pb.ListActivityResponse(
            entries=[convert.activity(a) for a in rest_parsing.parse_activity(payload)]
        )
