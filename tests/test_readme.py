"""README stays true: its settings table is the one config.py defines, and CI runs its test command."""

from __future__ import annotations

import re
from pathlib import Path

from scripts.settings_table import table

ROOT = Path(__file__).resolve().parent.parent


def test_settings_table_matches_config() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(
        r"<!-- settings-table:start -->\n(.*?)\n<!-- settings-table:end -->", readme, re.S
    )
    assert match, "README has no settings table markers"
    assert match.group(1) == table(), (
        "README settings table is stale: run scripts/settings_table.py"
    )


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "\nmake test\n" in ci
