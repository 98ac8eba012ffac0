"""Synthetic market activity: seeded random-walk market makers and takers on a few pairs."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable
from decimal import ROUND_DOWN, Decimal

from gateway.sandbox.config import HOUSE_MAKER_ID, HOUSE_TAKER_ID, SandboxConfig
from gateway.sandbox.engine.exchange import Exchange
from gateway.sandbox.engine.records import ExchangeError, OrderRequest
from gateway.sandbox.engine.specs import default_mid_prices

LEVELS = 5


class MarketActivity:
    """Each step re-quotes one pair's ladder around a random-walk mid and sends one taker order.

    Deterministic under the seed: `step(n)` drives it by hand (tests); `start()` runs it at
    `market_rate_hz` (demo).
    """

    def __init__(
        self,
        config: SandboxConfig,
        exchange: Exchange,
        clock: Callable[[], float],
        on_change: Callable[[], None],
    ) -> None:
        self._config = config
        self._exchange = exchange
        self._clock = clock
        self._on_change = on_change
        self._rng = random.Random(config.seed)
        mids = default_mid_prices()
        self._pairs = [p for p in config.market_pairs if p in mids]
        self._mid = {p: mids[p] for p in self._pairs}
        self._quotes: dict[str, list[int]] = {p: [] for p in self._pairs}
        self._task: asyncio.Task[None] | None = None
        self.steps = 0
        now = clock()
        for account in (HOUSE_MAKER_ID, HOUSE_TAKER_ID):
            exchange.open_account(account, email=f"house-{account}@sandbox.alp", name="house")
            for currency in {c for p in self._pairs for c in p.split("_")}:
                exchange.credit(account, currency, Decimal("1000000000"), now)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running and self._pairs:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        period = 1.0 / max(0.1, self._config.market_rate_hz)
        while True:
            self.step()
            await asyncio.sleep(period)

    def step(self, count: int = 1) -> None:
        for _ in range(count):
            pair = self._pairs[self.steps % len(self._pairs)]
            self._quote(pair)
            self._take(pair)
            self.steps += 1
        self._on_change()

    def _quote(self, pair: str) -> None:
        spec = self._exchange.pair(pair)
        tick = Decimal(1).scaleb(-spec.price_precision)
        drift = Decimal(self._rng.randint(-20, 20)) / 10000
        mid = (self._mid[pair] * (1 + drift)).quantize(tick)
        self._mid[pair] = mid
        now = self._clock()
        self._exchange.cancel_orders(HOUSE_MAKER_ID, self._quotes[pair], now)
        quotes = []
        step = max(tick, (mid / 2000).quantize(tick))
        unit = Decimal(1).scaleb(-spec.amount_precision)
        for level in range(1, LEVELS + 1):
            for side, price in (("BUY", mid - step * level), ("SELL", mid + step * level)):
                value = spec.min_order_value * self._rng.randint(2, 20)
                amount = max(
                    spec.min_order_size, (value / price).quantize(unit, rounding=ROUND_DOWN)
                )
                request = OrderRequest(pair, "LIMIT", side, base_amount=amount, limit_price=price)
                with contextlib.suppress(ExchangeError):
                    quotes.append(self._exchange.place_order(HOUSE_MAKER_ID, request, now))
        self._quotes[pair] = quotes

    def _take(self, pair: str) -> None:
        spec = self._exchange.pair(pair)
        unit = Decimal(1).scaleb(-spec.amount_precision)
        side = self._rng.choice(("BUY", "SELL"))
        mid = self._mid[pair]
        value = spec.min_order_value * self._rng.randint(1, 4)
        amount = max(spec.min_order_size, (value / mid).quantize(unit, rounding=ROUND_DOWN))
        tick = Decimal(1).scaleb(-spec.price_precision)
        price = (mid * (Decimal("1.01") if side == "BUY" else Decimal("0.99"))).quantize(tick)
        request = OrderRequest(pair, "LIMIT", side, base_amount=amount, limit_price=price)
        with contextlib.suppress(ExchangeError):
            order_id = self._exchange.place_order(HOUSE_TAKER_ID, request, self._clock())
            self._exchange.cancel_orders(HOUSE_TAKER_ID, [order_id], self._clock())
