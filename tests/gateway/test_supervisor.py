"""Supervisor: failures are logged, backed off and restarted; FAILED is reported; close() leaves
no task behind; one child's failure never touches its siblings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from gateway.supervisor import LoopState, Supervisor
from tests.gateway.test_streams import eventually


async def test_a_failing_loop_is_restarted_and_its_sibling_untouched() -> None:
    supervisor = Supervisor("t", base_s=0.001, cap_s=0.002, rand=lambda: 0.5)
    runs = {"flaky": 0, "steady": 0}
    gate = asyncio.Event()

    async def flaky() -> None:
        runs["flaky"] += 1
        if runs["flaky"] <= 2:
            raise RuntimeError("boom")
        await gate.wait()

    async def steady() -> None:
        runs["steady"] += 1
        await gate.wait()

    before = len(asyncio.all_tasks())
    supervisor.start("flaky", flaky)
    supervisor.start("steady", steady)
    await eventually(lambda: runs["flaky"] == 3)
    status = {s.name: s for s in supervisor.status()}
    assert status["flaky"].restarts == 2 and status["flaky"].state is LoopState.RUNNING
    assert "RuntimeError: boom" in status["flaky"].last_error
    assert runs["steady"] == 1 and status["steady"].restarts == 0
    await supervisor.close()
    assert len(asyncio.all_tasks()) == before
    assert supervisor.status() == []  # finished children leave the table


async def test_persistent_failure_is_reported_and_still_retried() -> None:
    supervisor = Supervisor("t", base_s=0.001, cap_s=0.002, failing_after=3)
    runs = 0

    async def broken() -> None:
        nonlocal runs
        runs += 1
        raise ValueError("never works")

    supervisor.start("broken", broken)
    await eventually(lambda: runs >= 5)
    assert supervisor.failing() == ["broken"]
    await supervisor.close()


async def test_one_shot_failure_is_not_restarted() -> None:
    supervisor = Supervisor("t")

    async def once() -> None:
        raise KeyError("x")

    supervisor.start("once", once, restart=False)
    await eventually(lambda: supervisor.status()[0].state is LoopState.FAILED)
    assert supervisor.status()[0].restarts == 0
    supervisor.start("once", once, restart=False)  # a failed one-shot may run again
    await supervisor.close()


async def test_one_shots_do_not_pile_up_and_their_failures_leave_health_alone() -> None:
    supervisor = Supervisor("t")

    async def quick() -> None:
        return

    async def broken() -> None:
        raise RuntimeError("once")

    for i in range(500):
        supervisor.start(f"ok-{i}", quick, restart=False)
    for i in range(30):
        supervisor.start(f"bad-{i}", broken, restart=False)
    await eventually(
        lambda: (
            all(s.state is LoopState.FAILED for s in supervisor.status())
            and len(supervisor.status()) == 20
        )
    )
    names = [s.name for s in supervisor.status()]
    assert not [n for n in names if n.startswith("ok-")]
    assert len(names) == 20 and names[-1] == "bad-29"  # the last failures, for GetStatus
    assert supervisor.failing() == []  # a failed one-shot is no outage
    await supervisor.close()


async def test_stop_one_and_names_are_unique() -> None:
    supervisor = Supervisor("t")
    forever = asyncio.Event()

    async def wait() -> None:
        await forever.wait()

    supervisor.start("a", wait)
    with pytest.raises(ValueError):
        supervisor.start("a", wait)
    await supervisor.stop("a")
    assert not supervisor.running("a") and supervisor.task_count() == 0
    supervisor.start("a", wait)  # stopped: the name is free again
    await supervisor.close()
    with pytest.raises(RuntimeError):
        supervisor.start("b", wait)


async def test_close_before_anything_ran() -> None:
    supervisor = Supervisor("t")
    supervisor.start("a", asyncio.Event().wait)
    await supervisor.close()
    assert supervisor.task_count() == 0


async def test_feeds_leave_no_task_behind(sandbox: object) -> None:
    """Public and private feeds run every loop under their supervisor; close() ends them all."""
    import aiohttp

    from gateway.errors import GatewayError
    from gateway.exchange.token_manager import TokenManager
    from gateway.exchange.ws_connection import WsSettings
    from gateway.exchange.ws_private import PrivateFeed
    from gateway.exchange.ws_public import SUBSCRIBED, PublicFeed
    from gateway.sandbox import Sandbox

    assert isinstance(sandbox, Sandbox)
    states: list[str] = []

    class Listener:
        def on_event(self, topic: str, event: object) -> None: ...

        def on_status(self, state: str, topics: tuple[str, ...]) -> None:
            states.append(state)

        def on_rejected(self, topic: str, error: GatewayError) -> None: ...

    async def token() -> str:
        async with session.post(
            f"{sandbox.rest_url}/auth", json={"api_key": "demo-key", "api_secret": "demo-secret"}
        ) as response:
            return str(await response.json())

    def ours() -> int:
        """Tasks running gateway client code (the sandbox's server tasks are not the feeds')."""
        names = [getattr(t.get_coro(), "__qualname__", "") for t in asyncio.all_tasks()]
        return sum(1 for n in names if "Feed" in n or "Supervisor" in n or "WsConnection" in n)

    before = ours()
    async with aiohttp.ClientSession() as session:
        supervisor = Supervisor("feeds")
        settings = WsSettings(url=sandbox.ws_url)
        public = PublicFeed(session, settings, linger_s=0.05, supervisor=supervisor)
        private = PrivateFeed(
            "demo",
            session,
            settings,
            TokenManager("demo", "demo-key", token, refresh_margin_s=30.0),
            auth_grace_s=0.05,
            supervisor=supervisor,
        )
        listener = Listener()
        await public.add("trade.BTC_USDT", listener)
        await private.add(listener)
        await eventually(lambda: states.count(SUBSCRIBED) == 2)
        assert supervisor.task_count() >= 3  # two sockets, the linger loop, re-auth
        assert ours() >= 3  # the filter sees them
        await public.remove("trade.BTC_USDT", listener)
        await eventually(lambda: not public.connections())  # the linger expired on its deadline
        await private.close()
        await public.close()
        await supervisor.close()
    assert supervisor.task_count() == 0
    assert ours() == before == 0


async def test_stop_and_close_end_a_child_that_swallowed_its_cancel(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As redis-py 8 sometimes does inside a pipeline's execute(): the first cancel is eaten and
    the loop goes on. stop() and close() cancel again until the child has ended."""
    monkeypatch.setattr("gateway.supervisor.RECANCEL_S", 0.05)
    swallowed: list[str] = []

    def stubborn(name: str) -> Callable[[], Awaitable[None]]:
        async def loop() -> None:
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    if name in swallowed:
                        raise
                    swallowed.append(name)  # eat the first one, as a library might

        return loop

    supervisor = Supervisor("swallow")
    supervisor.start("a", stubborn("a"))
    supervisor.start("b", stubborn("b"))
    await asyncio.sleep(0.01)
    await asyncio.wait_for(supervisor.stop("a"), 2.0)
    assert swallowed == ["a"] and not supervisor.running("a")
    await asyncio.wait_for(supervisor.close(), 2.0)
    assert swallowed == ["a", "b"] and supervisor.task_count() == 0
