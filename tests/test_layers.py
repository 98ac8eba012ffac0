"""The folder tree is the architecture: core is pure, exchange never reaches up into rpc, the
sandbox shares no code with the client side."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "gateway"

FORBIDDEN = {
    "core": (
        "asyncio",
        "aiohttp",
        "grpc",
        "alp",
        "gateway.exchange",
        "gateway.rpc",
        "gateway.sandbox",
        "gateway.app",
        "gateway.supervisor",
    ),
    "exchange": (
        "grpc",
        "alp",
        "gateway.rpc",
        "gateway.sandbox",
        "gateway.app",
        "gateway.cluster",
        "gateway.feeds",
    ),
    "cluster": ("grpc", "alp", "gateway.rpc", "gateway.sandbox", "gateway.app", "gateway.feeds"),
    "sandbox": ("grpc", "alp", "gateway.core", "gateway.exchange", "gateway.rpc", "gateway.app"),
}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports(layer: str) -> None:
    offenders = []
    for path in sorted((ROOT / layer).rglob("*.py")):
        for name in imports_of(path):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[layer]):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


def test_the_check_sees_imports() -> None:
    assert "asyncio" in imports_of(ROOT / "supervisor.py")


def test_no_asyncio_wait_for_in_the_gateway() -> None:
    """On Python 3.11 `asyncio.wait_for` swallows a cancel that arrives as the awaited thing
    completes: a supervised loop waiting that way (the linger, the lease tick) could outlive its
    stop() and hang shutdown. `async with asyncio.timeout(...)` does not; use it instead."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in sorted(ROOT.rglob("*.py"))
        if "wait_for(" in path.read_text()
    ]
    assert offenders == []
