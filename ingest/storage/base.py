"""The object-storage interface every backend implements.

A backend stores immutable objects under string keys ("org/dataset/v3/data/part-0.parquet").
Publishing a version is two steps so that no reader ever sees half of it:

1. the pipeline writes every file of the version, manifest included, into a local
   staging directory given by :meth:`ObjectStore.new_staging`;
2. :meth:`ObjectStore.publish` moves the directory to its final prefix. The local backend
   renames the directory (atomic); the S3 backend uploads the data objects first, checks
   their SHA-256, and writes ``manifest.json`` last, so a prefix without a manifest is never
   a committed version.

The catalogue pointer moves only after :meth:`publish` returns.
"""

from __future__ import annotations

import builtins
import hashlib
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

MANIFEST = "manifest.json"
STAGING = "_staging"
ICEBERG = "iceberg"  # the Iceberg tables' metadata files (catalogue.iceberg)
#: top-level folders of the store that are the store's own: a dataset's objects live under
#: ``<organisation>/<dataset>/``, so no organisation may take one of these names
RESERVED_PREFIXES = frozenset({STAGING, ICEBERG})


def reserved_prefix(name: str) -> bool:
    """Is ``name`` one of the store's own top-level folders (not an organisation's)?"""
    return name in RESERVED_PREFIXES


Progress = Callable[[int], None]  # called with a number of bytes done


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    modified: datetime


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


class ObjectStore(ABC):
    """A place to put published files. See module docstring for the publish protocol."""

    url: str

    # -- basic object operations -------------------------------------------------------
    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> int:
        n = 0
        for info in list(self.list(prefix)):
            self.delete(info.key)
            n += 1
        return n

    @abstractmethod
    def uri(self, key: str) -> str:
        """Where DuckDB (or any reader) finds the object: a local path or ``s3://bucket/key``."""

    def presign(self, key: str, expires_seconds: int = 3600) -> str:
        """A URL a standard HTTP client can GET without credentials until it expires."""
        raise NotImplementedError(f"{type(self).__name__} cannot make presigned URLs")

    def sha256(self, key: str) -> str:
        return hashlib.sha256(self.get_bytes(key)).hexdigest()

    # -- the publish protocol ----------------------------------------------------------
    @abstractmethod
    def new_staging(self) -> Path:
        """A fresh local directory to write one version into."""

    @abstractmethod
    def publish(self, staging: Path, prefix: str, progress: Progress | None = None) -> None:
        """Make ``staging``'s files visible under ``prefix``; ``manifest.json`` becomes visible last.

        On any failure nothing is visible under ``prefix`` as a committed version (no manifest)
        and the error says what to fix. ``progress(n)`` is told the bytes written since its
        previous call.
        """

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    def gc(self, older_than_seconds: float) -> builtins.list[str]:
        """Remove staging leftovers older than the threshold; never touch committed versions."""
        return []

    def check(self) -> None:
        """Write, read back and delete a probe object; raise a StorageError saying what is wrong."""
        key = f"{STAGING}/probe-{uuid.uuid4().hex}"
        payload = b"nsdx storage probe"
        self.put_bytes(key, payload)
        try:
            if self.get_bytes(key) != payload:
                from ..errors import StorageError

                raise StorageError("the probe object read back differs from what was written")
        finally:
            self.delete(key)
