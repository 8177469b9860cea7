"""Rendering for the CLI: one data dict, several outputs (table, JSON, CSV)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click


def echo_json(obj) -> None:
    """One strict JSON document on stdout (catalogue.jsonout: no NaN, exact numbers)."""
    from catalogue.jsonout import dumps

    click.echo(dumps(obj, indent=2))


def human_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def table(rows: Sequence[Sequence], headers: Sequence[str], title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, show_lines=False, header_style="bold")
    for h in headers:
        t.add_column(h, overflow="fold")
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    Console(width=max(100, _width())).print(t)


def _width() -> int:
    import shutil

    return shutil.get_terminal_size((160, 40)).columns


def stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def arrow_out(tbl, fmt: str, output: str | None) -> None:
    """Write a pyarrow Table as table/csv/json to stdout or a file."""
    if fmt == "csv":
        import pyarrow.csv as pcsv

        from catalogue.jsonout import finite_times

        tbl = finite_times(tbl)  # an infinite date is empty, as JSON's null
        if output:
            pcsv.write_csv(tbl, output)
        else:
            buf = __import__("io").BytesIO()
            pcsv.write_csv(tbl, buf)
            sys.stdout.write(buf.getvalue().decode())
        return
    if fmt == "json":
        from catalogue.jsonout import dumps, records

        text = dumps(records(tbl), indent=1)
        if output:
            open(output, "w", encoding="utf-8").write(text + "\n")
        else:
            click.echo(text)
        return
    from catalogue.jsonout import column_values

    # column by column, as JSON is: a value Python cannot hold (DuckDB's infinite DATE)
    # is empty instead of failing the whole answer, and a repeated column name is kept
    cols = [column_values(c) for c in tbl.columns]
    rows = [list(r) for r in zip(*cols, strict=True)] if cols else []
    if output:
        open(output, "w", encoding="utf-8").write(
            "\t".join(tbl.column_names)
            + "\n"
            + "".join("\t".join(str(v) for v in r) + "\n" for r in rows)
        )
        return
    table(rows, tbl.column_names)
    click.echo(f"({tbl.num_rows} row{'s' if tbl.num_rows != 1 else ''})")
