"""SingleFlight: concurrent calls with the same key share one run of the work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _RunnerGone(Exception):
    """The caller running the shared work was cancelled: its joiners run it again themselves."""


class SingleFlight(Generic[K, V]):
    """The first caller of a key runs the work; callers arriving meanwhile share its outcome.

    A joiner never inherits a cancel that was not its own: when the runner's caller goes away
    (deadline, client gone) the joiners start over (one of them runs the work again), instead of
    raising a foreign CancelledError that would end their own calls without a status.
    """

    def __init__(self) -> None:
        self._runs: dict[K, asyncio.Future[V]] = {}

    def running(self, key: K) -> bool:
        return key in self._runs

    async def run(self, key: K, work: Callable[[], Awaitable[V]]) -> V:
        while (pending := self._runs.get(key)) is not None:
            try:
                return await asyncio.shield(pending)
            except _RunnerGone:
                continue
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._runs[key] = future
        try:
            value = await work()
        except asyncio.CancelledError:
            future.set_exception(_RunnerGone())
            future.exception()  # joiners may be gone too: never "exception was never retrieved"
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        else:
            future.set_result(value)
            return value
        finally:
            if self._runs.get(key) is future:
                del self._runs[key]
