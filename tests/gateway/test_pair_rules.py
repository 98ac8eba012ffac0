"""Pair rules for order checks come from a cached GET /pairs; a pair ALP lists later is found
after a short refresh on a miss, not after the whole cache life."""

from __future__ import annotations

import time

import aiohttp
import pytest

from gateway.exchange.rest_client import RestClient
from gateway.exchange.upstream import MISS_REFRESH_S, Upstream
from gateway.sandbox import Sandbox


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def pair_reads(sandbox: Sandbox) -> int:
    return sum(1 for _, method, path in sandbox.stats.request_log if path.endswith("/pairs"))


async def test_a_pair_listed_later_is_found_after_a_short_refresh(sandbox: Sandbox) -> None:
    exchange_pairs = sandbox.exchange._pairs  # the sandbox's listing, as GET /pairs reads it
    ltc_btc = exchange_pairs.pop("LTC_BTC")
    clock = Clock()
    deadline = time.monotonic() + 10
    async with aiohttp.ClientSession() as session:
        upstream = Upstream(RestClient(sandbox.rest_url, session), {}, "", clock=clock)
        try:
            with pytest.raises(KeyError):
                await upstream.pair_rules("LTC_BTC", deadline=deadline)
            assert pair_reads(sandbox) == 1
            exchange_pairs["LTC_BTC"] = ltc_btc  # ALP lists it now
            clock.now += MISS_REFRESH_S / 2
            with pytest.raises(KeyError):  # a miss within MISS_REFRESH_S reads nothing
                await upstream.pair_rules("LTC_BTC", deadline=deadline)
            assert pair_reads(sandbox) == 1
            clock.now += MISS_REFRESH_S
            rules = await upstream.pair_rules("LTC_BTC", deadline=deadline)
            assert rules is not None and rules.name == "LTC_BTC"
            assert rules.minimum_order_size == ltc_btc.min_order_size
            assert pair_reads(sandbox) == 2
            for _ in range(5):  # hostile unknown pairs: no extra reads within MISS_REFRESH_S
                with pytest.raises(KeyError):
                    await upstream.pair_rules("NOPE_USDT", deadline=deadline)
            assert pair_reads(sandbox) == 2  # the list is younger than MISS_REFRESH_S
            clock.now += MISS_REFRESH_S + 1
            assert (await upstream.pair_rules("BTC_USDT", deadline=deadline)) is not None
            assert pair_reads(sandbox) == 2  # a hit reads nothing within pairs_ttl_s
        finally:
            exchange_pairs["LTC_BTC"] = ltc_btc
