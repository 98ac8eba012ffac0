"""The README's settings table from gateway.config.SETTINGS; `--write` updates README.md in place.

tests/test_readme.py fails when README and config.py disagree.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from gateway.config import SETTINGS

README = Path(__file__).resolve().parent.parent / "README.md"
MARKERS = re.compile(r"(<!-- settings-table:start -->\n).*?(\n<!-- settings-table:end -->)", re.S)


def table() -> str:
    rows = ["| setting | environment variable | default | meaning |", "|---|---|---|---|"]
    for s in SETTINGS:
        default = str(s.default).lower() if isinstance(s.default, bool) else str(s.default)
        rows.append(f"| `{s.name}` | `{s.env}` | `{default or '(empty)'}` | {s.help} |")
    return "\n".join(rows)


def main() -> int:
    if "--write" in sys.argv:
        text = README.read_text()
        README.write_text(MARKERS.sub(lambda m: m.group(1) + table() + m.group(2), text))
        return 0
    print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
