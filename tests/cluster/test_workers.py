"""`alp-gateway serve --workers 2`: two member processes on one port, supervised, drained together."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from alp.v3 import gateway_service_pb2, gateway_service_pb2_grpc

from gateway.sandbox import Sandbox
from tests.cluster.conftest import ROOT, RedisServer, free_port, member_env

pytestmark = pytest.mark.slow


@pytest.fixture
async def fleet(
    sandbox: Sandbox, own_redis_server: RedisServer
) -> AsyncIterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    env = member_env(
        sandbox,
        own_redis_server.url,
        account_demo_api_key="demo-key",
        account_demo_api_secret="demo-secret",
    )
    parent = subprocess.Popen(  # noqa: ASYNC220  # started once; the test awaits around it
        [
            sys.executable,
            "-m",
            "gateway",
            "serve",
            "--workers",
            "2",
            "--port",
            str(port),
            "--dev-mode",
        ],
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        yield parent, port
    finally:
        if parent.poll() is None:
            os.killpg(parent.pid, signal.SIGKILL)  # the supervisor and every worker
            parent.wait()


async def member_ids(port: int, calls: int) -> set[str]:
    """Member ids answering GetStatus over `calls` fresh connections (the kernel spreads them)."""
    seen: set[str] = set()
    for _ in range(calls):
        # a local subchannel pool: a new TCP connection per channel, spread by the kernel
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            try:
                status = await gateway_service_pb2_grpc.GatewayServiceStub(channel).GetStatus(
                    gateway_service_pb2.GetStatusRequest(), timeout=2
                )
            except grpc.aio.AioRpcError:
                await asyncio.sleep(0.1)
                continue
            seen.add(status.fleet.member_id)
    return seen


async def test_two_workers_share_the_port_restart_and_drain_together(
    fleet: tuple[subprocess.Popen[bytes], int],
) -> None:
    parent, port = fleet
    seen: set[str] = set()
    for _ in range(60):  # start-up: both workers bind the same port
        seen |= await member_ids(port, 10)
        if len(seen) >= 2:
            break
    assert len(seen) == 2, seen
    victim = sorted(seen)[0]
    os.kill(int(victim.split(":")[1]), signal.SIGKILL)  # member ids are host:pid:random
    again: set[str] = set()
    loop = asyncio.get_running_loop()
    give_up = loop.time() + 90  # the supervisor starts a new worker in its place (a busy CI box)
    while loop.time() < give_up:
        again = await member_ids(port, 10)
        if len(again) == 2 and victim not in again:
            break
    assert len(again) == 2 and victim not in again, again
    parent.send_signal(signal.SIGTERM)
    code = await loop.run_in_executor(None, parent.wait, 30)
    assert code == 0
    for member in again:  # every worker is gone with the parent
        with pytest.raises(ProcessLookupError):
            os.kill(int(member.split(":")[1]), 0)


async def test_workers_need_a_fleet(tmp_path: Path) -> None:
    result = subprocess.run(  # noqa: ASYNC221  # a short CLI run that must exit by itself
        [sys.executable, "-m", "gateway", "serve", "--workers", "2", "--dev-mode"],
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'generated'}"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "alp-gateway: invalid setting cluster.redis_url: serve --workers needs a Redis for the "
        "fleet (tokens, rate budget, idempotency keys)"
    ]
