"""Typed, frozen gateway settings: loaded once from TOML + ALP_GATEWAY_* environment, validated early.

Every setting has one dotted name (`upstream.rest_url`), one environment variable
(`ALP_GATEWAY_UPSTREAM_REST_URL`) and a default; README's settings table is generated from `SETTINGS`.
Secrets never sit in the TOML: accounts name an environment variable or a file for the API secret.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from gateway.core.token_policy import Secret
from gateway.errors import ConfigError

ENV_PREFIX: Final = "ALP_GATEWAY_"
_ACCOUNT_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class Setting:
    name: str
    default: object
    kind: Callable[[str], object]
    help: str

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.replace(".", "_").upper()


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false")


def _positive(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise ValueError("must be > 0")
        return value

    return parse


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise ValueError("must be in [0, 1)")
    return value


def _non_negative(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if value < 0:
            raise ValueError("must be >= 0")
        return value

    return parse


def _url(text: str) -> str:
    if not re.fullmatch(r"(https?|wss?)://[^\s/]+(/\S*)?", text):
        raise ValueError("must be an http(s):// or ws(s):// URL")
    return text.rstrip("/")


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError("must be a port number 0..65535")
    return value


def _wallet_spelling(text: str) -> str:
    if text not in ("docs", "alias"):
        raise ValueError("must be 'docs' (MARGIN_CROSS) or 'alias' (CROSS_MARGIN)")
    return text


def _log_format(text: str) -> str:
    if text not in ("text", "json"):
        raise ValueError("must be 'text' or 'json'")
    return text


def _optional_path(text: str) -> str:
    return text


SETTINGS: Final[tuple[Setting, ...]] = (
    Setting("listen.host", "127.0.0.1", str, "gRPC listen address"),
    Setting("listen.port", 50051, _port, "gRPC listen port (0 = any free port)"),
    Setting("upstream.rest_url", "https://www.alp.com/api/v3", _url, "ALP REST base URL"),
    Setting("upstream.ws_url", "wss://www.alp.com/ws", _url, "ALP WebSocket URL"),
    Setting("upstream.timeout_s", 10.0, _positive(float), "upstream call timeout without deadline"),
    Setting("upstream.deadline_margin_s", 0.05, _non_negative(float), "kept from caller deadline"),
    Setting("upstream.retry_attempts", 3, _positive(int), "tries of an idempotent GET"),
    Setting("upstream.retry_base_s", 0.05, _positive(float), "first retry backoff ceiling"),
    Setting("upstream.retry_cap_s", 1.0, _positive(float), "largest retry backoff"),
    Setting("upstream.max_connections", 64, _positive(int), "HTTP connection pool size"),
    Setting("upstream.wallet_spelling", "docs", _wallet_spelling, "outbound margin wallet names"),
    Setting("upstream.pairs_ttl_s", 300.0, _positive(float), "cache life of GET /pairs for checks"),
    Setting(
        "upstream.public_cache_ttl_s", 0.25, _non_negative(float), "public micro-cache (0=off)"
    ),
    Setting("upstream.public_rps", 100.0, _non_negative(float), "public calls/s limit (0 = off)"),
    Setting(
        "upstream.private_rps",
        2.0,
        _non_negative(float),
        "private calls/s/account, never exceeded in any sliding window (0 = off)",
    ),
    Setting(
        "upstream.trading_reserve",
        0.5,
        _fraction,
        "share of each account's window only orders and cancels may use",
    ),
    Setting(
        "upstream.rate_margin_s",
        0.1,
        _non_negative(float),
        "added to the 1 s window against network jitter",
    ),
    Setting("ws.max_topics_per_connection", 20, _positive(int), "upstream topics per connection"),
    Setting("ws.linger_s", 2.0, _non_negative(float), "keep an unused topic this long"),
    Setting("ws.stale_after_s", 45.0, _positive(float), "silence that marks a socket dead"),
    Setting("ws.reconnect_base_s", 0.25, _positive(float), "first reconnect backoff ceiling"),
    Setting("ws.reconnect_cap_s", 15.0, _positive(float), "largest reconnect backoff"),
    Setting("ws.max_frame_bytes", 800, _positive(int), "largest frame sent upstream"),
    Setting("stream.queue_limit", 10000, _positive(int), "events queued per consumer"),
    Setting("token.refresh_margin_s", 60.0, _non_negative(float), "refresh this long before exp"),
    Setting("token.cache_dir", "", _optional_path, "persist tokens here (mode 0600); empty = off"),
    Setting("accounts.default", "", str, "account used without x-alp-account metadata"),
    Setting("sandbox.enabled", False, _bool, "start the embedded sandbox and trade against it"),
    Setting("sandbox.market", True, _bool, "synthetic market activity in the embedded sandbox"),
    Setting("sandbox.seed", 7, int, "seed of the sandbox market activity"),
    Setting("callers.dev_mode", False, _bool, "no caller auth (development only; logged loudly)"),
    Setting("tls.cert_file", "", _optional_path, "PEM server certificate (empty = plaintext)"),
    Setting("tls.key_file", "", _optional_path, "PEM server key"),
    Setting("tls.client_ca_file", "", _optional_path, "PEM CA for client certs (enables mTLS)"),
    Setting(
        "audit.path", "alp-gateway-audit.jsonl", _optional_path, "trading audit file (empty = off)"
    ),
    Setting("metrics.port", 9464, _port, "Prometheus /metrics port (0 = any free port)"),
    Setting("metrics.enabled", True, _bool, "serve Prometheus metrics"),
    Setting("metrics.host", "127.0.0.1", str, "Prometheus listen address"),
    Setting("health.interval_s", 5.0, _positive(float), "upstream health probe period"),
    Setting(
        "health.http_port",
        8081,
        _port,
        "plaintext HTTP /healthz and /readyz on listen.host (0 = off)",
    ),
    Setting(
        "trading.settle_s",
        1.0,
        _non_negative(float),
        "after an ambiguous failure, an order absent this long after is 'not placed'",
    ),
    Setting(
        "trading.clock_skew_s",
        5.0,
        _non_negative(float),
        "tolerated gateway/ALP clock difference when matching orders by time",
    ),
    Setting(
        "trading.idempotency_window_s",
        86400.0,
        _positive(float),
        "how long a client_order_id names its intent",
    ),
    Setting("drain.grace_s", 10.0, _non_negative(float), "in-flight calls finish within this"),
    Setting("log.level", "INFO", str, "logging level"),
    Setting("log.format", "text", _log_format, "log line format: text or json"),
)
_BY_NAME: Final = {s.name: s for s in SETTINGS}


@dataclass(frozen=True)
class AccountCredentials:
    """One ALP API key the gateway holds; the secret is a redacted `Secret`."""

    name: str
    api_key: str
    api_secret: Secret

    def __repr__(self) -> str:
        return f"AccountCredentials(name={self.name!r}, api_key=<redacted>, api_secret=<redacted>)"


@dataclass(frozen=True)
class CallerSpec:
    """A caller of the gateway: bearer-token hash and/or mTLS subject, scopes, ALP accounts."""

    name: str
    scopes: frozenset[str]
    accounts: frozenset[str]
    token_sha256: str = ""
    cert_subject: str = ""
    rate_per_s: float = 0.0


@dataclass(frozen=True)
class GatewayConfig:
    values: Mapping[str, Any]
    accounts: Mapping[str, AccountCredentials] = field(default_factory=dict)
    callers: Mapping[str, CallerSpec] = field(default_factory=dict)

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def default_account(self) -> str:
        chosen = str(self.values["accounts.default"])
        if chosen:
            return chosen
        return next(iter(self.accounts), "")

    def with_overrides(self, **dotted: Any) -> GatewayConfig:
        """A copy with settings replaced (keys use `__` for `.`): tests and `serve --sandbox`."""
        merged = dict(self.values)
        for key, value in dotted.items():
            name = key.replace("__", ".")
            if name not in _BY_NAME:
                raise ConfigError(name, "unknown setting")
            merged[name] = value
        return GatewayConfig(merged, self.accounts, self.callers)

    def with_accounts(self, accounts: Mapping[str, AccountCredentials]) -> GatewayConfig:
        return GatewayConfig(self.values, dict(accounts), self.callers)

    def with_callers(self, callers: Mapping[str, CallerSpec]) -> GatewayConfig:
        return GatewayConfig(self.values, self.accounts, dict(callers))


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name not in ("accounts", "callers"):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _coerce(setting: Setting, raw: object) -> object:
    try:
        if isinstance(setting.default, bool) and isinstance(raw, bool):
            return raw
        return setting.kind(str(raw))
    except (ValueError, TypeError) as exc:
        raise ConfigError(setting.name, f"{exc} (got {str(raw)[:60]!r})") from exc


def _read_secret(name: str, spec: Mapping[str, Any], env: Mapping[str, str]) -> Secret:
    if "api_secret" in spec:
        raise ConfigError(f"accounts.{name}.api_secret", "secrets never go in the TOML file")
    if "api_secret_file" in spec:
        path = Path(str(spec["api_secret_file"]))
        try:
            return Secret(path.read_text().strip())
        except OSError as exc:
            raise ConfigError(
                f"accounts.{name}.api_secret_file", f"unreadable: {exc.strerror}"
            ) from exc
    var = str(spec.get("api_secret_env", f"{ENV_PREFIX}ACCOUNT_{name.upper()}_API_SECRET"))
    value = env.get(var, "")
    if not value:
        raise ConfigError(f"accounts.{name}.api_secret", f"set environment variable {var}")
    return Secret(value)


def _accounts(table: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, AccountCredentials]:
    names = {k for k in table if isinstance(table[k], dict)}
    for var in env:
        match = re.fullmatch(rf"{ENV_PREFIX}ACCOUNT_([A-Z0-9_]+)_API_KEY", var)
        if match:
            names.add(match.group(1).lower())
    accounts: dict[str, AccountCredentials] = {}
    for name in sorted(names):
        if not _ACCOUNT_NAME.fullmatch(name):
            raise ConfigError(f"accounts.{name}", "names are lower case letters, digits, - and _")
        spec = table.get(name, {})
        key_var = f"{ENV_PREFIX}ACCOUNT_{name.upper()}_API_KEY"
        api_key = env.get(key_var) or str(spec.get("api_key", ""))
        if not api_key:
            raise ConfigError(f"accounts.{name}.api_key", f"set it in the file or {key_var}")
        accounts[name] = AccountCredentials(name, api_key, _read_secret(name, spec, env))
    return accounts


def _callers(table: Mapping[str, Any]) -> dict[str, CallerSpec]:
    from gateway.core.callers import parse_scopes

    callers: dict[str, CallerSpec] = {}
    for name, spec in table.items():
        where = f"callers.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(where, "must be a table")
        unknown = set(spec) - {"token_sha256", "cert_subject", "scopes", "accounts", "rate_per_s"}
        if unknown:
            raise ConfigError(f"{where}.{sorted(unknown)[0]}", "unknown setting")
        digest = str(spec.get("token_sha256", "")).lower()
        if digest and not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ConfigError(
                f"{where}.token_sha256", "must be 64 hex digits (sha256 of the token)"
            )
        subject = str(spec.get("cert_subject", ""))
        if not digest and not subject:
            raise ConfigError(where, "needs token_sha256 or cert_subject")
        try:
            scopes = parse_scopes([str(x) for x in spec.get("scopes", [])], f"{where}.scopes")
        except ValueError as exc:
            raise ConfigError(f"{where}.scopes", str(exc)) from exc
        accounts = frozenset(str(x) for x in spec.get("accounts", []))
        try:
            rate = float(spec.get("rate_per_s", 0.0))
        except (TypeError, ValueError):
            raise ConfigError(f"{where}.rate_per_s", "must be a number") from None
        if not 0.0 <= rate < 1e6:
            raise ConfigError(f"{where}.rate_per_s", "must be >= 0 (0 = no quota)")
        callers[name] = CallerSpec(name, scopes, accounts, digest, subject, rate)
    return callers


def load_config(path: str | None = None, env: Mapping[str, str] | None = None) -> GatewayConfig:
    """Defaults < TOML file < environment. Raises ConfigError naming the first bad setting."""
    env = os.environ if env is None else env
    path = path or env.get(ENV_PREFIX + "CONFIG") or None
    table: dict[str, Any] = {}
    if path:
        try:
            table = tomllib.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError("config file", f"{path}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("config file", f"{path}: {exc}") from exc
    flat = _flatten(table)
    account_table = flat.pop("accounts", {})
    if not isinstance(account_table, dict):
        raise ConfigError("accounts", "must be a table")
    if "default" in account_table:
        flat["accounts.default"] = account_table.pop("default")
    caller_table = flat.pop("callers", {})
    if not isinstance(caller_table, dict):
        raise ConfigError("callers", "must be a table")
    if "dev_mode" in caller_table:
        flat["callers.dev_mode"] = caller_table.pop("dev_mode")
    unknown = sorted(set(flat) - set(_BY_NAME))
    if unknown:
        raise ConfigError(unknown[0], "unknown setting")
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = env.get(setting.env, flat.get(setting.name, setting.default))
        values[setting.name] = _coerce(setting, raw)
    config = GatewayConfig(values, _accounts(account_table, env), _callers(caller_table))
    if config["accounts.default"] and config["accounts.default"] not in config.accounts:
        raise ConfigError("accounts.default", f"no account named {config['accounts.default']!r}")
    validate_startup(config)
    return config


def validate_startup(config: GatewayConfig) -> None:
    """Cross-setting checks that must hold before serving (also run by `check-config`)."""
    if bool(config["tls.cert_file"]) != bool(config["tls.key_file"]):
        raise ConfigError("tls.key_file", "tls.cert_file and tls.key_file go together")
    if config["tls.client_ca_file"] and not config["tls.cert_file"]:
        raise ConfigError("tls.client_ca_file", "mTLS needs tls.cert_file and tls.key_file")
    for name in ("tls.cert_file", "tls.key_file", "tls.client_ca_file"):
        path = config[name]
        if path and not Path(path).is_file():
            raise ConfigError(name, f"no such file: {path}")
    for caller in config.callers.values():
        unknown = set(caller.accounts) - set(config.accounts) - {"*"}
        if unknown and config.accounts:
            raise ConfigError(
                f"callers.{caller.name}.accounts", f"unknown accounts {sorted(unknown)}"
            )
