"""Write the "Access rules" table of docs/api.md from catalogue.access.TABLE (run by
`make docs`; tests/test_access.py checks the doc matches the table)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- access-table:begin -->\n", "<!-- access-table:end -->"


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from catalogue.access import table_markdown

    path = ROOT / "docs" / "api.md"
    doc = path.read_text(encoding="utf-8")
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(head + BEGIN + table_markdown() + END + tail, encoding="utf-8")


if __name__ == "__main__":
    main()
