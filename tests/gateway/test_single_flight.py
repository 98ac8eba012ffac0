"""SingleFlight: one run per key for concurrent callers; a joiner never inherits another caller's
cancel (it runs the work again) but does share the runner's error."""

from __future__ import annotations

import asyncio

import pytest

from gateway.exchange.single_flight import SingleFlight


class Work:
    def __init__(self) -> None:
        self.runs = 0
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def __call__(self) -> int:
        self.runs += 1
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return self.runs


async def test_concurrent_callers_share_one_run() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    work = Work()
    calls = [asyncio.create_task(flights.run("k", work)) for _ in range(5)]
    await asyncio.sleep(0)
    assert flights.running("k")
    work.release.set()
    assert await asyncio.gather(*calls) == [1] * 5
    assert work.runs == 1 and not flights.running("k")


async def test_a_joiner_of_a_cancelled_runner_runs_the_work_itself() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    work = Work()
    runner = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0)
    joiner = asyncio.create_task(flights.run("k", work))
    await asyncio.sleep(0)
    runner.cancel()
    await asyncio.sleep(0)
    work.release.set()
    assert await joiner == 2  # its own run, not the runner's cancel
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert work.runs == 2


async def test_a_runners_error_is_shared_and_the_next_call_runs_afresh() -> None:
    flights: SingleFlight[str, int] = SingleFlight()
    work = Work()
    work.fail = ValueError("upstream said no")
    calls = [asyncio.create_task(flights.run("k", work)) for _ in range(3)]
    await asyncio.sleep(0)
    work.release.set()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, ValueError) for r in results) and work.runs == 1
    work.fail = None
    assert await flights.run("k", work) == 2
