"""Faults of the environment while ingesting and querying (issue 20, item 11): each one ends
with a clear message saying what to do — a stopped validation worker, a hung S3 server, a
full disk, a lost database connection, storage down at query time — and leftovers of
interrupted runs are cleaned by the next ingest. Exit 1 ("transient"), never exit 2 ("likely
a bug"), and never a hang."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest

from catalogue.publishing import publish_dataset
from catalogue.registry import Catalogue
from ingest.errors import IngestError, StorageUnreachable, as_transient
from ingest.spec import parse_specs
from tests.conftest import run_cli
from tests.fixtures.procs import child_workers

KEY = b"k"


def declare(env: dict, csv: Path, expectations: str = "") -> None:
    Path(env["NSDX_DATASETS"]).write_text(
        f"""datasets:
  - id: fault-data
    title: 故障
    domain: test
    organization: fault-org
    source: {{path: {csv}, format: csv}}
{expectations}""",
        encoding="utf-8",
    )


def write_rows(csv: Path, n: int) -> None:
    rng = random.Random(n)
    with open(csv, "w", encoding="utf-8") as f:
        f.write("n,tag\n")
        for i in range(n):
            f.write(f"{i},{rng.randbytes(16).hex()}\n")  # incompressible beyond hex


# ---------------------------------------------------------------------------------------------
# a stopped validation worker


def test_a_stopped_validation_worker_ends_the_ingest_with_a_message(tmp_path, monkeypatch):
    from ingest.storage.local import LocalStore
    from validation import worker

    monkeypatch.setattr(worker, "STOPPED_SECONDS", 2.0)
    csv = tmp_path / "rows.csv"
    write_rows(csv, 400_000)
    (spec,) = parse_specs(
        f"""datasets:
  - id: fault-data
    title: t
    domain: test
    organization: fault-org
    source: {{path: {csv}, format: csv}}
    expectations:
      - {{gx: expect_column_values_to_be_between, column: n, min_value: 0, max_value: 10000000}}
""",
        base_dir=tmp_path,
    )
    cat = Catalogue(f"sqlite:///{tmp_path / 'cat.db'}")
    store = LocalStore(tmp_path / "objects")
    stopped: list[int] = []

    def stop_worker(event, **fields):
        if event == "rows" and not stopped:
            for pid in child_workers():
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)

    try:
        with pytest.raises(IngestError, match="is stopped") as e:
            publish_dataset(
                cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "r", progress=stop_worker
            )
        assert "run the command again" in e.value.hint
        assert stopped and str(stopped[0]) in e.value.message
        assert cat.current("fault-data") is None
        assert [i.key for i in store.list("fault-org/")] == []
    finally:
        for pid in stopped:  # the ingest killed it; make sure, and let it be reaped
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


# ---------------------------------------------------------------------------------------------
# a hung S3 server


@pytest.mark.s3
def test_a_hung_s3_server_fails_with_unreachable(seaweedfs_factory, tmp_path):
    server = seaweedfs_factory()
    store = server.store(bucket="hung", prefix="x", staging_dir=tmp_path / "st")
    os.kill(server.pid, signal.SIGSTOP)  # accepts connections (the kernel does), never answers
    try:
        with pytest.raises(StorageUnreachable, match="did not answer within 3 s") as e:
            store.exists("a/manifest.json")
        assert "hung or stopped" in e.value.hint
    finally:
        os.kill(server.pid, signal.SIGCONT)


# ---------------------------------------------------------------------------------------------
# storage down at query time; a full disk; a lost database connection


@pytest.mark.s3
def test_storage_down_at_query_time_is_a_transient_error(seaweedfs_factory, nsdx_env, tmp_path):
    server = seaweedfs_factory()
    bucket = server.bucket("down")
    env = {**nsdx_env, **server.env(bucket, "c"), "NSDX_STAGING_DIR": str(tmp_path / "st")}
    csv = tmp_path / "rows.csv"
    write_rows(csv, 100)
    declare(env, csv)
    run_cli("ingest", "fault-data", env=env)
    server.stop()
    proc = run_cli(
        "query", "SELECT count(*) AS n FROM test.fault_data", "--format", "json",
        env=env, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "likely a bug" not in proc.stderr
    assert "nsdx storage check" in proc.stderr or "AWS_ENDPOINT_URL" in proc.stderr, proc.stderr


@pytest.mark.s3
def test_a_hung_store_at_query_time_is_a_transient_error(seaweedfs_factory, nsdx_env, tmp_path):
    server = seaweedfs_factory()
    bucket = server.bucket("hungq")
    env = {
        **nsdx_env,
        **server.env(bucket, "c"),
        "NSDX_STAGING_DIR": str(tmp_path / "st"),
        "NSDX_S3_READ_TIMEOUT": "2",
    }
    csv = tmp_path / "rows.csv"
    write_rows(csv, 100)
    declare(env, csv)
    run_cli("ingest", "fault-data", env=env)
    os.kill(server.pid, signal.SIGSTOP)
    try:
        proc = run_cli(
            "query", "SELECT count(*) AS n FROM test.fault_data", "--format", "json",
            env=env, check=False,
        )  # fmt: skip
    finally:
        os.kill(server.pid, signal.SIGCONT)
    assert proc.returncode == 1, proc.stderr
    assert "likely a bug" not in proc.stderr
    assert "transient" in proc.stderr, proc.stderr


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return r.returncode == 0


def test_a_full_disk_is_a_transient_error(nsdx_env, tmp_path):
    """NSDX_HOME (catalogue, staging, objects) on a 2 MB file system; a 12 MB source."""
    home = tmp_path / "small"
    if not _tmpfs(home, "2m"):
        pytest.skip("this test needs to mount a small tmpfs (root in a container or VM)")
    try:
        env = {**nsdx_env, "NSDX_HOME": str(home)}
        csv = tmp_path / "rows.csv"
        write_rows(csv, 300_000)
        declare(env, csv)
        proc = run_cli("ingest", "fault-data", "--json", env=env, check=False)
        assert proc.returncode == 1, proc.stderr
        assert "likely a bug" not in proc.stderr
        errors = json.loads(proc.stdout)["errors"] if proc.stdout.strip() else []
        text = proc.stdout + proc.stderr
        assert "full" in text and ("free disk space" in text or "NSDX_DATABASE_URL" in text)
        if errors:
            assert errors[0]["transient"] is True
    finally:
        subprocess.run(["umount", "-l", str(home)], capture_output=True)


def test_a_terminated_database_connection_is_transient(pg_available):
    if not pg_available:
        pytest.skip("PostgreSQL not reachable")
    import psycopg
    from sqlalchemy import create_engine, text

    from tests.conftest import PG_ADMIN_URL, pg_database

    with pg_database() as url:
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
                with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
                with pytest.raises(Exception) as raised:
                    conn.execute(text("SELECT 1"))
        finally:
            engine.dispose()
    err = as_transient(raised.value)
    assert err is not None and err.transient
    assert "database" in err.message and "NSDX_DATABASE_URL" in err.hint


def test_the_cli_reports_environment_faults_as_transient(tmp_path):
    """The shell's last resort: an OSError(ENOSPC) that no layer translated is exit 1 with
    what to do, not exit 2 "likely a bug"."""
    import errno

    err = as_transient(OSError(errno.ENOSPC, "No space left on device", str(tmp_path)))
    assert err is not None and "disk is full" in err.message and "free disk space" in err.hint
    assert as_transient(ValueError("a bug")) is None


# ---------------------------------------------------------------------------------------------
# leftovers of interrupted runs


def test_the_next_ingest_removes_old_staging_leftovers(tmp_path, monkeypatch):
    from catalogue import publishing
    from ingest.storage.local import LocalStore

    monkeypatch.setattr(publishing, "_last_gc", {})
    store = LocalStore(tmp_path / "objects")
    old = store.new_staging()
    (old / "part-00000.parquet").write_bytes(b"x" * 1000)
    fresh = store.new_staging()  # a publish running now: never touched
    past = 2 * 24 * 3600
    os.utime(old, (os.path.getatime(old) - past, os.path.getmtime(old) - past))
    csv = tmp_path / "rows.csv"
    write_rows(csv, 10)
    (spec,) = parse_specs(
        f"datasets:\n  - {{id: fault-data, title: t, domain: test, organization: fault-org,"
        f" source: {{path: {csv}, format: csv}}}}\n"
    )
    cat = Catalogue(f"sqlite:///{tmp_path / 'cat.db'}")
    publish_dataset(cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "r")
    assert not old.exists()
    assert fresh.exists()


@pytest.mark.s3
def test_the_next_ingest_aborts_old_multipart_uploads(s3_store, tmp_path, monkeypatch):
    from catalogue import publishing

    monkeypatch.setattr(publishing, "_last_gc", {})
    c = s3_store._client
    key = s3_store._full("fault-org/fault-data/v9/data/part-00000.parquet")
    up = c.create_multipart_upload(Bucket=s3_store.bucket, Key=key)["UploadId"]
    monkeypatch.setattr(publishing, "GC_AFTER_SECONDS", 0.0)  # the upload is old enough
    csv = tmp_path / "rows.csv"
    write_rows(csv, 10)
    (spec,) = parse_specs(
        f"datasets:\n  - {{id: fault-data, title: t, domain: test, organization: fault-org,"
        f" source: {{path: {csv}, format: csv}}}}\n"
    )
    cat = Catalogue(f"sqlite:///{tmp_path / 'cat.db'}")
    publish_dataset(cat, s3_store, spec, pii_key=KEY, reports_dir=tmp_path / "r")
    uploads = c.list_multipart_uploads(Bucket=s3_store.bucket).get("Uploads") or []
    assert up not in [u["UploadId"] for u in uploads]


# ---------------------------------------------------------------------------------------------
# an interrupted `nsdx exchange demo`


def test_an_interrupted_exchange_demo_is_refused_not_skipped(nsdx_env, monkeypatch):
    from exchange import demo, trade
    from nsdx.cli.exchange import _ex

    calls = {"n": 0}
    grant = trade.grant_access

    def interrupted(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return grant(*a, **k)

    monkeypatch.setattr(trade, "grant_access", interrupted)
    with pytest.raises(KeyboardInterrupt):
        demo.run_demo(_ex())
    monkeypatch.undo()
    proc = run_cli("exchange", "demo", env=nsdx_env, check=False)
    assert proc.returncode == 1, proc.stdout
    assert "was interrupted" in proc.stderr and "fresh deployment" in proc.stderr
    assert "already recorded" not in proc.stdout
