"""Shared benchmark plumbing: start servers as subprocesses, percentiles, reporting."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def answers_ping(port: int) -> bool:
    """A Redis on 127.0.0.1:`port` answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free 127.0.0.1 port (no persistence); yields its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed (bash scripts/polyglot_deps.sh installs it)")
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", workdir]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        try:
            for _ in range(500):
                if answers_ping(port):
                    break
                time.sleep(0.01)
            else:
                raise RuntimeError("redis-server did not answer PING")
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.kill()
            proc.wait()


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def spread(values: Sequence[float]) -> str:
    """min / median / max of repeated measurements."""
    return f"{min(values):.3f} / {statistics.median(values):.3f} / {max(values):.3f}"


@contextmanager
def process(
    args: list[str], ready: dict[str, str], env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """Start `args`, wait until every regex of `ready` matched a stdout line (group 1 is kept),
    yield (process, {name: value}), stop it with SIGTERM."""
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.Popen(
        args, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    found: dict[str, str] = {}
    while time.monotonic() < deadline and len(found) < len(ready):
        line = proc.stdout.readline()
        if not line:
            break
        for name, pattern in ready.items():
            match = re.search(pattern, line)
            if match:
                found[name] = match.group(1)
    if len(found) < len(ready):
        proc.kill()
        raise RuntimeError(f"{args[:4]} did not start")
    try:
        yield proc, found
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def sandbox(market: bool = False) -> Any:
    """`alp-gateway sandbox` in its own process (as ALP is): yields (process, {"rest", "ws"})."""
    args = [PY, "-m", "gateway", "sandbox", "--port", "0"]
    if not market:
        args.append("--no-market")
    return process(
        args, {"rest": r"REST: (http://[\d.:]+/api/v3)", "ws": r"WS: +(ws://[\d.:]+/ws)"}
    )


def gateway(upstream: dict[str, str], extra_env: dict[str, str] | None = None) -> Any:
    """`alp-gateway serve` against `upstream` ({"rest", "ws"}): yields (process, {"target"})."""
    env = {
        "ALP_GATEWAY_UPSTREAM_REST_URL": upstream["rest"],
        "ALP_GATEWAY_UPSTREAM_WS_URL": upstream["ws"],
        "ALP_GATEWAY_ACCOUNT_DEMO_API_KEY": "demo-key",
        "ALP_GATEWAY_ACCOUNT_DEMO_API_SECRET": "demo-secret",
        "ALP_GATEWAY_UPSTREAM_PUBLIC_RPS": "0",
        "ALP_GATEWAY_UPSTREAM_PRIVATE_RPS": "0",
        "ALP_GATEWAY_METRICS_ENABLED": "false",
        "ALP_GATEWAY_AUDIT_PATH": "",
        "ALP_GATEWAY_LOG_LEVEL": "WARNING",
        "ALP_GATEWAY_HEALTH_INTERVAL_S": "3600",
        "ALP_GATEWAY_UPSTREAM_PUBLIC_CACHE_TTL_S": "0",
        **(extra_env or {}),
    }
    return process(
        [PY, "-m", "gateway", "serve", "--dev-mode", "--port", "0"],
        {"target": r"serving gRPC on ([\d.]+:\d+)"},
        env,
    )


def machine() -> str:
    import platform

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds `pid` has used so far (/proc/<pid>/stat); 0.0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid` (scans /proc for their parent id)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            children.append(int(entry.name))
    return sorted(children)
