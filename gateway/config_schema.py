"""Every gateway setting in one typed, frozen schema (pydantic): name, type, default, bound, help.

A setting's dotted name is its section and field (`upstream.rest_url`), its environment variable
is `ALP_GATEWAY_` + the name with `.` -> `_`, upper case (`ALP_GATEWAY_UPSTREAM_REST_URL`). Unknown
keys are refused in every table. README's settings table is generated from this module.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


def _url(text: str) -> str:
    if not re.fullmatch(r"(https?|wss?)://[^\s/]+(/\S*)?", text):
        raise ValueError("must be an http(s):// or ws(s):// URL")
    return text.rstrip("/")


def _redis_url(text: str) -> str:
    if text and not re.fullmatch(r"(redis|rediss|unix)://\S+", text):
        raise ValueError("must be a redis://, rediss:// or unix:// URL (or empty)")
    return text


Url = Annotated[str, AfterValidator(_url)]
RedisUrl = Annotated[str, AfterValidator(_redis_url)]
Port = Annotated[int, Field(ge=0, le=65535)]
# finite: `inf` parses as a float and would overflow the window arithmetic at the first call
Seconds = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PositiveSeconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Rate = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class Listen(Section):
    host: str = Field("127.0.0.1", min_length=1, description="gRPC listen address")
    port: Port = Field(50051, description="gRPC listen port (0 = any free port)")
    reuse_port: bool = Field(
        False,
        description="share listen.port with the other workers of `serve --workers` (set by it)",
    )


class Upstream(Section):
    rest_url: Url = Field("https://www.alp.com/api/v3", description="ALP REST base URL")
    ws_url: Url = Field("wss://www.alp.com/ws", description="ALP WebSocket URL")
    timeout_s: PositiveSeconds = Field(10.0, description="upstream call timeout without deadline")
    deadline_margin_s: Seconds = Field(0.05, description="kept from caller deadline")
    retry_attempts: int = Field(3, ge=1, le=10, description="tries of an idempotent GET")
    retry_base_s: PositiveSeconds = Field(0.05, description="first retry backoff ceiling")
    retry_cap_s: PositiveSeconds = Field(1.0, description="largest retry backoff")
    max_connections: int = Field(64, ge=1, le=10_000, description="HTTP connection pool size")
    wallet_spelling: Literal["docs", "alias"] = Field(
        "docs", description="outbound margin wallet names: docs (MARGIN_CROSS) or alias"
    )
    pairs_ttl_s: PositiveSeconds = Field(300.0, description="cache life of GET /pairs for checks")
    public_cache_ttl_s: Seconds = Field(0.25, description="public micro-cache (0=off)")
    public_rps: Rate = Field(100.0, description="public calls/s limit (0 = off)")
    private_rps: Rate = Field(
        2.0, description="private calls/s/account, never exceeded in any sliding window (0 = off)"
    )
    trading_reserve: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="share of each account's window only orders and cancels may use",
    )
    rate_margin_s: Seconds = Field(
        0.1, description="added to the 1 s window against network jitter"
    )


class Ws(Section):
    max_topics_per_connection: int = Field(20, ge=1, description="upstream topics per connection")
    linger_s: Seconds = Field(2.0, description="keep an unused topic this long")
    stale_after_s: PositiveSeconds = Field(45.0, description="silence that marks a socket dead")
    reconnect_base_s: PositiveSeconds = Field(0.25, description="first reconnect backoff ceiling")
    reconnect_cap_s: PositiveSeconds = Field(15.0, description="largest reconnect backoff")
    connect_timeout_s: PositiveSeconds = Field(10.0, description="WebSocket handshake timeout")
    auth_grace_s: PositiveSeconds = Field(
        1.0,
        description="a private login ALP has not refused this long counts as accepted (ALP sends no ack)",
    )
    max_frame_bytes: int = Field(800, ge=64, description="largest frame sent upstream")


class Stream(Section):
    queue_limit: int = Field(10000, ge=1, description="events queued per consumer")


class Token(Section):
    refresh_margin_s: Seconds = Field(
        60.0, description="refresh this long before exp (at most a quarter of the lifetime)"
    )
    cache_dir: str = Field("", description="persist tokens here (mode 0600); empty = off")


class Accounts(Section):
    default: str = Field(
        "", description="account used without x-alp-account metadata (required with several)"
    )


class Sandbox(Section):
    enabled: bool = Field(False, description="start the embedded sandbox and trade against it")
    market: bool = Field(True, description="synthetic market activity in the embedded sandbox")
    seed: int = Field(7, description="seed of the sandbox market activity")


class Callers(Section):
    dev_mode: bool = Field(False, description="no caller auth (development only; logged loudly)")


class Tls(Section):
    cert_file: str = Field("", description="PEM server certificate (empty = plaintext)")
    key_file: str = Field("", description="PEM server key")
    client_ca_file: str = Field("", description="PEM CA for client certs (enables mTLS)")


class Audit(Section):
    path: str = Field("alp-gateway-audit.jsonl", description="trading audit file (empty = off)")


class Metrics(Section):
    port: Port = Field(9464, description="Prometheus /metrics port (0 = any free port)")
    enabled: bool = Field(True, description="serve Prometheus metrics")
    host: str = Field("127.0.0.1", min_length=1, description="Prometheus listen address")


class Health(Section):
    interval_s: PositiveSeconds = Field(5.0, description="upstream health probe period")
    http_port: Port = Field(
        8081, description="plaintext HTTP /healthz and /readyz on listen.host (0 = off)"
    )


class Trading(Section):
    settle_s: Seconds = Field(
        1.0,
        description="after an ambiguous failure, an order absent this long after is 'not placed'",
    )
    clock_skew_s: Seconds = Field(
        5.0, description="tolerated gateway/ALP clock difference when matching orders by time"
    )
    idempotency_window_s: PositiveSeconds = Field(
        86400.0, description="how long a client_order_id names its intent"
    )


class Cluster(Section):
    redis_url: RedisUrl = Field(
        "", description="Redis of the fleet (empty = one process, nothing shared)"
    )
    topic_lease_s: PositiveSeconds = Field(
        3.0,
        description="a public topic's holder renews its lease within this; another member takes "
        "the topic over at most this (plus a quarter of it) after the holder died",
    )


class Drain(Section):
    grace_s: Seconds = Field(10.0, description="in-flight calls finish within this")


class Log(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        "INFO", description="logging level"
    )
    format: Literal["text", "json"] = Field("text", description="log line format: text or json")


class Settings(Section):
    listen: Listen = Listen()
    upstream: Upstream = Upstream()
    ws: Ws = Ws()
    stream: Stream = Stream()
    token: Token = Token()
    accounts: Accounts = Accounts()
    sandbox: Sandbox = Sandbox()
    callers: Callers = Callers()
    tls: Tls = Tls()
    audit: Audit = Audit()
    metrics: Metrics = Metrics()
    health: Health = Health()
    trading: Trading = Trading()
    cluster: Cluster = Cluster()
    drain: Drain = Drain()
    log: Log = Log()


class AccountTable(Section):
    """`[accounts.NAME]`: the API key and where its secret is (never the secret itself)."""

    api_key: str = ""
    api_secret_env: str = ""
    api_secret_file: str = ""


class CallerTable(Section):
    """`[callers.NAME]`: how the caller proves who it is, and what it may do."""

    token_sha256: Annotated[str, Field(pattern=r"^([0-9a-fA-F]{64})?$")] = ""
    cert_subject: str = ""
    scopes: list[str] = Field(default_factory=list)
    accounts: list[str] = Field(default_factory=list)
    rate_per_s: Rate = 0.0
