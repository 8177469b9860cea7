"""Let a DuckDB connection read what an :class:`ObjectStore` holds.

* :class:`~ingest.storage.local.LocalStore`: nothing to do, ``store.uri(key)`` is a path.
* :class:`~ingest.storage.s3.S3Store`: load the httpfs extension from the PyPI package
  ``duckdb-extension-httpfs`` (no network ``INSTALL``) and create a temporary S3 secret
  scoped to the store's bucket, so ``read_parquet(store.uri(key))`` (``s3://bucket/...``)
  works. Presigned ``http(s)://`` URLs only need :func:`load_httpfs`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import StorageError
from .base import ObjectStore


def httpfs_extension_path() -> Path:
    """The ``httpfs.duckdb_extension`` file shipped in ``duckdb-extension-httpfs``."""
    return extension_path("httpfs")


def extension_path(name: str) -> Path:
    """The ``<name>.duckdb_extension`` file shipped in the PyPI package
    ``duckdb-extension-<name>`` (httpfs, iceberg, avro), for the running DuckDB's version."""
    import duckdb

    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    if spec is None or not spec.submodule_search_locations:
        raise StorageError(
            f"the DuckDB {name} extension is not installed",
            hint=f"pip install duckdb-extension-{name}=={duckdb.__version__}",
        )
    roots = [Path(p) for p in spec.submodule_search_locations]
    file = f"{name}.duckdb_extension"
    exact = [r / "extensions" / f"v{duckdb.__version__}" / file for r in roots]
    for p in exact:
        if p.is_file():
            return p
    found = [p for r in roots for p in r.rglob(file)]
    versions = ", ".join(sorted(p.parent.name for p in found)) or "none"
    raise StorageError(
        f"no {name} extension for duckdb {duckdb.__version__} (found: {versions})",
        hint=f"pip install duckdb-extension-{name}=={duckdb.__version__} (versions must match)",
    )


def load_extension(con, name: str) -> None:
    """``LOAD`` extension ``name`` into ``con`` from its installed package (idempotent; no
    network ``INSTALL``)."""
    loaded = con.execute(
        "SELECT loaded FROM duckdb_extensions() WHERE extension_name = ?", [name]
    ).fetchone()
    if loaded and loaded[0]:
        return
    path = str(extension_path(name)).replace("'", "''")
    con.execute(f"LOAD '{path}'")


def load_httpfs(con) -> None:
    """``LOAD`` httpfs into ``con`` from the installed package (idempotent)."""
    loaded = con.execute(
        "SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'httpfs'"
    ).fetchone()
    if loaded and loaded[0]:
        return
    path = str(httpfs_extension_path()).replace("'", "''")
    con.execute(f"LOAD '{path}'")


def _q(value: str) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def configure_duckdb(con, store: ObjectStore, secret_name: str | None = None) -> None:
    """Make ``store.uri(key)`` readable from ``con``; a no-op for local folders."""
    from .s3 import S3Store

    if not isinstance(store, S3Store):
        return
    load_httpfs(con)
    creds = store.credentials()
    opts = {
        "TYPE": "s3",
        "KEY_ID": _q(creds["key_id"]),
        "SECRET": _q(creds["secret"]),
        "REGION": _q(store.region),
        "SCOPE": _q(f"s3://{store.bucket}"),
    }
    if token := creds["session_token"]:
        opts["SESSION_TOKEN"] = _q(token)
    if store.endpoint_url:
        u = urlsplit(store.endpoint_url)
        opts["ENDPOINT"] = _q(u.netloc)
        opts["USE_SSL"] = "true" if u.scheme == "https" else "false"
    opts["URL_STYLE"] = _q("path" if store.addressing_style == "path" else "vhost")
    name = secret_name or "nsdx_" + "".join(c if c.isalnum() else "_" for c in store.bucket)
    body = ", ".join(f"{k} {v}" for k, v in opts.items())
    con.execute(f"CREATE OR REPLACE TEMPORARY SECRET {name} ({body})")
    # a hung store fails a query after NSDX_S3_READ_TIMEOUT seconds a request (default 15),
    # 3 attempts, as boto3 does for ingest, not after DuckDB's 30 s x 4
    con.execute(f"SET http_timeout = {max(1, round(store.read_timeout))}")
    con.execute("SET http_retries = 2")
