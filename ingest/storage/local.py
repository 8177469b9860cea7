"""The embedded default: a local folder (``file://PATH``)."""

from __future__ import annotations

import builtins
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from .. import failpoints
from ..errors import StorageError
from .base import MANIFEST, STAGING, ObjectInfo, ObjectStore, Progress


class LocalStore(ObjectStore):
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.url = f"file://{self.root}"
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StorageError(
                f"cannot create the storage folder {self.root}: {e.strerror}",
                hint="set NSDX_STORAGE_URL to a writable folder (file:///path) or to s3://bucket/prefix",
            ) from e

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if p != self.root and self.root not in p.parents:
            raise StorageError(f"object key {key!r} escapes the storage root")
        return p

    def put_bytes(self, key: str, data: bytes) -> None:
        p = self._path(key)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise StorageError(f"object {key!r} not found in {self.url}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        base = self._path(prefix) if prefix else self.root
        start = base if base.is_dir() else base.parent
        if not start.exists():
            return
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                p = Path(dirpath) / name
                key = p.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = p.stat()
                    yield ObjectInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def uri(self, key: str) -> str:
        return str(self._path(key))

    def presign(self, key: str, expires_seconds: int = 3600) -> str:
        return self._path(key).as_uri()

    def new_staging(self) -> Path:
        d = self.root / STAGING / f"{int(time.time())}-{uuid.uuid4().hex[:12]}"
        d.mkdir(parents=True)
        return d

    def publish(self, staging: Path, prefix: str, progress: Progress | None = None) -> None:
        if not (staging / MANIFEST).exists():
            raise StorageError(f"staging directory {staging} has no {MANIFEST}")
        final = self._path(prefix)
        if final.exists():
            raise StorageError(
                f"{prefix} already exists; versions are immutable",
                hint="this is a bug or a concurrent publish of the same dataset; rerun the ingest",
            )
        final.parent.mkdir(parents=True, exist_ok=True)
        failpoints.hit("storage.before_rename")
        os.rename(staging, final)  # atomic on one filesystem: all files appear at once
        failpoints.hit("storage.committed")
        if progress:
            progress(sum(p.stat().st_size for p in final.rglob("*") if p.is_file()))

    def gc(self, older_than_seconds: float) -> builtins.list[str]:
        removed: builtins.list[str] = []
        staging_root = self.root / STAGING
        if not staging_root.exists():
            return removed
        cutoff = time.time() - older_than_seconds
        for entry in staging_root.iterdir():
            if entry.stat().st_mtime < cutoff:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(f"{STAGING}/{entry.name}")
        return removed
