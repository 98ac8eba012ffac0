"""Gateway configuration: loaded once from TOML + ALP_GATEWAY_* environment, typed, frozen, checked.

The schema (every setting, type, default, bound and help) is `gateway.config_schema.Settings`;
each setting has one dotted name (`upstream.rest_url`) and one environment variable
(`ALP_GATEWAY_UPSTREAM_REST_URL`); README's settings table is generated from `SETTINGS`.
Secrets never sit in the TOML: accounts name an environment variable or a file for the API secret.

`load_config` checks types and bounds and refuses unknown keys anywhere; `startup_checks` runs the
checks that need the file system but no network (files readable, certificate and key matching,
audit directory writable, callers consistent); `serve` and `check-config` run exactly the same.
Every failure is a ConfigError naming the setting.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from gateway.config_schema import AccountTable, CallerTable, Settings
from gateway.core.token_policy import Secret
from gateway.errors import ConfigError

ENV_PREFIX: Final = "ALP_GATEWAY_"
_ACCOUNT_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_CALLER_NAME: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass(frozen=True)
class Setting:
    """One row of the schema, for the README table and environment parsing."""

    name: str
    default: object
    help: str

    @property
    def env(self) -> str:
        return env_name(self.name)


def env_name(dotted: str) -> str:
    return ENV_PREFIX + dotted.replace(".", "_").replace("-", "_").upper()


def _rows(model: type[BaseModel], prefix: str = "") -> list[Setting]:
    rows: list[Setting] = []
    for name, info in model.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(_rows(annotation, f"{prefix}{name}."))
        else:
            rows.append(Setting(f"{prefix}{name}", info.default, info.description or ""))
    return rows


SETTINGS: Final[tuple[Setting, ...]] = tuple(_rows(Settings))
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
    settings: Settings = field(default_factory=Settings)
    accounts: Mapping[str, AccountCredentials] = field(default_factory=dict)
    callers: Mapping[str, CallerSpec] = field(default_factory=dict)

    @property
    def default_account(self) -> str:
        """`accounts.default`, or the only account; "" when there is none (or none chosen)."""
        chosen = self.settings.accounts.default
        if chosen:
            return chosen
        return next(iter(self.accounts)) if len(self.accounts) == 1 else ""

    def with_overrides(self, **dotted: Any) -> GatewayConfig:
        """A copy with settings replaced (keys use `__` for `.`), validated like the file."""
        data = self.settings.model_dump()
        for key, value in dotted.items():
            name = key.replace("__", ".")
            if name not in _BY_NAME:
                raise ConfigError(name, "unknown setting")
            section, _, leaf = name.partition(".")
            data[section][leaf] = value
        return GatewayConfig(_validated(data), self.accounts, self.callers)

    def with_accounts(self, accounts: Mapping[str, AccountCredentials]) -> GatewayConfig:
        return GatewayConfig(self.settings, dict(accounts), self.callers)

    def with_callers(self, callers: Mapping[str, CallerSpec]) -> GatewayConfig:
        return GatewayConfig(self.settings, self.accounts, dict(callers))


def _validated(data: Mapping[str, Any]) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise _config_error(exc) from None


def _config_error(exc: ValidationError, prefix: str = "") -> ConfigError:
    first = exc.errors()[0]
    where = prefix + ".".join(str(part) for part in first["loc"])
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown setting"
    return ConfigError(where or "config", message)


def _read_secret(name: str, spec: AccountTable, env: Mapping[str, str]) -> Secret:
    if spec.api_secret_file:
        try:
            return Secret(Path(spec.api_secret_file).read_text().strip())
        except OSError as exc:
            raise ConfigError(
                f"accounts.{name}.api_secret_file", f"unreadable: {exc.strerror}"
            ) from exc
    var = spec.api_secret_env or env_name(f"account.{name}.api_secret")
    value = env.get(var, "")
    if not value:
        raise ConfigError(f"accounts.{name}.api_secret", f"set environment variable {var}")
    return Secret(value)


def _accounts(table: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, AccountCredentials]:
    names = {k for k, v in table.items() if isinstance(v, dict)}
    by_env: dict[str, str] = {}
    for name in sorted(names):
        if not _ACCOUNT_NAME.fullmatch(name):
            raise ConfigError(f"accounts.{name}", "names are lower case letters, digits, - and _")
        var = env_name(f"account.{name}.api_key")
        if var in by_env:
            raise ConfigError(
                f"accounts.{name}",
                f"same environment variables as account {by_env[var]!r} ({var}): rename one",
            )
        by_env[var] = name
    for var in env:
        match = re.fullmatch(rf"{ENV_PREFIX}ACCOUNT_([A-Z0-9_]+)_API_KEY", var)
        if match and var not in by_env:
            by_env[var] = match.group(1).lower()
    accounts: dict[str, AccountCredentials] = {}
    for var, name in sorted(by_env.items(), key=lambda item: item[1]):
        try:
            spec = AccountTable.model_validate(table.get(name, {}))
        except ValidationError as exc:
            raise _config_error(exc, f"accounts.{name}.") from None
        api_key = env.get(var) or spec.api_key
        if not api_key:
            raise ConfigError(f"accounts.{name}.api_key", f"set it in the file or {var}")
        accounts[name] = AccountCredentials(name, api_key, _read_secret(name, spec, env))
    return accounts


def _callers(table: Mapping[str, Any]) -> dict[str, CallerSpec]:
    from gateway.core.callers import parse_scopes

    callers: dict[str, CallerSpec] = {}
    for name, raw in table.items():
        where = f"callers.{name}"
        if not isinstance(raw, dict):
            raise ConfigError(where, "must be a table")
        if not _CALLER_NAME.fullmatch(name):
            raise ConfigError(where, "names are lower case letters, digits, - and _")
        try:
            spec = CallerTable.model_validate(raw)
        except ValidationError as exc:
            raise _config_error(exc, where + ".") from None
        if not spec.token_sha256 and not spec.cert_subject:
            raise ConfigError(where, "needs token_sha256 or cert_subject")
        try:
            scopes = parse_scopes(spec.scopes, f"{where}.scopes")
        except ValueError as exc:
            raise ConfigError(f"{where}.scopes", str(exc)) from exc
        callers[name] = CallerSpec(
            name,
            scopes,
            frozenset(spec.accounts),
            spec.token_sha256.lower(),
            spec.cert_subject,
            spec.rate_per_s,
        )
    return callers


def _nest(table: Mapping[str, Any]) -> dict[str, Any]:
    """The TOML tables minus account and caller definitions, which are parsed on their own."""
    data: dict[str, Any] = {}
    for section, value in table.items():
        if section in ("accounts", "callers") and isinstance(value, dict):
            data[section] = {k: v for k, v in value.items() if not isinstance(v, dict)}
        else:
            data[section] = value
    return data


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
    data = _nest(table)
    for setting in SETTINGS:
        if setting.env in env:
            section, _, leaf = setting.name.partition(".")
            holder = data.setdefault(section, {})
            if not isinstance(holder, dict):
                raise ConfigError(section, "must be a table")
            holder[leaf] = env[setting.env]
    for section in ("accounts", "callers"):
        if section in table and not isinstance(table[section], dict):
            raise ConfigError(section, "must be a table")
    settings = _validated(data)
    return GatewayConfig(
        settings,
        _accounts(table.get("accounts", {}), env),
        _callers(table.get("callers", {})),
    )


def startup_checks(config: GatewayConfig) -> None:
    """Everything `serve` checks before binding, without network (`check-config` runs this too)."""
    s = config.settings
    if config.accounts and len(config.accounts) > 1 and not s.accounts.default:
        raise ConfigError(
            "accounts.default",
            f"{len(config.accounts)} accounts configured: name the default one "
            "(calls without x-alp-account would otherwise trade on an arbitrary account)",
        )
    sandbox_accounts = s.sandbox.enabled and not config.accounts  # the sandbox brings its own
    if s.accounts.default and s.accounts.default not in config.accounts and not sandbox_accounts:
        raise ConfigError("accounts.default", f"no account named {s.accounts.default!r}")
    _check_tls(config)
    _check_callers(config)
    _check_host("listen.host", s.listen.host)
    if s.metrics.enabled:
        _check_host("metrics.host", s.metrics.host)
    ports = {"listen.port": s.listen.port, "health.http_port": s.health.http_port}
    if s.metrics.enabled:
        ports["metrics.port"] = s.metrics.port
    seen: dict[int, str] = {}
    for name, port in ports.items():
        if port and port in seen:
            raise ConfigError(name, f"port {port} is also {seen[port]}")
        seen[port] = name
    if s.audit.path:
        directory = Path(s.audit.path).resolve().parent
        if not directory.is_dir():
            raise ConfigError("audit.path", f"directory {directory} does not exist")
        if not os.access(directory, os.W_OK):
            raise ConfigError("audit.path", f"directory {directory} is not writable")
    cache = s.token.cache_dir
    if cache and Path(cache).exists() and not os.access(cache, os.W_OK):
        raise ConfigError("token.cache_dir", f"{cache} is not writable")
    if not s.callers.dev_mode and not config.callers:
        raise ConfigError(
            "callers",
            "no callers configured: add [callers.NAME] tables (alp-gateway new-caller makes "
            "one), or run with --dev-mode for development",
        )


_HOSTNAME: Final = re.compile(r"(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+")


def _check_host(name: str, host: str) -> None:
    """An IP literal or a well-formed host name; checked without the network (no DNS query)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
        return
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(host) or host.replace(".", "").isdigit():
        raise ConfigError(name, f"{host!r} is neither an IP address nor a host name")


def _readable(name: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(name, f"{path}: {exc.strerror}") from exc


def _check_tls(config: GatewayConfig) -> None:
    tls = config.settings.tls
    if bool(tls.cert_file) != bool(tls.key_file):
        raise ConfigError("tls.key_file", "tls.cert_file and tls.key_file go together")
    if tls.client_ca_file and not tls.cert_file:
        raise ConfigError("tls.client_ca_file", "mTLS needs tls.cert_file and tls.key_file")
    if not tls.cert_file:
        return
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert_pem = _readable("tls.cert_file", tls.cert_file)
    key_pem = _readable("tls.key_file", tls.key_file)
    try:
        certificate = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise ConfigError("tls.cert_file", "not a PEM certificate") from exc
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError("tls.key_file", "not an unencrypted PEM private key") from exc
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if key.public_key().public_bytes(encoding, public) != certificate.public_key().public_bytes(
        encoding, public
    ):
        raise ConfigError("tls.key_file", "does not match the certificate in tls.cert_file")
    if tls.client_ca_file:
        try:
            x509.load_pem_x509_certificates(_readable("tls.client_ca_file", tls.client_ca_file))
        except ValueError as exc:
            raise ConfigError("tls.client_ca_file", "not a PEM certificate bundle") from exc


def _check_callers(config: GatewayConfig) -> None:
    by_token: dict[str, str] = {}
    by_subject: dict[str, str] = {}
    for caller in config.callers.values():
        where = f"callers.{caller.name}"
        unknown = set(caller.accounts) - set(config.accounts) - {"*"}
        if unknown and config.accounts:
            raise ConfigError(f"{where}.accounts", f"unknown accounts {sorted(unknown)}")
        if caller.token_sha256:
            if caller.token_sha256 in by_token:
                raise ConfigError(
                    f"{where}.token_sha256", f"same token as caller {by_token[caller.token_sha256]}"
                )
            by_token[caller.token_sha256] = caller.name
        if caller.cert_subject:
            if not config.settings.tls.client_ca_file:
                raise ConfigError(
                    f"{where}.cert_subject",
                    "certificate callers need tls.client_ca_file (client certificates are not "
                    "checked without it)",
                )
            if caller.cert_subject in by_subject:
                raise ConfigError(
                    f"{where}.cert_subject",
                    f"same subject as caller {by_subject[caller.cert_subject]}",
                )
            by_subject[caller.cert_subject] = caller.name
