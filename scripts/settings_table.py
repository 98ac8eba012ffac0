"""Print the README's settings table from gateway.config.SETTINGS (a test keeps README in sync)."""

from __future__ import annotations

from gateway.config import SETTINGS


def table() -> str:
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = str(s.default).lower() if isinstance(s.default, bool) else str(s.default)
        rows.append(f"| `{s.name}` | `{s.env}` | `{default or '(empty)'}` | {s.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
