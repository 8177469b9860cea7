"""Object storage: a local folder (``file://``) or any S3-compatible store (``s3://``).

Backends register by URL scheme in :data:`BACKENDS`; :func:`open_store` picks one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import StorageError
from .base import MANIFEST, STAGING, ObjectInfo, ObjectStore, sha256_file

BACKENDS: dict[str, Callable[[str], ObjectStore]] = {}


def register_backend(scheme: str, factory: Callable[[str], ObjectStore]) -> None:
    BACKENDS[scheme] = factory


def _local(url: str) -> ObjectStore:
    from .local import LocalStore

    return LocalStore(url[len("file://") :] if url.startswith("file://") else url)


def _s3(url: str) -> ObjectStore:
    from .s3 import S3Store

    return S3Store.from_url(url)


register_backend("file", _local)
register_backend("", _local)
register_backend("s3", _s3)


def open_store(url: str | Path) -> ObjectStore:
    url = str(url)
    scheme = url.split("://", 1)[0] if "://" in url else ""
    try:
        factory = BACKENDS[scheme]
    except KeyError:
        raise StorageError(
            f"unsupported storage URL {url!r}",
            hint="use file:///path/to/folder or s3://bucket/prefix in NSDX_STORAGE_URL",
        ) from None
    return factory(url)


__all__ = [
    "MANIFEST",
    "STAGING",
    "ObjectInfo",
    "ObjectStore",
    "open_store",
    "register_backend",
    "sha256_file",
]
