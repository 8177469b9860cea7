"""Any S3-compatible object store (SeaweedFS, MinIO, AWS S3, Aliyun OSS) through boto3.

``NSDX_STORAGE_URL=s3://BUCKET/PREFIX`` plus the standard AWS variables:
``AWS_ENDPOINT_URL`` (unset = AWS), ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``, ``AWS_REGION`` (default us-east-1). nsdx-specific knobs:
``NSDX_S3_PUBLIC_ENDPOINT`` (host buyers reach; presigned URLs are signed for it),
``NSDX_S3_ADDRESSING_STYLE`` (path | virtual; default path with an endpoint, virtual without),
``NSDX_S3_VERIFY`` (auto | checksum | readback), ``NSDX_STAGING_DIR`` (local staging folder).

Publish protocol (see ``docs/storage.md`` for why):

1. a small *intent marker* ``_staging/publish/<hash of prefix>/<run-id>.json`` records that a
   publish to ``prefix`` started (so :meth:`S3Store.gc` can find and remove an interrupted
   upload's objects later);
2. the data objects are uploaded **directly under the final prefix** (no server-side copy),
   each with an ``x-amz-checksum-sha256`` the server verifies and stores;
3. every object's stored SHA-256 (or, for multipart objects, the composite of per-part
   SHA-256s, recomputed locally from the file) is compared with ``manifest.json``;
4. ``manifest.json`` is written last, with ``If-None-Match: *`` so two publishers can never
   both commit; a prefix without a manifest is not a version;
5. the marker and the local staging folder are removed.

boto3 is imported lazily: only this module touches it.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from .. import failpoints
from ..errors import BucketNotFound, StorageAuthError, StorageError, StorageUnreachable
from .base import MANIFEST, STAGING, ObjectInfo, ObjectStore, Progress

MiB = 1 << 20
MARKERS = f"{STAGING}/publish"

_AUTH_CODES = {
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "AccessDenied",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidSecurity",
    "AuthorizationHeaderMalformed",
    "RequestTimeTooSkewed",
    "403",
}
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _hex_to_b64(hexdigest: str) -> str:
    return _b64(bytes.fromhex(hexdigest))


class Credentials(TypedDict):
    """Resolved S3 credentials (DuckDB's CREATE SECRET takes them)."""

    key_id: str
    secret: str
    session_token: str | None


class ManifestEntry(TypedDict):
    """One file of a staged version, as its manifest lists it."""

    path: str
    bytes: int
    sha256: str
    _expected: NotRequired[str]  # the checksum S3 must report once it is uploaded


class S3Store(ObjectStore):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        region: str | None = None,
        public_endpoint: str | None = None,
        addressing_style: str | None = None,
        staging_dir: str | Path | None = None,
        part_size: int = 16 * MiB,
        multipart_threshold: int = 16 * MiB,
        max_concurrency: int = 4,
        max_attempts: int = 4,
        connect_timeout: float = 3.0,
        read_timeout: float = 15.0,
        verify: str = "auto",
    ) -> None:
        if not bucket or len(bucket) < 3:
            raise StorageError(
                f"invalid bucket name {bucket!r} in the storage URL",
                hint="bucket names need 3-63 characters: NSDX_STORAGE_URL=s3://BUCKET/PREFIX",
            )
        if verify not in ("auto", "checksum", "readback"):
            raise StorageError(f"NSDX_S3_VERIFY must be auto, checksum or readback, not {verify!r}")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url or None
        self.public_endpoint = public_endpoint or None
        self.region = region or "us-east-1"
        self.addressing_style = addressing_style or ("path" if self.endpoint_url else "virtual")
        self._access_key, self._secret_key, self._session_token = (
            access_key,
            secret_key,
            session_token,
        )
        self.part_size = part_size
        self.multipart_threshold = multipart_threshold
        self.max_concurrency = max_concurrency
        self.max_attempts = max_attempts
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.verify = verify
        self.url = f"s3://{bucket}/{self.prefix}".rstrip("/")
        base = Path(staging_dir) if staging_dir else Path(tempfile.gettempdir()) / "nsdx-staging"
        tag = hashlib.sha1(f"{self.endpoint_url}|{self.url}".encode()).hexdigest()[:12]
        self.staging_root = base / f"{bucket}-{tag}"
        self._client_obj: Any = None
        self._presign_client_obj: Any = None
        self._bucket_checked = False
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, **overrides: Any) -> S3Store:
        if not url.startswith("s3://"):
            raise StorageError(f"not an s3:// URL: {url!r}")
        rest = url[len("s3://") :]
        bucket, _, prefix = rest.partition("/")
        env = os.environ
        kw: dict[str, Any] = dict(
            endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"),
            access_key=env.get("AWS_ACCESS_KEY_ID"),
            secret_key=env.get("AWS_SECRET_ACCESS_KEY"),
            session_token=env.get("AWS_SESSION_TOKEN"),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            public_endpoint=env.get("NSDX_S3_PUBLIC_ENDPOINT"),
            addressing_style=env.get("NSDX_S3_ADDRESSING_STYLE"),
            staging_dir=env.get("NSDX_STAGING_DIR"),
            verify=env.get("NSDX_S3_VERIFY", "auto"),
        )
        if env.get("NSDX_S3_READ_TIMEOUT"):
            try:
                kw["read_timeout"] = float(env["NSDX_S3_READ_TIMEOUT"])
            except ValueError:
                raise StorageError(
                    f"NSDX_S3_READ_TIMEOUT must be a number of seconds, not "
                    f"{env['NSDX_S3_READ_TIMEOUT']!r}"
                ) from None
        kw.update(overrides)
        return cls(bucket, prefix, **kw)

    # -- boto3 plumbing -----------------------------------------------------------------
    def _make_client(
        self,
        endpoint: str | None,
        *,
        read_timeout: float | None = None,
        attempts: int | None = None,
    ) -> Any:
        import boto3
        from botocore.config import Config

        cfg = Config(
            region_name=self.region,
            signature_version="s3v4",
            connect_timeout=self.connect_timeout,
            read_timeout=read_timeout or self.read_timeout,
            retries={"max_attempts": attempts or self.max_attempts, "mode": "standard"},
            s3={"addressing_style": self.addressing_style},
            max_pool_connections=max(10, self.max_concurrency * 2),
        )
        session = self._session = boto3.session.Session(
            aws_access_key_id=self._access_key,
            aws_secret_access_key=self._secret_key,
            aws_session_token=self._session_token,
            region_name=self.region,
        )
        return session.client("s3", endpoint_url=endpoint, config=cfg)

    @property
    def _client(self) -> Any:
        with self._lock:
            if self._client_obj is None:
                self._client_obj = self._make_client(self.endpoint_url)
            return self._client_obj

    def _full(self, key: str) -> str:
        key = key.lstrip("/")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1 :] if self.prefix else full_key

    def _where(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region})"

    def _error(self, e: BaseException, doing: str, key: str | None = None) -> StorageError:
        """Translate a boto3/botocore exception into the StorageError that says what to fix."""
        from botocore import exceptions as bx

        if isinstance(e, StorageError):
            return e
        where = self._where()
        if isinstance(
            e,
            bx.EndpointConnectionError
            | bx.ConnectTimeoutError
            | bx.ReadTimeoutError
            | bx.ConnectionClosedError
            | bx.ProxyConnectionError
            | bx.ConnectionError
            | ConnectionError
            | TimeoutError,
        ):
            return StorageUnreachable(
                f"cannot reach the object store at {where} while {doing}: {e}",
                hint="is the server at AWS_ENDPOINT_URL running? check AWS_ENDPOINT_URL and the network",
            )
        if isinstance(e, bx.NoCredentialsError | bx.PartialCredentialsError):
            return StorageAuthError(
                f"no S3 credentials found while {doing}",
                hint="set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or an AWS profile / role)",
            )
        if isinstance(e, bx.ClientError):
            err = e.response.get("Error", {})
            code = str(err.get("Code", ""))
            msg = err.get("Message") or str(e)
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                return BucketNotFound(
                    f"bucket {self.bucket!r} does not exist at {where}",
                    hint=f"create it with `aws s3 mb s3://{self.bucket}` or fix NSDX_STORAGE_URL",
                )
            if code == "RequestTimeTooSkewed":
                return StorageAuthError(
                    f"the object store refused the request while {doing}: clock skew ({msg})",
                    hint="fix this machine's clock (NTP)",
                )
            if code in _AUTH_CODES:
                return StorageAuthError(
                    f"the object store at {where} refused the credentials while {doing}: "
                    f"{code} {msg}",
                    hint="check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and the key's "
                    f"permissions on bucket {self.bucket!r})",
                )
            if code in _NOT_FOUND:
                return StorageError(f"object {key!r} not found in {self.url}")
            if code == "BadDigest" or code.startswith("XAmzContentChecksum"):
                return StorageError(
                    f"checksum mismatch while {doing} {key!r}: the bytes the server received "
                    f"differ from the manifest's SHA-256 ({code})",
                    hint="the staged file changed or was corrupted; rerun the ingest",
                )
            if status and int(status) >= 500 or code in ("SlowDown", "ServiceUnavailable"):
                return StorageUnreachable(
                    f"the object store at {where} failed while {doing}: {code} {msg}",
                    hint="the server is overloaded or failing; retry later",
                )
            return StorageError(f"the object store at {where} refused {doing}: {code} {msg}")
        if isinstance(e, bx.BotoCoreError):
            return StorageError(f"S3 client error while {doing}: {e}")
        return StorageError(f"unexpected error while {doing}: {type(e).__name__}: {e}")

    def _call(self, doing: str, fn, *args, key: str | None = None, **kw):
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kw)
        except (BotoCoreError, ClientError, ConnectionError, TimeoutError) as e:
            raise self._error(e, doing, key) from e

    def _ensure_bucket(self) -> None:
        """One cheap listing so a missing bucket or bad credentials fail with a clear error,
        and a server that accepts connections but does not answer (hung, stopped) fails in
        seconds: this first request waits ``connect_timeout`` for the answer, twice."""
        if self._bucket_checked:
            return
        from botocore.exceptions import ReadTimeoutError

        probe = self._make_client(self.endpoint_url, read_timeout=self.connect_timeout, attempts=2)
        try:
            self._call(
                f"checking bucket {self.bucket!r}",
                probe.list_objects_v2,
                Bucket=self.bucket,
                Prefix=self._full(MANIFEST),
                MaxKeys=1,
            )
        except StorageUnreachable as e:
            if isinstance(e.__cause__, ReadTimeoutError):
                raise StorageUnreachable(
                    f"cannot reach the object store at {self._where()}: it accepts connections "
                    f"but did not answer within {self.connect_timeout:g} s (2 attempts)",
                    hint="is the server at AWS_ENDPOINT_URL hung or stopped? restart it, or "
                    "check AWS_ENDPOINT_URL and the network",
                ) from e
            raise
        self._bucket_checked = True

    # -- basic object operations ---------------------------------------------------------
    def put_bytes(self, key: str, data: bytes) -> None:
        self._ensure_bucket()
        self._call(
            f"writing {key!r}",
            self._client.put_object,
            Bucket=self.bucket,
            Key=self._full(key),
            Body=data,
            ChecksumSHA256=_b64(hashlib.sha256(data).digest()),
            key=key,
        )

    def get_bytes(self, key: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        self._ensure_bucket()
        try:
            r = self._client.get_object(Bucket=self.bucket, Key=self._full(key))
            return r["Body"].read()
        except (BotoCoreError, ClientError, ConnectionError) as e:
            raise self._error(e, f"reading {key!r}", key) from e

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        self._ensure_bucket()
        try:
            self._client.head_object(Bucket=self.bucket, Key=self._full(key))
            return True
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND:
                # HEAD has no body: tell a missing object from a missing bucket
                self._ensure_bucket()
                return False
            raise self._error(e, f"checking {key!r}", key) from e
        except Exception as e:
            raise self._error(e, f"checking {key!r}", key) from e

    def _list_full(self, full_prefix: str) -> Iterator[dict]:
        paginator = self._client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
                yield from page.get("Contents", [])
        except Exception as e:
            raise self._error(e, f"listing {full_prefix!r}") from e

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        full = self._full(prefix) if prefix else (f"{self.prefix}/" if self.prefix else "")
        for obj in self._list_full(full):
            yield ObjectInfo(self._rel(obj["Key"]), int(obj["Size"]), obj["LastModified"])

    def delete(self, key: str) -> None:
        self._call(
            f"deleting {key!r}",
            self._client.delete_object,
            Bucket=self.bucket,
            Key=self._full(key),
            key=key,
        )

    def delete_prefix(self, prefix: str) -> int:
        keys = [o["Key"] for o in self._list_full(self._full(prefix))]
        self._delete_full_keys(keys)
        return len(keys)

    def _delete_full_keys(self, keys: builtins.list[str]) -> None:
        for i in range(0, len(keys), 1000):
            batch = keys[i : i + 1000]
            try:
                r = self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )
                errors = r.get("Errors") or []
            except Exception as e:
                # some S3-compatibles lack DeleteObjects: fall back to one by one
                from botocore.exceptions import ClientError

                if isinstance(e, ClientError) and str(e.response.get("Error", {}).get("Code")) in (
                    "NotImplemented",
                    "MissingContentMD5",
                ):
                    for k in batch:
                        self._call(
                            f"deleting {k!r}", self._client.delete_object, Bucket=self.bucket, Key=k
                        )
                    continue
                raise self._error(e, "deleting objects") from e
            if errors:
                first = errors[0]
                raise StorageError(
                    f"could not delete {len(errors)} object(s), e.g. {first.get('Key')!r}: "
                    f"{first.get('Code')} {first.get('Message')}"
                )

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._full(key)}"

    def presign(self, key: str, expires_seconds: int = 3600) -> str:
        """A GET URL signed for the endpoint buyers reach (``NSDX_S3_PUBLIC_ENDPOINT``)."""
        with self._lock:
            if self._presign_client_obj is None:
                self._presign_client_obj = (
                    self._make_client(self.public_endpoint) if self.public_endpoint else None
                )
        client = self._presign_client_obj or self._client
        return self._call(
            f"presigning {key!r}",
            client.generate_presigned_url,
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._full(key)},
            ExpiresIn=int(expires_seconds),
        )

    def sha256(self, key: str) -> str:
        h = hashlib.sha256()
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"]
            for chunk in body.iter_chunks(MiB):
                h.update(chunk)
        except Exception as e:
            raise self._error(e, f"reading {key!r}", key) from e
        return h.hexdigest()

    def credentials(self) -> Credentials:
        """Resolved key id / secret / token (for DuckDB's CREATE SECRET)."""
        if self._access_key and self._secret_key:
            return {
                "key_id": self._access_key,
                "secret": self._secret_key,
                "session_token": self._session_token,
            }
        self._client  # noqa: B018 - builds the session
        creds = self._session.get_credentials()
        if creds is None:
            raise StorageAuthError(
                "no S3 credentials found",
                hint="set AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
            )
        f = creds.get_frozen_credentials()
        return {"key_id": f.access_key, "secret": f.secret_key, "session_token": f.token}

    # -- publish protocol ---------------------------------------------------------------
    def new_staging(self) -> Path:
        self.staging_root.mkdir(parents=True, exist_ok=True)
        d = self.staging_root / f"{int(time.time())}-{uuid.uuid4().hex[:12]}"
        d.mkdir()
        return d

    def _marker_dir(self, prefix: str) -> str:
        return f"{MARKERS}/{hashlib.sha1(prefix.encode()).hexdigest()[:16]}"

    def transfer_config(self):
        """The boto3 TransferConfig equivalent of this store's settings (for raw transfers)."""
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.part_size,
            max_concurrency=self.max_concurrency,
            use_threads=True,
        )

    def _read_manifest(self, staging: Path) -> tuple[bytes, builtins.list[ManifestEntry]]:
        mpath = staging / MANIFEST
        if not mpath.exists():
            raise StorageError(f"staging directory {staging} has no {MANIFEST}")
        raw = mpath.read_bytes()
        try:
            files = json.loads(raw)["files"]
            entries: builtins.list[ManifestEntry] = [
                {
                    "path": str(f["path"]),
                    "bytes": int(f["bytes"]),
                    "sha256": str(f["sha256"]).lower(),
                }
                for f in files
            ]
        except (ValueError, KeyError, TypeError) as e:
            raise StorageError(
                f"{mpath} is not a valid manifest (need a 'files' list of path/bytes/sha256): {e}"
            ) from e
        listed = {e["path"] for e in entries}
        on_disk = {p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()}
        on_disk.discard(MANIFEST)
        if missing := sorted(listed - on_disk):
            raise StorageError(f"{MANIFEST} lists files missing from {staging}: {missing[:5]}")
        if extra := sorted(on_disk - listed):
            raise StorageError(
                f"{staging} holds files {MANIFEST} does not list: {extra[:5]}",
                hint="every published file must be in the manifest with its sha256",
            )
        for ent in entries:
            size = (staging / ent["path"]).stat().st_size
            if size != ent["bytes"]:
                raise StorageError(
                    f"{ent['path']}: {size} bytes on disk but {ent['bytes']} in {MANIFEST}"
                )
        return raw, entries

    def publish(self, staging: Path, prefix: str, progress: Progress | None = None) -> None:
        prefix = prefix.strip("/")
        manifest_raw, entries = self._read_manifest(staging)
        self._ensure_bucket()
        if self.exists(f"{prefix}/{MANIFEST}"):
            raise StorageError(
                f"{prefix} already exists; versions are immutable",
                hint="this is a bug or a concurrent publish of the same dataset; rerun the ingest",
            )
        run_id = f"{int(time.time())}-{uuid.uuid4().hex[:12]}"
        marker = f"{self._marker_dir(prefix)}/{run_id}.json"
        marker_body = json.dumps(
            {"prefix": prefix, "run": run_id, "started": time.time(), "store": self.url}
        ).encode()
        self.put_bytes(marker, marker_body)
        uploaded = False
        try:
            self._upload_all(staging, prefix, entries, progress)
            uploaded = True
            self._verify_all(staging, prefix, entries)
            self._remove_strays(prefix, {e["path"] for e in entries})
            failpoints.hit("storage.before_manifest")
            self._commit_manifest(prefix, manifest_raw)
            failpoints.hit("storage.committed")
        except BaseException as e:
            self._rollback(prefix, marker, uploaded, e)
            if isinstance(e, Exception) and not isinstance(e, StorageError):
                raise self._error(e, f"publishing {prefix}") from e
            raise
        try:
            self._delete_full_keys(
                [o["Key"] for o in self._list_full(self._full(self._marker_dir(prefix)) + "/")]
            )
        except StorageError:
            pass  # committed; gc removes the marker later
        shutil.rmtree(staging, ignore_errors=True)

    def _upload_all(
        self,
        staging: Path,
        prefix: str,
        entries: builtins.list[ManifestEntry],
        progress: Progress | None,
    ) -> None:
        """Upload every file once, straight to its final key, each part SHA-256-checked.

        Small files: one PUT whose ``x-amz-checksum-sha256`` is the manifest's hash, so the
        server itself rejects a body that differs (no local hashing). Large files: multipart
        with ``part_size`` parts read once by this thread, which hashes each part (sent as the
        part's checksum, verified by the server) and the whole file (checked against the
        manifest) while ``max_concurrency`` threads upload; at most ``max_concurrency + 2``
        parts are in memory.
        """
        client = self._client
        pool = ThreadPoolExecutor(max_workers=self.max_concurrency)
        in_memory = threading.BoundedSemaphore(self.max_concurrency + 2)
        cb_lock = threading.Lock()
        futures: list[Future] = []
        multipart: list[tuple[ManifestEntry, str, str, list[tuple[int, str, Future]]]] = []

        def done(n: int) -> None:
            if progress:
                with cb_lock:
                    progress(n)

        def put_small(e: ManifestEntry, key: str) -> None:
            with open(staging / e["path"], "rb") as body:
                client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ChecksumSHA256=_hex_to_b64(e["sha256"]),
                )
            done(e["bytes"])
            failpoints.hit("storage.uploaded")

        def put_part(key: str, upload_id: str, number: int, data: bytes, sha: str) -> dict:
            try:
                r = client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    ChecksumSHA256=sha,
                )
            finally:
                in_memory.release()
            done(len(data))
            return {"PartNumber": number, "ETag": r["ETag"], "ChecksumSHA256": sha}

        def first_failure() -> BaseException | None:
            for f in futures:
                if f.done() and f.exception() is not None:
                    return f.exception()
            return None

        current = "starting the upload"
        try:
            # largest first: the long multipart uploads start while small files fill gaps
            for e in sorted(entries, key=lambda e: -e["bytes"]):
                key = self._full(f"{prefix}/{e['path']}")
                current = f"uploading {e['path']}"
                if e["bytes"] < self.multipart_threshold:
                    e["_expected"] = _hex_to_b64(e["sha256"])
                    futures.append(pool.submit(put_small, e, key))
                    continue
                upload_id = client.create_multipart_upload(
                    Bucket=self.bucket, Key=key, ChecksumAlgorithm="SHA256"
                )["UploadId"]
                parts: list[tuple[int, str, Future]] = []
                multipart.append((e, key, upload_id, parts))
                whole, digests = hashlib.sha256(), []
                with open(staging / e["path"], "rb") as src:
                    number = 0
                    while True:
                        in_memory.acquire()
                        data = src.read(self.part_size)
                        if not data:
                            in_memory.release()
                            break
                        number += 1
                        whole.update(data)
                        digest = hashlib.sha256(data).digest()
                        digests.append(digest)
                        fut = pool.submit(put_part, key, upload_id, number, data, _b64(digest))
                        futures.append(fut)
                        parts.append((number, _b64(digest), fut))
                        if err := first_failure():
                            raise err
                if whole.hexdigest() != e["sha256"]:
                    raise StorageError(
                        f"{e['path']}: SHA-256 of the staged file differs from {MANIFEST}",
                        hint="the staged file changed or was corrupted; rerun the ingest",
                    )
                e["_expected"] = (
                    f"{_b64(hashlib.sha256(b''.join(digests)).digest())}-{len(digests)}"
                )
            for f in futures:
                f.result()
            for e, key, upload_id, parts in multipart:
                current = f"completing {e['path']}"
                client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": [p.result() for _, _, p in parts]},
                )
                failpoints.hit("storage.uploaded")
            multipart.clear()
        except BaseException as err:
            for f in futures:
                f.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            mapped = self._error(err, current) if isinstance(err, Exception) else None
            if not isinstance(mapped, StorageUnreachable):
                for _e, key, upload_id, _parts in multipart:
                    try:
                        client.abort_multipart_upload(
                            Bucket=self.bucket, Key=key, UploadId=upload_id
                        )
                    except Exception:  # noqa: BLE001 - gc aborts stale uploads later
                        pass
            if mapped is None or mapped is err:
                raise
            raise mapped from err
        pool.shutdown(wait=True)

    def _verify_all(
        self, staging: Path, prefix: str, entries: builtins.list[ManifestEntry]
    ) -> None:
        def check(e: ManifestEntry) -> None:
            key = self._full(f"{prefix}/{e['path']}")
            head = self._call(
                f"verifying {e['path']}",
                self._client.head_object,
                Bucket=self.bucket,
                Key=key,
                ChecksumMode="ENABLED",
                key=e["path"],
            )
            if int(head["ContentLength"]) != e["bytes"]:
                raise StorageError(
                    f"{prefix}/{e['path']}: stored size {head['ContentLength']} differs from "
                    f"{e['bytes']} in {MANIFEST}"
                )
            stored = head.get("ChecksumSHA256")
            if stored and self.verify != "readback":
                if stored != e["_expected"]:
                    raise StorageError(
                        f"{prefix}/{e['path']}: stored SHA-256 {stored} differs from the "
                        f"expected {e['_expected']} (manifest {e['sha256']})",
                        hint="the upload was corrupted; rerun the ingest",
                    )
                return
            if self.verify == "checksum":
                raise StorageError(
                    f"the object store at {self._where()} returned no SHA-256 checksum",
                    hint="set NSDX_S3_VERIFY=readback (or auto) for this store",
                )
            got = self.sha256(f"{prefix}/{e['path']}")  # read back
            if got != e["sha256"]:
                raise StorageError(
                    f"{prefix}/{e['path']}: SHA-256 read back ({got}) differs from {MANIFEST}",
                    hint="the upload was corrupted; rerun the ingest",
                )

        with ThreadPoolExecutor(max_workers=max(1, self.max_concurrency * 2)) as pool:
            for f in [pool.submit(check, e) for e in entries]:
                f.result()

    def _remove_strays(self, prefix: str, keep: set[str]) -> None:
        """Objects an earlier interrupted publish left under ``prefix`` that this one lacks."""
        base = self._full(prefix) + "/"
        stray = [o["Key"] for o in self._list_full(base) if o["Key"][len(base) :] not in keep]
        if stray:
            self._delete_full_keys(stray)

    def _commit_manifest(self, prefix: str, raw: bytes) -> None:
        from botocore.exceptions import ClientError

        args: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._full(f"{prefix}/{MANIFEST}"),
            "Body": raw,
            "ChecksumSHA256": _b64(hashlib.sha256(raw).digest()),
            "ContentType": "application/json",
        }
        try:
            self._client.put_object(IfNoneMatch="*", **args)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise _AlreadyCommitted(
                    f"{prefix} was committed by another publisher while this one ran",
                    hint="two ingests of the same dataset version ran at once; rerun the ingest",
                ) from e
            if code in ("NotImplemented", "501"):  # store without conditional writes
                if self.exists(f"{prefix}/{MANIFEST}"):
                    raise _AlreadyCommitted(f"{prefix} was committed by another publisher") from e
                self._call(f"writing {prefix}/{MANIFEST}", self._client.put_object, **args)
                return
            raise self._error(e, f"writing {prefix}/{MANIFEST}") from e
        except Exception as e:
            raise self._error(e, f"writing {prefix}/{MANIFEST}") from e

    def _rollback(self, prefix: str, marker: str, uploaded: bool, err: BaseException) -> None:
        """Best effort: remove what this run uploaded; if the store is gone, gc does it later."""
        del uploaded
        if isinstance(err, _AlreadyCommitted | StorageUnreachable):
            return
        try:
            if not self.exists(f"{prefix}/{MANIFEST}"):
                self.delete_prefix(prefix + "/")
            self.delete(marker)
        except Exception:  # noqa: BLE001 - the original error matters more
            pass

    def gc(self, older_than_seconds: float) -> builtins.list[str]:
        """Remove leftovers of interrupted publishes older than the threshold.

        * ``_staging/publish/*`` markers: if their prefix has no manifest, the objects under
          it (an interrupted upload) are deleted, then the marker;
        * any other ``_staging/`` object (probes, …);
        * unfinished multipart uploads under the store prefix;
        * local staging folders of this store.

        A prefix with a ``manifest.json`` is a committed version and is never touched.
        """
        cutoff = time.time() - older_than_seconds
        removed: list[str] = []
        for info in list(self.list(f"{STAGING}/")):
            if info.modified.timestamp() >= cutoff:
                continue
            if info.key.startswith(MARKERS + "/") and info.key.endswith(".json"):
                try:
                    target = json.loads(self.get_bytes(info.key))["prefix"]
                except (StorageError, ValueError, KeyError):
                    target = None
                if target and not self.exists(f"{target}/{MANIFEST}"):
                    n = self.delete_prefix(target.strip("/") + "/")
                    if n:
                        removed.append(f"{target}/ ({n} uncommitted objects)")
            self.delete(info.key)
            removed.append(info.key)
        removed += self._abort_multipart(cutoff)
        if self.staging_root.exists():
            for d in self.staging_root.iterdir():
                if d.stat().st_mtime < cutoff:
                    shutil.rmtree(d, ignore_errors=True)
                    removed.append(str(d))
        return removed

    def _abort_multipart(self, cutoff: float) -> builtins.list[str]:
        removed = []
        try:
            pages = self._client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self._full("")
            )
            for page in pages:
                for up in page.get("Uploads", []) or []:
                    if up["Initiated"].timestamp() < cutoff:
                        self._client.abort_multipart_upload(
                            Bucket=self.bucket, Key=up["Key"], UploadId=up["UploadId"]
                        )
                        removed.append(f"multipart:{self._rel(up['Key'])}")
        except Exception:  # noqa: BLE001 - optional on some S3-compatibles
            pass
        return removed

    def check(self) -> None:
        self._bucket_checked = False
        self._ensure_bucket()
        super().check()


class _AlreadyCommitted(StorageError):
    """Another publisher committed the same prefix first: leave its objects alone."""
