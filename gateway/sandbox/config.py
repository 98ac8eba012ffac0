"""Sandbox settings: accounts with their API keys, token lifetime, market activity, live quirks."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path


@dataclass(frozen=True)
class SandboxAccount:
    account_id: int
    api_key: str
    api_secret: str = field(repr=False)
    email: str
    name: str
    parent_id: int | None = None
    funding: tuple[tuple[str, Decimal], ...] = ()


@dataclass(frozen=True)
class Quirks:
    """Live-server behaviour from API-NOTES (2026-09); every default is what ALP does live.

    Each field names one behaviour so a test can switch it by name; the defaults never change to
    suit a test. `diff_silent`: live `diff.PAIR` is acknowledged but sends nothing.
    `depth_snapshot_on_subscribe`: live sends no snapshot on subscribe (False = live).
    `ticker_pair_silent`: live `ticker.PAIR` sends nothing.
    """

    max_topics_per_connection: int = 20
    max_inbound_frame_bytes: int = 800
    ticker_pair_silent: bool = True
    depth_snapshot_on_subscribe: bool = False
    diff_silent: bool = True
    close_on_unsolicited_text: bool = True
    ping_mode: str = "protocol"  # "protocol" | "text"
    ping_interval_s: float = 20.0
    welcome_time_unit: str = "ms"  # "ms" (live) | "ns" (docs)


DEMO_FUNDING = (
    ("USDT", Decimal("100000")),
    ("BTC", Decimal("10")),
    ("ETH", Decimal("200")),
    ("LTC", Decimal("500")),
    ("XRP", Decimal("100000")),
    ("SOL", Decimal("1000")),
)
DEFAULT_ACCOUNTS = (
    SandboxAccount(1001, "demo-key", "demo-secret", "demo@sandbox.alp", "Demo", None, DEMO_FUNDING),
    SandboxAccount(
        1002, "desk-b-key", "desk-b-secret", "desk-b@sandbox.alp", "Desk B", None, DEMO_FUNDING
    ),
    SandboxAccount(
        1003, "desk-b-sub-key", "desk-b-sub-secret", "sub@sandbox.alp", "Desk B sub", 1002, ()
    ),
)
FEE_ACCOUNT_ID = 1
HOUSE_MAKER_ID = 9001
HOUSE_TAKER_ID = 9002


@dataclass(frozen=True)
class Extensions:
    """Behaviour ALP does NOT document, each off by default; a test that needs one turns it on
    by name, so nothing green depends on a kindness of the sandbox by accident."""

    # Order objects of GET /accounts/order also carry `client_order_id`, `quote_amount` and
    # `stop_operator` (the documented order object has 18 fields and none of these).
    order_extra_fields: bool = False
    # `["auth", ts, "ok"]` after a successful WebSocket login (ALP sends nothing).
    ws_auth_ack: bool = False
    # Cancel by order_ids answers 202 with no body (as cancel-all does) instead of the per-id map.
    cancel_by_ids_empty_202: bool = False


@dataclass(frozen=True)
class SandboxConfig:
    accounts: tuple[SandboxAccount, ...] = DEFAULT_ACCOUNTS
    jwt_key: str = field(default="sandbox-jwt-signing-key-0123456789abcdef", repr=False)
    token_lifetime_s: float = 3600.0
    seed: int = 7
    market: bool = False
    market_rate_hz: float = 10.0
    market_pairs: tuple[str, ...] = ("BTC_USDT", "ETH_USDT", "ETH_BTC", "LTC_USDT", "SOL_USDT")
    ticker_interval_s: float = 1.0
    depth_interval_s: float = 1.0
    ws_send_queue: int = 2000
    quirks: Quirks = Quirks()
    extensions: Extensions = Extensions()

    def with_accounts(self, extra: tuple[SandboxAccount, ...]) -> SandboxConfig:
        return dataclasses.replace(self, accounts=(*self.accounts, *extra))


def load_accounts(path: str) -> tuple[SandboxAccount, ...]:
    """[[accounts]] tables: account_id, api_key, api_secret, email, name, parent_id, funding."""
    data = tomllib.loads(Path(path).read_text())
    accounts = []
    for entry in data.get("accounts", []):
        funding = tuple((str(k), Decimal(str(v))) for k, v in entry.get("funding", {}).items())
        accounts.append(
            SandboxAccount(
                int(entry["account_id"]),
                str(entry["api_key"]),
                str(entry["api_secret"]),
                str(entry.get("email", "")),
                str(entry.get("name", "")),
                entry.get("parent_id"),
                funding,
            )
        )
    return tuple(accounts)
