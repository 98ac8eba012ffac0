"""MarketDataService: public ALP REST endpoints as unary RPCs."""

from __future__ import annotations

from typing import Any

from alp.v3 import market_data_pb2 as pb
from alp.v3 import market_data_pb2_grpc

from gateway.core import rest_parsing, rest_requests
from gateway.core.rest_requests import RestRequest
from gateway.core.validation import validate_pair, validate_time_range
from gateway.rpc import convert
from gateway.rpc.servicer_base import Context, UnaryServicerBase, optional_limit

MAX_BOOK_LEVELS = 20
MAX_CANDLES = 500
MAX_TRADES = 1000


class MarketDataServicer(UnaryServicerBase, market_data_pb2_grpc.MarketDataServiceServicer):
    async def _get(self, request: RestRequest, context: Context) -> Any:
        return await self._upstream.public(
            request, deadline=self._deadline(context), request_id=self._request_id()
        )

    async def GetServerTime(
        self, request: pb.GetServerTimeRequest, context: Context
    ) -> pb.GetServerTimeResponse:
        payload = await self._get(rest_requests.server_time(), context)
        server_time = rest_parsing.parse_server_time(payload)
        return pb.GetServerTimeResponse(server_time=convert.timestamp(server_time.server_time))

    async def GetCurrencyRates(
        self, request: pb.GetCurrencyRatesRequest, context: Context
    ) -> pb.GetCurrencyRatesResponse:
        payload = await self._get(rest_requests.currency_rates(), context)
        rates = rest_parsing.parse_currency_rates(payload)
        return pb.GetCurrencyRatesResponse(rates={r.currency: convert.dec(r.rate) for r in rates})

    async def ListCurrencies(
        self, request: pb.ListCurrenciesRequest, context: Context
    ) -> pb.ListCurrenciesResponse:
        payload = await self._get(rest_requests.currencies(), context)
        return pb.ListCurrenciesResponse(
            currencies=[convert.currency(c) for c in rest_parsing.parse_currencies(payload)]
        )

    async def ListPairs(
        self, request: pb.ListPairsRequest, context: Context
    ) -> pb.ListPairsResponse:
        currency1 = _optional_currency(request, "currency1")
        currency2 = _optional_currency(request, "currency2")
        payload = await self._get(
            rest_requests.pairs(currency1=currency1, currency2=currency2), context
        )
        return pb.ListPairsResponse(
            pairs=[convert.pair(p) for p in rest_parsing.parse_pairs(payload)]
        )

    async def ListTickers(
        self, request: pb.ListTickersRequest, context: Context
    ) -> pb.ListTickersResponse:
        pair = validate_pair(request.pair) if request.HasField("pair") else None
        payload = await self._get(rest_requests.tickers(pair=pair), context)
        return pb.ListTickersResponse(
            tickers=[convert.ticker(t) for t in rest_parsing.parse_tickers(payload)]
        )

    async def GetOrderBook(
        self, request: pb.GetOrderBookRequest, context: Context
    ) -> pb.GetOrderBookResponse:
        pair = validate_pair(request.pair)
        limit_buy = optional_limit(request, "limit_buy", MAX_BOOK_LEVELS)
        limit_sell = optional_limit(request, "limit_sell", MAX_BOOK_LEVELS)
        payload = await self._get(
            rest_requests.order_book(pair, limit_buy=limit_buy, limit_sell=limit_sell), context
        )
        book = rest_parsing.parse_order_book(payload)
        return pb.GetOrderBookResponse(buy=convert.levels(book.buy), sell=convert.levels(book.sell))

    async def ListCandles(
        self, request: pb.ListCandlesRequest, context: Context
    ) -> pb.ListCandlesResponse:
        pair = validate_pair(request.pair)
        interval = convert.chart_interval(request.interval)
        since = convert.unix_seconds(request, "since")
        until = convert.unix_seconds(request, "until")
        validate_time_range(since, until, "since", "until")
        limit = optional_limit(request, "limit", MAX_CANDLES)
        payload = await self._get(
            rest_requests.candles(pair, interval, since=since, until=until, limit=limit), context
        )
        return pb.ListCandlesResponse(
            candles=[convert.candle(c) for c in rest_parsing.parse_candles(payload)]
        )

    async def ListTrades(
        self, request: pb.ListTradesRequest, context: Context
    ) -> pb.ListTradesResponse:
        pair = validate_pair(request.pair)
        limit = optional_limit(request, "limit", MAX_TRADES)
        payload = await self._get(rest_requests.public_trades(pair, limit=limit), context)
        return pb.ListTradesResponse(
            trades=[convert.public_trade(t) for t in rest_parsing.parse_public_trades(payload)]
        )


def _optional_currency(request: Any, field: str) -> str | None:
    """A proto3 `optional` currency filter: None when unset, else a valid code."""
    return (
        convert.currency_code(getattr(request, field), field) if request.HasField(field) else None
    )
