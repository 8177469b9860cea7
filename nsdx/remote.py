"""``nsdx.connect()``: a DuckDB connection with a view for every dataset the caller may read.

    >>> import nsdx
    >>> con = nsdx.connect()                                        # this deployment
    >>> con = nsdx.connect("https://data.nansha.example", token="nsdx_...")   # a portal
    >>> con.sql("SELECT route_id, count(*) FROM transport.nansha_bus_gps GROUP BY 1").df()

View names are those of ``nsdx query``: ``<domain>.<id>`` for the current version
(``transport.nansha_bus_gps``), ``<domain>.<id>__<table>`` for a table of a multi-table
dataset (``transport.cairns_gtfs__stops``), and ``<view>__v<N>`` for every published version,
the current one included (``transport.nansha_bus_gps__v1``, ``transport.cairns_gtfs__stops__v2``).

Remotely the views read the portal's download URLs (:mod:`catalogue.downloads`) with
DuckDB's httpfs extension, loaded from the PyPI package ``duckdb-extension-httpfs``: the
query runs in the caller's process, reading only the Parquet footers and column chunks it
needs (HTTP range requests). Restricted tables the caller may read (its organisation's, or
bought) come as signed URLs that live ``NSDX_SIGNED_URL_TTL`` seconds on the portal (15
minutes by default): call ``connect`` again for fresh ones.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from validation.errors import NsdxError

if TYPE_CHECKING:
    import duckdb


class RemoteError(NsdxError):
    """The portal could not be reached or refused the listing."""

    transient = True


def listing(url: str, token: str | None = None, *, timeout: float = 60) -> dict:
    """The portal's ``GET /api/downloads`` answer: what ``token``'s holder may read."""
    import httpx

    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise RemoteError(
            f"{url!r} is not a portal address",
            hint="give the portal's base URL, e.g. https://data.nansha.example",
        )
    headers = {"Authorization": token} if token else {}
    try:
        r = httpx.get(f"{base}/api/downloads", headers=headers, timeout=timeout)
    except httpx.HTTPError as e:
        raise RemoteError(
            f"cannot reach the portal at {base}: {type(e).__name__}",
            hint="check the address and your network; is the portal running (`nsdx serve`)?",
        ) from None
    try:
        body = r.json()
    except ValueError:
        body = None
    if r.status_code != 200 or not isinstance(body, dict) or "tables" not in body:
        err = body.get("error") if isinstance(body, dict) else None
        if not isinstance(err, dict):
            err = {"message": f"HTTP {r.status_code}", "hint": "is this an nsdx portal?"}
        refusal = RemoteError(
            f"the portal at {base} refused the listing: {err.get('message')}",
            hint=err.get("hint"),
        )
        refusal.transient = r.status_code >= 500  # type: ignore[misc]  # per answer
        raise refusal
    return body


def connect_remote(url: str, token: str | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views over the portal's download URLs (see module doc)."""
    from catalogue.query import ViewSource, add_views, immutable_files
    from ingest.storage.duckdb_s3 import load_httpfs
    from validation import duck

    body = listing(url, token)
    con = duck.connect(":memory:")
    try:
        immutable_files(con)
        load_httpfs(con)
        con.execute("SET enable_http_metadata_cache = true")  # the same: sizes never change
        current, versions = [], []
        for t in body["tables"]:
            files = tuple(t["parquet"])
            versions.append(ViewSource(t["schema"], t["version_view"], files))
            if t.get("current"):
                current.append(ViewSource(t["schema"], t["view"], files))
        # version views last, as in the local connection: a dataset whose name ends in
        # "--v<N>" cannot take over another dataset's "<view>__v<N>"
        add_views(con, current + versions)
    except BaseException:
        con.close()
        raise
    return con


def connect(url: str | None = None, *, token: str | None = None) -> duckdb.DuckDBPyConnection:
    """This deployment's views (no ``url``), or a portal's (``url`` and, for restricted
    data, ``token``; ``NSDX_TOKEN`` when not given)."""
    if url is None:
        from .core import Nsdx

        return Nsdx().connect()
    return connect_remote(url, token if token is not None else os.environ.get("NSDX_TOKEN"))


__all__ = ["RemoteError", "connect", "connect_remote", "listing"]
