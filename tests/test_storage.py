"""The object-store contract on both backends (local folder, SeaweedFS S3) and S3 specifics.

Run alone with ``pytest -p tests.fixtures.seaweed tests/test_storage.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ingest.errors import BucketNotFound, StorageAuthError, StorageError, StorageUnreachable
from ingest.storage import MANIFEST, STAGING, open_store
from ingest.storage.local import LocalStore
from ingest.storage.s3 import S3Store

MiB = 1 << 20


def stage(store, files: dict[str, bytes], *, bad_hash: str | None = None) -> Path:
    """A staging dir holding ``files`` and their manifest (``bad_hash``: lie about one)."""
    d = store.new_staging()
    entries = []
    for rel, data in files.items():
        p = d / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        if rel == bad_hash:
            sha = hashlib.sha256(b"something else").hexdigest()
        entries.append({"path": rel, "bytes": len(data), "sha256": sha})
    (d / MANIFEST).write_text(json.dumps({"files": entries}))
    return d


def stage_big(store, size: int, name: str = "data/big.bin") -> Path:
    """A staging dir with one ``size``-byte file, written in chunks."""
    d = store.new_staging()
    p = d / name
    p.parent.mkdir(parents=True)
    h = hashlib.sha256()
    block = os.urandom(MiB)
    with open(p, "wb") as f:
        for i in range(size // MiB):
            chunk = block[i % 7 :] + block[: i % 7]  # not all parts equal
            h.update(chunk)
            f.write(chunk)
    entries = [{"path": name, "bytes": size, "sha256": h.hexdigest()}]
    (d / MANIFEST).write_text(json.dumps({"files": entries}))
    return d


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the contract, on both backends ---------------------------------------------------------
def test_object_operations(store):
    store.put_bytes("a/b/one.txt", b"1")
    store.put_bytes("a/two.txt", b"22")
    store.put_bytes("other/x", b"x")
    assert store.get_bytes("a/b/one.txt") == b"1"
    assert store.exists("a/two.txt") and not store.exists("a/none.txt")
    assert sorted((i.key, i.size) for i in store.list("a/")) == [
        ("a/b/one.txt", 1),
        ("a/two.txt", 2),
    ]
    assert {i.key for i in store.list()} >= {"a/b/one.txt", "a/two.txt", "other/x"}
    assert store.sha256("a/two.txt") == hashlib.sha256(b"22").hexdigest()
    store.put_bytes("a/two.txt", b"333")  # overwrite
    assert store.get_bytes("a/two.txt") == b"333"
    store.delete("a/two.txt")
    store.delete("a/two.txt")  # deleting a missing key is fine
    assert not store.exists("a/two.txt")
    with pytest.raises(StorageError, match="not found"):
        store.get_bytes("a/two.txt")
    assert store.delete_prefix("a/") == 1
    assert [i.key for i in store.list("a/")] == []
    assert store.uri("k/x.parquet").endswith("k/x.parquet")


def test_publish_makes_the_version_visible(store):
    files = {
        "data/part-0.parquet": b"p0" * 1000,
        "data/part-1.parquet": b"p1" * 10,
        "schema.json": b"{}",
    }
    d = stage(store, files)
    assert not store.exists("org/ds/v1/" + MANIFEST)
    seen = []
    store.publish(d, "org/ds/v1", progress=seen.append)
    assert sum(seen) >= sum(len(v) for v in files.values())
    assert store.exists("org/ds/v1/" + MANIFEST)
    manifest = json.loads(store.get_bytes("org/ds/v1/" + MANIFEST))
    for entry in manifest["files"]:
        assert store.sha256(f"org/ds/v1/{entry['path']}") == entry["sha256"]
    keys = {i.key for i in store.list("org/ds/v1/")}
    assert keys == {f"org/ds/v1/{k}" for k in files} | {f"org/ds/v1/{MANIFEST}"}
    assert not d.exists()  # staging cleaned up


def test_publish_to_an_existing_prefix_fails(store):
    store.publish(stage(store, {"a.bin": b"a"}), "ds/v1")
    d = stage(store, {"a.bin": b"b"})
    with pytest.raises(StorageError, match="already exists"):
        store.publish(d, "ds/v1")
    assert store.get_bytes("ds/v1/a.bin") == b"a"


def test_publish_needs_a_manifest(store, tmp_path):
    d = store.new_staging()
    (d / "a.bin").write_bytes(b"a")
    with pytest.raises(StorageError, match=MANIFEST):
        store.publish(d, "ds/v1")
    assert not store.exists("ds/v1/" + MANIFEST)


def test_gc_removes_old_staging_and_never_committed_data(store):
    store.publish(stage(store, {"a.bin": b"committed"}), "ds/v1")
    store.put_bytes(f"{STAGING}/old-run/part.bin", b"leftover")
    fresh = store.new_staging()
    time.sleep(1.2)  # S3 LastModified has 1 s resolution
    assert store.gc(3600) == []  # nothing that old
    removed = store.gc(1)
    assert any("old-run" in r for r in removed)
    assert not store.exists(f"{STAGING}/old-run/part.bin")
    assert store.get_bytes("ds/v1/a.bin") == b"committed"
    assert store.exists("ds/v1/" + MANIFEST)
    assert not fresh.exists()  # an abandoned staging folder older than the threshold


def test_check(store):
    store.check()
    assert [i.key for i in store.list(f"{STAGING}/")] == []


# -- S3 specifics -------------------------------------------------------------------------------


@pytest.mark.s3
def test_publish_rejects_a_file_that_differs_from_the_manifest(s3_store):
    d = stage(s3_store, {"ok.bin": b"fine", "bad.bin": b"tampered"}, bad_hash="bad.bin")
    with pytest.raises(StorageError, match="(?i)checksum|sha-256"):
        s3_store.publish(d, "ds/v1")
    assert not s3_store.exists("ds/v1/" + MANIFEST)
    assert [i.key for i in s3_store.list("ds/v1/")] == []  # rolled back
    assert [i.key for i in s3_store.list(f"{STAGING}/")] == []


@pytest.mark.s3
def test_publish_rejects_unlisted_files(s3_store):
    d = stage(s3_store, {"a.bin": b"a"})
    (d / "stray.bin").write_bytes(b"?")
    with pytest.raises(StorageError, match="does not list"):
        s3_store.publish(d, "ds/v1")


@pytest.mark.s3
def test_wrong_secret_is_an_auth_error(seaweedfs):
    bucket = seaweedfs.bucket()
    bad = S3Store(
        bucket,
        "p",
        endpoint_url=seaweedfs.endpoint,
        access_key=seaweedfs.access_key,
        secret_key="not-the-secret",
    )
    with pytest.raises(StorageAuthError, match="AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY") as e:
        bad.check()
    assert "SignatureDoesNotMatch" in str(e.value)
    with pytest.raises(StorageAuthError):
        bad.put_bytes("x", b"1")
    unknown = S3Store(bucket, endpoint_url=seaweedfs.endpoint, access_key="nobody", secret_key="x")
    with pytest.raises(StorageAuthError, match="InvalidAccessKeyId"):
        unknown.check()


@pytest.mark.s3
def test_missing_bucket(seaweedfs, tmp_path):
    st = S3Store(
        "no-such-bucket-nsdx",
        endpoint_url=seaweedfs.endpoint,
        access_key=seaweedfs.access_key,
        secret_key=seaweedfs.secret_key,
        staging_dir=tmp_path,
    )
    with pytest.raises(BucketNotFound, match="aws s3 mb s3://no-such-bucket-nsdx"):
        st.check()
    with pytest.raises(BucketNotFound):
        st.publish(stage(st, {"a": b"a"}), "ds/v1")
    with pytest.raises(BucketNotFound):
        st.exists("x")


@pytest.mark.s3
def test_unreachable_endpoint_fails_fast(tmp_path):
    st = S3Store(
        "bucket",
        endpoint_url=f"http://127.0.0.1:{closed_port()}",
        access_key="k",
        secret_key="s",
        staging_dir=tmp_path,
    )
    t0 = time.monotonic()
    with pytest.raises(StorageUnreachable, match="AWS_ENDPOINT_URL") as e:
        st.check()
    assert time.monotonic() - t0 < 20
    assert e.value.transient
    with pytest.raises(StorageUnreachable):
        st.publish(stage(st, {"a": b"a"}), "ds/v1")


@pytest.mark.s3
def test_from_url_reads_the_aws_environment(monkeypatch, seaweedfs):
    bucket = seaweedfs.bucket()
    for k, v in seaweedfs.env(bucket, "team/a").items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    st = open_store(os.environ["NSDX_STORAGE_URL"])
    assert isinstance(st, S3Store)
    assert (st.bucket, st.prefix, st.addressing_style) == (bucket, "team/a", "path")
    st.put_bytes("k", b"v")
    assert st.uri("k") == f"s3://{bucket}/team/a/k"
    raw = seaweedfs.client().get_object(Bucket=bucket, Key="team/a/k")["Body"].read()
    assert raw == b"v"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_REGION")
    aws = S3Store.from_url("s3://some-bucket")
    assert (aws.addressing_style, aws.region, aws.prefix) == ("virtual", "us-east-1", "")


@pytest.mark.s3
@pytest.mark.slow
def test_multipart_upload_is_verified(s3_store, seaweedfs):
    d = stage_big(s3_store, 40 * MiB)
    want = json.loads((d / MANIFEST).read_text())["files"][0]["sha256"]
    s3_store.publish(d, "ds/v1")
    head = seaweedfs.client().head_object(
        Bucket=s3_store.bucket, Key="nsdx/ds/v1/data/big.bin", ChecksumMode="ENABLED"
    )
    assert head["ChecksumSHA256"].endswith("-3")  # 16 + 16 + 8 MiB parts, server-verified
    assert s3_store.sha256("ds/v1/data/big.bin") == want


@pytest.mark.s3
def test_presigned_urls(s3_store, seaweedfs):
    s3_store.put_bytes("pub/x.txt", b"hello buyer")
    url = s3_store.presign("pub/x.txt", expires_seconds=60)
    assert urllib.request.urlopen(url, timeout=10).read() == b"hello buyer"
    import httpx

    assert httpx.get(url, timeout=10).content == b"hello buyer"
    short = s3_store.presign("pub/x.txt", expires_seconds=1)
    time.sleep(2)
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(short, timeout=10)
    assert e.value.code in (400, 403)
    # signed for the host buyers reach
    public = seaweedfs.store(
        s3_store.bucket, "nsdx", public_endpoint=f"http://localhost:{seaweedfs.ports['s3']}"
    )
    purl = public.presign("pub/x.txt", 60)
    assert purl.startswith(f"http://localhost:{seaweedfs.ports['s3']}/")
    assert urllib.request.urlopen(purl, timeout=10).read() == b"hello buyer"


def _parquet_bytes(tmp_path: Path) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    t = pa.table({"id": list(range(1000)), "speed": [float(i % 90) for i in range(1000)]})
    p = tmp_path / "t.parquet"
    pq.write_table(t, p, compression="zstd")
    return p.read_bytes()


@pytest.mark.s3
def test_duckdb_reads_s3_and_presigned_urls(s3_store, tmp_path):
    import duckdb

    from ingest.storage.duckdb_s3 import configure_duckdb, load_httpfs

    s3_store.publish(stage(s3_store, {"data/part-0.parquet": _parquet_bytes(tmp_path)}), "ds/v1")
    con = duckdb.connect()
    configure_duckdb(con, s3_store)
    uri = s3_store.uri("ds/v1/data/part-0.parquet")
    assert uri.startswith("s3://")
    assert con.execute(f"SELECT count(*), sum(id) FROM read_parquet('{uri}')").fetchone() == (
        1000,
        499500,
    )
    con2 = duckdb.connect()  # no secret: a presigned URL is enough
    load_httpfs(con2)
    url = s3_store.presign("ds/v1/data/part-0.parquet", 120)
    assert con2.execute(f"SELECT count(*) FROM read_parquet('{url}')").fetchone() == (1000,)


def test_configure_duckdb_is_a_noop_for_local(tmp_path):
    import duckdb

    from ingest.storage.duckdb_s3 import configure_duckdb

    st = LocalStore(tmp_path)
    st.put_bytes("t.parquet", _parquet_bytes(tmp_path))
    con = duckdb.connect()
    configure_duckdb(con, st)
    assert con.execute(
        f"SELECT count(*) FROM read_parquet('{st.uri('t.parquet')}')"
    ).fetchone() == (1000,)


@pytest.mark.s3
def test_interrupted_publish_leaves_no_version_and_gc_cleans_up(s3_store):
    d = stage_big(s3_store, 40 * MiB)

    class Boom(Exception):
        pass

    def explode(n):
        raise Boom("interrupted")

    with pytest.raises(StorageError):
        s3_store.publish(d, "ds/v1", progress=explode)
    assert not s3_store.exists("ds/v1/" + MANIFEST)
    assert d.exists()  # kept for a retry
    s3_store.publish(d, "ds/v1")
    assert s3_store.exists("ds/v1/" + MANIFEST)
    time.sleep(1.1)
    s3_store.gc(0)
    assert s3_store.exists("ds/v1/data/big.bin")  # committed: untouched


@pytest.mark.s3
@pytest.mark.slow
def test_server_killed_mid_publish(seaweedfs_factory, tmp_path):
    server = seaweedfs_factory()
    st = server.store(prefix="nsdx", staging_dir=tmp_path / "staging")
    d = stage_big(st, 64 * MiB)
    done = []

    def kill_after_first_bytes(n):
        done.append(n)
        if len(done) == 1:
            server.kill()  # SIGKILL by pid, like a crash

    t0 = time.monotonic()
    with pytest.raises(StorageUnreachable, match="AWS_ENDPOINT_URL"):
        st.publish(d, "ds/v1", progress=kill_after_first_bytes)
    assert time.monotonic() - t0 < 60
    assert d.exists()
    server.start()  # same dir, same ports
    assert not st.exists("ds/v1/" + MANIFEST)
    st.publish(d, "ds/v1")
    assert st.exists("ds/v1/" + MANIFEST)
    assert (
        st.sha256("ds/v1/data/big.bin")
        == json.loads(st.get_bytes("ds/v1/" + MANIFEST))["files"][0]["sha256"]
    )
    time.sleep(1.1)
    st.gc(0)  # the interrupted run's marker goes; the committed version stays
    assert [i.key for i in st.list(f"{STAGING}/")] == []
    assert st.exists("ds/v1/data/big.bin")
