"""What ingest changed in a source to read it: every repair is listed in the validation report.

Real exports are messy (title rows above the header, blank rows, empty unnamed columns, the
header repeated on every printed page, numbers written for people). nsdx reads them, and
says what it did, so that the provider sees exactly what was changed (``repairs`` in the
validation report, its HTML page and the catalogue's summary).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .numbers import describe_repairs

MAX_LINES = 10  # line numbers kept per kind of repair (the counts are exact)


@dataclass
class Repairs:
    """Filled by a reader while its batches are read, and by the pipeline."""

    title_rows: list[str] = field(default_factory=list)  # skipped rows above the header
    blank_rows: int = 0  # rows with no value in any column: skipped, not published
    header_rows: int = 0  # the header repeated inside the data: skipped
    header_lines: list[int] = field(default_factory=list)
    dropped_columns: list[str] = field(default_factory=list)  # no name and no value
    numbers: dict[str, dict[str, int]] = field(default_factory=dict)  # column -> kind -> n
    line_endings: str | None = None  # "CR" for old Mac / Excel exports

    def count_numbers(self, column: str, counts: dict[str, int]) -> None:
        into = self.numbers.setdefault(column, {})
        for k, n in counts.items():
            if n:
                into[k] = into.get(k, 0) + n

    def header_row(self, line: int | None) -> None:
        self.header_rows += 1
        if line is not None and len(self.header_lines) < MAX_LINES:
            self.header_lines.append(line)

    def to_list(self) -> list[dict[str, Any]]:
        """One entry per repair: ``{"kind", "message", ...details}`` (the report's words)."""
        out: list[dict[str, Any]] = []
        if self.line_endings == "CR":
            out.append(
                {
                    "kind": "line_endings",
                    "message": "lines end in CR only (old Mac / Excel export): read as lines",
                }
            )
        if self.title_rows:
            n = len(self.title_rows)
            out.append(
                {
                    "kind": "title_rows",
                    "count": n,
                    "rows": self.title_rows[:MAX_LINES],
                    "message": f"{n} title row{'s' if n != 1 else ''} above the header skipped: "
                    + "; ".join(repr(t) for t in self.title_rows[:3]),
                }
            )
        if self.blank_rows:
            n = self.blank_rows
            out.append(
                {
                    "kind": "blank_rows",
                    "count": n,
                    "message": f"{n:,} blank row{'s' if n != 1 else ''} (no value in any "
                    "column) skipped: not published",
                }
            )
        if self.header_rows:
            n = self.header_rows
            where = ""
            if self.header_lines:
                lines = ", ".join(map(str, self.header_lines))
                more = ", ..." if n > len(self.header_lines) else ""
                where = f" (line{'s' if len(self.header_lines) != 1 else ''} {lines}{more})"
            out.append(
                {
                    "kind": "repeated_header",
                    "count": n,
                    "lines": list(self.header_lines),
                    "message": f"the header row repeated {n:,} time{'s' if n != 1 else ''} "
                    f"inside the data{where}: skipped",
                }
            )
        for col in self.dropped_columns:
            out.append(
                {
                    "kind": "empty_column",
                    "column": col,
                    "message": f"column {col!r} has no name and no value in any row: dropped",
                }
            )
        for col, counts in self.numbers.items():
            if any(counts.values()):
                out.append(
                    {
                        "kind": "numbers",
                        "column": col,
                        "counts": dict(counts),
                        "message": describe_repairs(col, counts),
                    }
                )
        return out

    def __bool__(self) -> bool:
        return bool(self.to_list())


__all__ = ["Repairs"]
