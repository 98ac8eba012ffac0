"""Every operator mistake ends in one line naming the setting and exit code 2, never a traceback;
`check-config` runs exactly the start-up checks `serve` runs (those that need no network)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gateway.cli import run
from gateway.config import load_config
from gateway.core.callers import token_digest
from tests.gateway.certs import make_pki

TOKEN_A = token_digest("a-token")
ACCOUNTS = """
[accounts]
default = "desk-a"
[accounts.desk-a]
api_key = "k1"
api_secret_env = "SECRET_A"
"""
OK_CALLER = f"""
[callers.bot]
token_sha256 = "{TOKEN_A}"
scopes = ["market"]
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gateway.toml"
    path.write_text(f'[audit]\npath = "{tmp_path}/audit.jsonl"\n' + text)
    return str(path)


def one_line_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str], *needles: str) -> None:
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(__import__("os").environ):
        if name.startswith("ALP_GATEWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("SECRET_A", "s1")


@pytest.mark.parametrize(
    "text,setting",
    [
        ("[log]\nlevel = 'LOUD'\n", "log.level"),
        ("[listen]\nprot = 1\n", "listen.prot"),  # a typo: unknown keys are refused
        ("[accounts.desk-a]\napi_kye = 'k'\n", "accounts.desk-a.api_kye"),
        (OK_CALLER.replace('["market"]', '["root"]'), "callers.bot.scopes"),
        ("[callers.bot]\ntoken_sha256 = 'abc'\n", "callers.bot.token_sha256"),
        ("[upstream]\nrest_url = 'ftp://x'\n", "upstream.rest_url"),
        ("[upstream]\ntrading_reserve = 1.5\n", "upstream.trading_reserve"),
        ("[cluster]\nredis_url = 'http://x'\n", "cluster.redis_url"),
    ],
)
def test_invalid_values_name_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, setting: str
) -> None:
    one_line_exit_2(capsys, ["check-config", "--config", write(tmp_path, text)], setting)


@pytest.mark.parametrize(
    "text,setting",
    [
        (ACCOUNTS, "callers"),  # no callers and no --dev-mode
        (ACCOUNTS + OK_CALLER + "[listen]\nhost = 'bad host!'\n", "listen.host"),
        (
            ACCOUNTS.replace('default = "desk-a"', "")
            + "[accounts.desk-b]\napi_key = 'k2'\napi_secret_env = 'SECRET_A'\n"
            + OK_CALLER,
            "accounts.default",
        ),
        (
            ACCOUNTS + OK_CALLER + OK_CALLER.replace("[callers.bot]", "[callers.twin]"),
            "callers.twin.token_sha256",
        ),
        (
            ACCOUNTS + "[callers.svc]\ncert_subject = 'CN=svc'\nscopes = ['market']\n",
            "callers.svc.cert_subject",
        ),
        (ACCOUNTS + OK_CALLER + "[health]\nhttp_port = 50051\n", "health.http_port"),
        (
            ACCOUNTS
            + "[accounts.desk_a]\napi_key = 'k3'\napi_secret_env = 'SECRET_A'\n"
            + OK_CALLER,
            "accounts.desk_a",
        ),  # desk-a and desk_a would share ALP_GATEWAY_ACCOUNT_DESK_A_*
    ],
)
def test_start_up_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, setting: str
) -> None:
    one_line_exit_2(capsys, ["check-config", "--config", write(tmp_path, text)], setting)


def test_missing_audit_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "g.toml"
    path.write_text(ACCOUNTS + OK_CALLER + f'[audit]\npath = "{tmp_path}/nope/audit.jsonl"\n')
    one_line_exit_2(capsys, ["check-config", "--config", str(path)], "audit.path", "nope")


def test_certificate_and_key_must_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pki = make_pki(tmp_path)
    tls = f'[tls]\ncert_file = "{pki["server_cert"]}"\nkey_file = "{pki["client_key"]}"\n'
    one_line_exit_2(
        capsys,
        ["check-config", "--config", write(tmp_path, ACCOUNTS + OK_CALLER + tls)],
        "tls.key_file",
        "does not match",
    )
    good = tls.replace(str(pki["client_key"]), str(pki["server_key"]))
    assert run(["check-config", "--config", write(tmp_path, ACCOUNTS + OK_CALLER + good)]) == 0


def test_a_good_config_is_valid_and_hyphenated_names_read_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALP_GATEWAY_ACCOUNT_DESK_A_API_KEY", "from-env")
    path = write(tmp_path, ACCOUNTS + OK_CALLER)
    assert run(["check-config", "--config", path]) == 0
    assert "configuration valid" in capsys.readouterr().out
    assert load_config(path).accounts["desk-a"].api_key == "from-env"


def test_cli_overrides_are_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, ACCOUNTS + OK_CALLER)
    one_line_exit_2(capsys, ["serve", "--config", path, "--port", "70000"], "listen.port")


def test_serve_without_callers_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one_line_exit_2(capsys, ["serve", "--config", write(tmp_path, ACCOUNTS)], "callers")


def test_metrics_port_in_use_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        text = (
            ACCOUNTS
            + OK_CALLER
            + f"[metrics]\nport = {busy}\n[listen]\nport = 0\n[health]\nhttp_port = 0\n"
            + "[upstream]\nrest_url = 'http://127.0.0.1:9/api/v3'\nws_url = 'ws://127.0.0.1:9/ws'\n"
        )
        one_line_exit_2(capsys, ["serve", "--config", write(tmp_path, text)], "metrics.port")


def test_missing_sandbox_accounts_file(capsys: pytest.CaptureFixture[str]) -> None:
    one_line_exit_2(capsys, ["sandbox", "--accounts-file", "/nope.toml"], "--accounts-file")
