"""The authorization table: what every RPC and every Subscribe channel needs (pure; default deny).

Every method the server serves and every `Channel` a Subscribe topic can name has exactly one
`Rule` here; anything missing is refused, whoever asks. Tests walk the proto descriptors so a new
RPC or channel cannot ship without an entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

MARKET: Final = "market"
ACCOUNT_READ: Final = "account:read"
TRADE: Final = "trade"
ADMIN: Final = "admin"
SCOPES: Final = frozenset({MARKET, ACCOUNT_READ, TRADE, ADMIN})


@dataclass(frozen=True, slots=True)
class Rule:
    """What one RPC or channel needs.

    `scope`: the scope the caller must hold (None only for `open` and `per_channel` rules).
    `account`: it acts on the selected ALP account, which must be in the caller's account list.
    `open`: no credentials at all (health probes, reflection for grpcurl).
    `per_channel`: authenticated here; each requested channel is then checked by its own rule.
    """

    scope: str | None
    account: bool = False
    open: bool = False
    per_channel: bool = False


PUBLIC: Final = Rule(MARKET)
ACCOUNT_DATA: Final = Rule(ACCOUNT_READ, account=True)
TRADING: Final = Rule(TRADE, account=True)
OPEN: Final = Rule(None, open=True)

_MARKET_DATA: Final = "/alp.v3.MarketDataService/"
_ACCOUNT: Final = "/alp.v3.AccountService/"
_TRADING: Final = "/alp.v3.TradingService/"
_STREAM: Final = "/alp.v3.StreamService/"
SUBSCRIBE: Final = _STREAM + "Subscribe"

METHODS: Final[Mapping[str, Rule]] = {
    _MARKET_DATA + "GetServerTime": PUBLIC,
    _MARKET_DATA + "GetCurrencyRates": PUBLIC,
    _MARKET_DATA + "ListCurrencies": PUBLIC,
    _MARKET_DATA + "ListPairs": PUBLIC,
    _MARKET_DATA + "ListTickers": PUBLIC,
    _MARKET_DATA + "GetOrderBook": PUBLIC,
    _MARKET_DATA + "ListCandles": PUBLIC,
    _MARKET_DATA + "ListTrades": PUBLIC,
    _ACCOUNT + "ListAccounts": ACCOUNT_DATA,
    _ACCOUNT + "ListBalances": ACCOUNT_DATA,
    _ACCOUNT + "ListFeeRules": ACCOUNT_DATA,
    _ACCOUNT + "ListOrders": ACCOUNT_DATA,
    _ACCOUNT + "ListAccountTrades": ACCOUNT_DATA,
    _ACCOUNT + "ListActivity": ACCOUNT_DATA,
    _TRADING + "PlaceOrder": TRADING,
    _TRADING + "CancelOrders": TRADING,
    _STREAM + "StreamTickers": PUBLIC,
    _STREAM + "StreamTrades": PUBLIC,
    _STREAM + "StreamBookDiffs": PUBLIC,
    _STREAM + "StreamDepth": PUBLIC,
    _STREAM + "StreamOrderBook": PUBLIC,
    _STREAM + "StreamOrderUpdates": ACCOUNT_DATA,
    _STREAM + "StreamWalletUpdates": ACCOUNT_DATA,
    SUBSCRIBE: Rule(None, per_channel=True),
    "/alp.v3.GatewayService/GetStatus": Rule(ADMIN),
    "/grpc.health.v1.Health/Check": OPEN,
    "/grpc.health.v1.Health/List": OPEN,
    "/grpc.health.v1.Health/Watch": OPEN,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": OPEN,
}

# Subscribe channels (names of the proto enum `alp.v3.Channel`) -> the RPC that streams the same
# data. A channel's rule is that RPC's rule, so Subscribe can never grant more than the RPC would.
CHANNEL_METHODS: Final[Mapping[str, str]] = {
    "CHANNEL_TICKERS": _STREAM + "StreamTickers",
    "CHANNEL_TRADES": _STREAM + "StreamTrades",
    "CHANNEL_BOOK_DIFFS": _STREAM + "StreamBookDiffs",
    "CHANNEL_DEPTH": _STREAM + "StreamDepth",
    "CHANNEL_ORDER_BOOK": _STREAM + "StreamOrderBook",
    "CHANNEL_ORDER_UPDATES": _STREAM + "StreamOrderUpdates",
    "CHANNEL_WALLET_UPDATES": _STREAM + "StreamWalletUpdates",
}
CHANNELS: Final[Mapping[str, Rule]] = {
    channel: METHODS[method] for channel, method in CHANNEL_METHODS.items()
}


def method_rule(method: str) -> Rule | None:
    """The rule of a full method name ("/alp.v3.TradingService/PlaceOrder"); None = denied."""
    return METHODS.get(method)


def channel_rule(channel: str) -> Rule | None:
    """The rule of a Subscribe channel ("CHANNEL_ORDER_UPDATES"); None = denied."""
    return CHANNELS.get(channel)
