"""`alp-gateway` subcommands: serve, sandbox, check-config, new-caller, health."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Coroutine
from typing import Any

from gateway.config import SETTINGS, load_config, startup_checks
from gateway.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="alp-gateway", description="ALP.COM gRPC gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gRPC gateway")
    serve.add_argument("--config", help="TOML settings file (or ALP_GATEWAY_CONFIG)")
    serve.add_argument("--sandbox", action="store_true", help="trade against the embedded sandbox")
    serve.add_argument("--host", help="listen address (listen.host)")
    serve.add_argument("--port", type=int, help="listen port (listen.port)")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="N member processes on one port (needs cluster.redis_url; see README 'fleet')",
    )
    serve.add_argument(
        "--dev-mode",
        action="store_true",
        help="no caller authentication (callers.dev_mode); for local development only",
    )

    sandbox = sub.add_parser("sandbox", help="run the ALP sandbox exchange alone")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8085)
    sandbox.add_argument("--no-market", action="store_true", help="no synthetic market activity")
    sandbox.add_argument("--seed", type=int, default=7)
    sandbox.add_argument("--token-lifetime", type=float, default=3600.0, help="JWT lifetime, s")
    sandbox.add_argument("--accounts-file", help="TOML file with more sandbox accounts")

    check = sub.add_parser("check-config", help="validate the settings and exit")
    check.add_argument("--config", help="TOML settings file (or ALP_GATEWAY_CONFIG)")

    new_caller = sub.add_parser(
        "new-caller", help="make a bearer token for a caller; print it once with its config table"
    )
    new_caller.add_argument("name", help="caller name: lower case letters, digits, - and _")
    new_caller.add_argument(
        "--scopes", required=True, help="comma-separated: market, account:read, trade, admin"
    )
    new_caller.add_argument(
        "--accounts", default="", help='comma-separated ALP account names ("*" = every account)'
    )
    new_caller.add_argument(
        "--rate-per-s", type=float, default=0.0, help="the caller's call quota (0 = none)"
    )

    health = sub.add_parser("health", help="query grpc.health.v1 of a running gateway")
    health.add_argument("--target", default="127.0.0.1:50051")
    health.add_argument("--service", default="")
    health.add_argument("--timeout", type=float, default=2.0)
    return parser


def _run(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)


def _setup_logging(level: str) -> None:
    from gateway.logs import configure_logging

    configure_logging(level=level, fmt="text")


def run(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "sandbox":
        return _sandbox(args)
    if args.command == "health":
        return _health(args)
    if args.command == "new-caller":
        return _new_caller(args)
    try:
        config = load_config(args.config)
        if args.command == "serve":
            overrides: dict[str, Any] = {}
            if args.sandbox:
                overrides["sandbox__enabled"] = True
            if args.host:
                overrides["listen__host"] = args.host
            if args.port is not None:
                overrides["listen__port"] = args.port
            if args.dev_mode:
                overrides["callers__dev_mode"] = True
            config = config.with_overrides(**overrides)
    except ConfigError as exc:
        print(f"alp-gateway: invalid setting {exc.setting}: {exc.reason}", file=sys.stderr)
        return 2
    if args.command == "check-config":
        try:
            startup_checks(config)
        except ConfigError as exc:
            print(f"alp-gateway: invalid setting {exc.setting}: {exc.reason}", file=sys.stderr)
            return 2
        print(f"configuration valid: {len(SETTINGS)} settings, {len(config.accounts)} accounts")
        return 0
    if args.workers != 1:
        return _workers(config, args, argv)
    from gateway.app import run_until_signalled
    from gateway.logs import configure_logging
    from gateway.rpc.server import BindFailed

    configure_logging(
        level=config.settings.log.level,
        fmt=config.settings.log.format,
        secrets=[c.api_secret.reveal() for c in config.accounts.values()],
    )
    try:
        _run(run_until_signalled(config))
    except BindFailed as exc:  # e.g. another gateway holds the port: one line, no traceback
        print(f"alp-gateway: {exc.reason}", file=sys.stderr)
        return 2
    except ConfigError as exc:  # a start-up check: one line naming the setting
        print(f"alp-gateway: invalid setting {exc.setting}: {exc.reason}", file=sys.stderr)
        return 2
    return 0


def _workers(config: Any, args: argparse.Namespace, argv: list[str]) -> int:
    from gateway.workers import check_workers, run_workers

    try:
        check_workers(config, args.workers)
        startup_checks(config)
    except ConfigError as exc:
        print(f"alp-gateway: invalid setting {exc.setting}: {exc.reason}", file=sys.stderr)
        return 2
    serve_args = [a for a in argv[1:] if not a.startswith("--workers")]
    if "--workers" in argv:  # "--workers N" as two words
        at = argv.index("--workers")
        serve_args = [a for i, a in enumerate(argv[1:], 1) if i not in (at, at + 1)]
    return run_workers(config, args.workers, serve_args)


def _new_caller(args: argparse.Namespace) -> int:
    """A fresh random token and the TOML table holding its SHA-256.

    stdout is exactly the table (`>> gateway.toml` appends it); the token goes to stderr, once,
    so it never lands in the config file. `echo token | sha256sum` would hash a trailing newline
    too; this prints the exact digest.
    """
    import json
    import re
    import secrets

    from gateway.core.callers import parse_scopes, token_digest

    name = args.name
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
        print("alp-gateway: caller name: lower case letters, digits, - and _", file=sys.stderr)
        return 2
    try:
        scopes = sorted(parse_scopes(_csv(args.scopes), "--scopes"))
    except ValueError as exc:
        print(f"alp-gateway: {exc}", file=sys.stderr)
        return 2
    if not scopes:
        print("alp-gateway: --scopes: at least one scope", file=sys.stderr)
        return 2
    if args.rate_per_s < 0:
        print("alp-gateway: --rate-per-s: must be >= 0", file=sys.stderr)
        return 2
    token = secrets.token_urlsafe(32)
    print(
        f"token for caller {name} (shown once, stored nowhere; give it to the caller):\n{token}",
        file=sys.stderr,
    )
    lines = [
        f"[callers.{name}]",
        f'token_sha256 = "{token_digest(token)}"',
        f"scopes = {json.dumps(scopes)}",
        f"accounts = {json.dumps(_csv(args.accounts))}",
    ]
    if args.rate_per_s:
        lines.append(f"rate_per_s = {args.rate_per_s}")
    print("\n".join(lines))
    return 0


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _sandbox(args: argparse.Namespace) -> int:
    from gateway.sandbox import SandboxConfig, serve

    _setup_logging("INFO")
    config = SandboxConfig(
        market=not args.no_market, seed=args.seed, token_lifetime_s=args.token_lifetime
    )
    if args.accounts_file:
        import tomllib

        from gateway.sandbox.config import load_accounts

        try:
            config = config.with_accounts(load_accounts(args.accounts_file))
        except OSError as exc:
            print(
                f"alp-gateway: --accounts-file {args.accounts_file}: {exc.strerror}",
                file=sys.stderr,
            )
            return 2
        except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
            print(
                f"alp-gateway: --accounts-file {args.accounts_file}: {exc!r}"[:300], file=sys.stderr
            )
            return 2
    with contextlib.suppress(KeyboardInterrupt):
        _run(serve(config, args.host, args.port))
    return 0


def _health(args: argparse.Namespace) -> int:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(args.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
            )
        except grpc.RpcError as exc:
            print(f"health check failed: {exc.code().name}", file=sys.stderr)
            return 1
    name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    print(name)
    return 0 if reply.status == health_pb2.HealthCheckResponse.SERVING else 1
