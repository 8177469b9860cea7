"""Every DuckDB connection nsdx opens, opened in one place.

DuckDB draws its own progress bar on the terminal when a statement runs longer than two
seconds; it went to stdout, into the middle of a JSON result (`nsdx query --format json`,
`--json` commands). :func:`connect` switches it off before the caller sees the connection,
so nothing but the answer reaches stdout. The domain packages and the shell call this, never
``duckdb.connect`` (tests/test_duckdb_connections.py checks it). It lives in ``validation``,
the bottom layer every package may import (as ``validation.errors`` does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import duckdb

# Session settings every connection gets (not global options: DuckDB refuses them in
# ``config`` at connect time, so they are SET right after).
SESSION = {"enable_progress_bar": False, "enable_progress_bar_print": False}


def connect(
    database: str = ":memory:", *, config: Mapping[str, Any] | None = None
) -> duckdb.DuckDBPyConnection:
    """A new DuckDB connection with ``config`` and the progress bar off."""
    con = duckdb.connect(database, config=dict(config or {}))
    try:
        for name, value in SESSION.items():
            con.execute(f"SET {name} = {'true' if value else 'false'}")
    except BaseException:
        con.close()
        raise
    return con


class DatasetFiles(list):
    """The Parquet files of another dataset (a referential check's ``in_dataset``), with
    ``configure(con)``, which makes a DuckDB connection able to read them (an S3 store's
    packaged httpfs extension and credentials; ``None`` for local files)."""

    def __init__(self, files=(), configure=None) -> None:
        super().__init__(files)
        self.configure = configure
