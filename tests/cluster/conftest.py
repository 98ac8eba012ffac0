"""Fixtures: a real redis-server on a free 127.0.0.1 port (stoppable and restartable), the sandbox."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from gateway.cluster.redis_conn import connect
from gateway.sandbox import Sandbox, SandboxConfig

ROOT = Path(__file__).resolve().parents[2]


def member_env(sandbox: Sandbox, redis_url: str, **settings: str) -> dict[str, str]:
    """The environment of an `alp-gateway serve` fleet member run from this checkout."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'generated'}",
        "ALP_GATEWAY_UPSTREAM_REST_URL": sandbox.rest_url,
        "ALP_GATEWAY_UPSTREAM_WS_URL": sandbox.ws_url,
        "ALP_GATEWAY_CLUSTER_REDIS_URL": redis_url,
        "ALP_GATEWAY_AUDIT_PATH": "",
        "ALP_GATEWAY_METRICS_ENABLED": "false",
        "ALP_GATEWAY_HEALTH_HTTP_PORT": "0",
        "ALP_GATEWAY_DRAIN_GRACE_S": "1",
        "ALP_GATEWAY_LOG_LEVEL": "WARNING",
    }
    env.update({f"ALP_GATEWAY_{name.upper()}": value for name, value in settings.items()})
    return env


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One redis-server process on a fixed port: no persistence, loopback only."""

    def __init__(self, port: int, workdir: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail(
                "redis-server is not installed: `bash scripts/polyglot_deps.sh` (or `make test`) "
                "installs Debian's redis-server"
            )
        log = self._workdir / f"redis-{self.port}.log"
        options = {"port": str(self.port), "bind": "127.0.0.1", "save": "", "appendonly": "no"}
        options.update(dir=str(self._workdir), logfile=str(log))
        self._process = subprocess.Popen(
            [binary, *(part for name, value in options.items() for part in (f"--{name}", value))],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        stop_at = time.monotonic() + timeout_s
        while not answers_ping(self.port):
            if self._process.poll() is not None or time.monotonic() > stop_at:
                self.stop()
                detail = log.read_text()[-2000:] if log.exists() else ""
                pytest.fail(f"redis-server did not answer PING on port {self.port}:\n{detail}")
            time.sleep(0.02)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        if process.stderr is not None:
            process.stderr.close()


def running_redis() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="alp-gw-redis-") as workdir:
        server = RedisServer(free_port(), Path(workdir))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server per test module."""
    yield from running_redis()


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A redis-server for one test alone (it may stop and restart it on the same port)."""
    yield from running_redis()


@pytest.fixture
async def redis_url(redis_server: RedisServer) -> AsyncIterator[str]:
    """The module's Redis, emptied for this test."""
    if not redis_server.running:
        redis_server.start()
    client = connect(redis_server.url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    yield redis_server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = connect(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    async with Sandbox(SandboxConfig(market=False)) as running:
        yield running
