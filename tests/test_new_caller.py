"""`alp-gateway new-caller`: a token shown once and a config table that authenticates it."""

from __future__ import annotations

import tomllib

import pytest

from gateway.cli import run
from gateway.config import _callers
from gateway.core.callers import token_digest


def test_table_on_stdout_token_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["new-caller", "desk-a-bot", "--scopes", "market,trade", "--accounts", "demo"]) == 0
    out, err = capsys.readouterr()
    token = err.strip().splitlines()[-1]
    assert token and token not in out
    table = tomllib.loads(out)["callers"]
    caller = _callers(table)["desk-a-bot"]
    assert caller.token_sha256 == token_digest(token)
    assert caller.scopes == frozenset({"market", "trade"}) and caller.accounts == {"demo"}


def test_two_runs_give_two_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    run(["new-caller", "a", "--scopes", "market"])
    first = capsys.readouterr().err
    run(["new-caller", "a", "--scopes", "market"])
    assert capsys.readouterr().err != first


@pytest.mark.parametrize(
    "argv",
    [
        ["new-caller", "Bad Name", "--scopes", "market"],
        ["new-caller", "x", "--scopes", "root"],
        ["new-caller", "x", "--scopes", ","],
        ["new-caller", "x", "--scopes", "market", "--rate-per-s", "-1"],
    ],
)
def test_mistakes_are_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1 and "Traceback" not in err
