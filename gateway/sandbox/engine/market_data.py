"""Public market data derived from trades: recent trades, 24 h tickers, candles, currency rates."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping
from decimal import Decimal

from gateway.sandbox.engine.records import Candle, PublicTrade, Ticker
from gateway.sandbox.engine.specs import PairSpec

DAY = 86400
INTERVALS = {"1": 60, "5": 300, "15": 900, "30": 1800, "60": 3600, "240": 14400, "1D": DAY}
KEEP_TRADES = 20000


class MarketData:
    def __init__(self, pairs: Mapping[str, PairSpec]) -> None:
        self._pairs = pairs
        self._trades: dict[str, deque[PublicTrade]] = defaultdict(lambda: deque(maxlen=KEEP_TRADES))

    def record(self, trade: PublicTrade) -> None:
        self._trades[trade.pair].append(trade)

    def last_price(self, pair: str) -> Decimal | None:
        trades = self._trades.get(pair)
        return trades[-1].price if trades else None

    def trades(self, pair: str, limit: int) -> list[PublicTrade]:
        trades = self._trades.get(pair, deque())
        return list(reversed(trades))[:limit]

    def ticker(
        self, spec: PairSpec, now: float, best_bid: Decimal | None, best_ask: Decimal | None
    ) -> Ticker:
        zero = Decimal(0)
        window = [t for t in self._trades.get(spec.name, ()) if t.timestamp >= now - DAY]
        trades = self._trades.get(spec.name)
        last = trades[-1].price if trades else zero
        opened = window[0].price if window else last
        diff = last - opened
        percent = (diff / opened * 100).quantize(Decimal("0.00000001")) if opened else zero
        return Ticker(
            pair=spec.name,
            last=last,
            open=opened,
            vol=sum((t.amount for t in window), zero),
            buy=best_bid or zero,
            sell=best_ask or zero,
            high=max((t.price for t in window), default=last),
            low=min((t.price for t in window), default=last),
            diff=diff,
            diff_percent=percent,
            price_precision=spec.price_precision,
            amount_precision=spec.amount_precision,
            timestamp=trades[-1].timestamp if trades else 0.0,
            quote_volume=sum((t.amount * t.price for t in window), zero),
        )

    def candles(
        self, pair: str, interval: str, *, since: int | None, until: int | None, limit: int
    ) -> list[Candle]:
        width = INTERVALS[interval]
        buckets: dict[int, list[PublicTrade]] = defaultdict(list)
        for trade in self._trades.get(pair, ()):
            start = int(trade.timestamp) // width * width
            if (since is not None and start < since) or (until is not None and start >= until):
                continue
            buckets[start].append(trade)
        candles = []
        for start in sorted(buckets)[-limit:]:
            group = buckets[start]
            buys = [t for t in group if t.type == "buy"]
            candles.append(
                Candle(
                    time=start,
                    open=group[0].price,
                    close=group[-1].price,
                    low=min(t.price for t in group),
                    high=max(t.price for t in group),
                    volume=sum((t.amount for t in group), Decimal(0)),
                    quote_volume=sum((t.amount * t.price for t in group), Decimal(0)),
                    trades_count=len(group),
                    taker_buy_base_volume=sum((t.amount for t in buys), Decimal(0)),
                    taker_buy_quote_volume=sum((t.amount * t.price for t in buys), Decimal(0)),
                )
            )
        return candles

    def rates(self, currencies: list[str]) -> dict[str, Decimal]:
        """Value of each currency in USDT from last prices (direct, or via BTC)."""
        rates = {"USDT": Decimal(1)}
        for code in currencies:
            price = self.last_price(f"{code}_USDT")
            if price is not None:
                rates[code] = price
        btc = rates.get("BTC")
        for code in currencies:
            if code not in rates and btc is not None:
                price = self.last_price(f"{code}_BTC")
                if price is not None:
                    rates[code] = price * btc
        return {code: rates.get(code, Decimal(0)) for code in currencies}
