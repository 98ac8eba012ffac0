"""`alp-gateway serve --workers N`: N member processes on one port, supervised, drained together.

One Python process uses one core; N workers share `listen.port` (SO_REUSEPORT, asked for
explicitly here and nowhere else) and coordinate through the fleet's Redis (`cluster.redis_url`,
required). Worker i serves its health endpoint on `health.http_port + i` and its metrics on
`metrics.port + i` (when those are set). A worker that dies is started again with backoff; a
worker that exits with code 2 (a setting is wrong, the port is taken) stops them all with code 2.
SIGTERM/SIGINT reach every worker at once; each drains as a single gateway does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.config import GatewayConfig, env_name
from gateway.errors import ConfigError

RESTART_BASE_S = 0.5
RESTART_CAP_S = 15.0
POLL_S = 0.2


@dataclass
class Worker:
    index: int
    process: subprocess.Popen[bytes]
    restarts: int = 0
    started_at: float = field(default_factory=time.monotonic)


def _die_with_parent() -> None:
    """In the worker before exec: SIGTERM (a drain) when the supervisor dies, even by SIGKILL."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def check_workers(config: GatewayConfig, count: int) -> None:
    """What a fleet of workers needs, checked before any is started."""
    settings = config.settings
    if count < 1:
        raise ConfigError("--workers", "must be at least 1")
    if not settings.cluster.redis_url:
        raise ConfigError(
            "cluster.redis_url",
            "serve --workers needs a Redis for the fleet (tokens, rate budget, idempotency keys)",
        )
    if settings.listen.port == 0:
        raise ConfigError("listen.port", "workers share one fixed port: 0 is not one")
    if settings.sandbox.enabled:
        raise ConfigError(
            "sandbox.enabled",
            "each worker would embed its own sandbox: run `alp-gateway sandbox` once and point "
            "upstream.rest_url / upstream.ws_url at it",
        )


def worker_env(config: GatewayConfig, index: int) -> dict[str, str]:
    settings = config.settings
    env = dict(os.environ)
    env[env_name("listen.reuse_port")] = "true"
    env[env_name("listen.port")] = str(settings.listen.port)
    if settings.health.http_port:
        env[env_name("health.http_port")] = str(settings.health.http_port + index)
    if settings.metrics.enabled and settings.metrics.port:
        env[env_name("metrics.port")] = str(settings.metrics.port + index)
    return env


def run_workers(config: GatewayConfig, count: int, serve_args: Sequence[str]) -> int:
    """Start `count` workers (`alp-gateway serve` + serve_args) and supervise them until a signal."""
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    def spawn(index: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", *serve_args],
            env=worker_env(config, index),
            preexec_fn=_die_with_parent,
        )

    workers = [Worker(i, spawn(i)) for i in range(count)]
    print(
        f"alp-gateway: {count} workers on {config.settings.listen.host}:"
        f"{config.settings.listen.port}",
        flush=True,
    )
    code = 0
    while not stopping:
        time.sleep(POLL_S)
        for worker in workers:
            status = worker.process.poll()
            if status is None or stopping:
                continue
            if status == 2:  # a setting or the port: starting it again cannot help
                print(f"alp-gateway: worker {worker.index} refused to start", file=sys.stderr)
                stopping, code = True, 2
                break
            if time.monotonic() - worker.started_at > 60:
                worker.restarts = 0  # it ran well for a while: a new failure streak
            delay = min(RESTART_CAP_S, RESTART_BASE_S * 2**worker.restarts)
            print(
                f"alp-gateway: worker {worker.index} exited ({status}); restarting in {delay:.1f}s",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(delay)
            worker.restarts += 1
            worker.process = spawn(worker.index)
            worker.started_at = time.monotonic()
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + config.settings.drain.grace_s + 10.0
    for worker in workers:
        try:
            worker.process.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()
            code = code or 1
    return code
