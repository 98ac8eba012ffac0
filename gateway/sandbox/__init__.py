"""The embedded ALP sandbox exchange: `Sandbox` to embed, `serve` to run it alone."""

from gateway.sandbox.config import SandboxConfig
from gateway.sandbox.server import Sandbox, serve

__all__ = ["Sandbox", "SandboxConfig", "serve"]
