"""Faults in the middle of the work, and the service afterwards (issue 15, item 5).

tests/test_ingest_faults.py checks the message of each fault of the environment; here each
fault strikes in the middle of a publish or a ledger append — at a failpoint
(ingest/failpoints.py: the command stops itself there, the test causes the fault, then lets
it go on) — and the test checks what users depend on: a clear error (exit 1, transient, what
to check), no corruption (the previous version served, every registered version complete,
the ledger verifies), and service again once the fault clears (a rerun publishes exactly one
new version; the next append works).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from exchange.credit_code import make as credit_code
from tests.conftest import NSDX, PG_ADMIN_URL, run_cli


def declare(env: dict, csv: Path) -> None:
    Path(env["NSDX_DATASETS"]).write_text(
        f"""datasets:
  - id: fault-readings
    title: 故障读数
    domain: transport
    organization: fault-org
    source: {{path: {csv}, format: csv}}
    schema: [{{name: n, type: integer}}, {{name: tag, type: string}}]
""",
        encoding="utf-8",
    )


def write_rows(csv: Path, n: int, seed: int = 0) -> None:
    import random

    rng = random.Random(seed)
    with open(csv, "w", encoding="utf-8") as f:
        f.write("n,tag\n")
        for i in range(n):
            f.write(f"{i},{rng.randbytes(16).hex()}\n")


def count(env: dict) -> int:
    out = run_cli(
        "query", "SELECT count(*) AS n FROM transport.fault_readings", "--format", "json", env=env
    )
    return json.loads(out.stdout)[0]["n"]


def start(args: list[str], env: dict, point: str) -> subprocess.Popen:
    return subprocess.Popen(
        [NSDX, *args],
        env={**os.environ, **env, "NSDX_FAILPOINTS": f"{point}=stop"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_stopped(proc: subprocess.Popen, timeout: float = 120) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stat = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        if stat in ("T", "t"):
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"exited {proc.returncode} before its failpoint:\n{out}\n{err}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("never reached its failpoint")


def resume(proc: subprocess.Popen) -> tuple[int, str, str]:
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def versions(env: dict) -> list[int]:
    out = json.loads(run_cli("datasets", "show", "fault-readings", "--json", env=env).stdout)
    return sorted(out["nsdx"]["versions"])


def assert_clear(code: int, out: str, err: str, *words: str) -> None:
    text = out + err
    assert code == 1, text
    assert "Traceback" not in text and "likely a bug" not in text, text
    assert any(w in text for w in words), text


# ---------------------------------------------------------------------------------------------
# SeaweedFS stopped in the middle of a publish


@pytest.mark.s3
def test_seaweedfs_stopped_mid_publish(seaweedfs_factory, nsdx_env, tmp_path):
    server = seaweedfs_factory()
    bucket = server.bucket("stopped")
    env = {**nsdx_env, **server.env(bucket, "c"), "NSDX_STAGING_DIR": str(tmp_path / "st")}
    csv = tmp_path / "rows.csv"
    write_rows(csv, 100)
    declare(env, csv)
    run_cli("ingest", "fault-readings", env=env)
    write_rows(csv, 500, seed=1)
    proc = start(["ingest", "fault-readings", "--json"], env, "storage.uploaded")
    wait_stopped(proc)  # one data object is in the bucket; the manifest is not
    server.stop()
    code, out, err = resume(proc)
    assert_clear(code, out, err, "AWS_ENDPOINT_URL", "nsdx storage check")
    assert json.loads(out)["errors"][0]["transient"] is True

    server.start()  # the fault clears
    assert count(env) == 100  # the previous version, complete
    assert versions(env) == [1]
    r = json.loads(run_cli("ingest", "fault-readings", "--json", env=env).stdout)["results"][0]
    assert r["status"] == "published" and r["rows"] == 500
    assert count(env) == 500
    assert len(versions(env)) == 2  # exactly one new version
    client = server.client()
    keys = [
        o["Key"]
        for o in client.list_objects_v2(Bucket=bucket, Prefix="c/fault-org/").get("Contents", [])
    ]
    committed = sorted(int(k.split("/")[3][1:]) for k in keys if k.endswith("manifest.json"))
    assert committed == versions(env)


# ---------------------------------------------------------------------------------------------
# the PostgreSQL connection terminated in the middle of a transaction


def _terminate_all(database: str) -> int:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        return len(
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()",
                (database,),
            ).fetchall()
        )


def test_postgres_connection_terminated_mid_transaction(postgres_url, nsdx_env, tmp_path):
    from sqlalchemy.engine import make_url

    database = make_url(postgres_url).database
    env = {**nsdx_env, "NSDX_DATABASE_URL": postgres_url}
    csv = tmp_path / "rows.csv"
    write_rows(csv, 100)
    declare(env, csv)
    run_cli("ingest", "fault-readings", env=env)

    # the catalogue's transaction: the version is in storage, the pointer not yet moved
    write_rows(csv, 300, seed=1)
    proc = start(["ingest", "fault-readings", "--json"], env, "catalogue.register.tx")
    wait_stopped(proc)
    assert _terminate_all(database) >= 1
    code, out, err = resume(proc)
    assert_clear(code, out, err, "NSDX_DATABASE_URL")
    assert json.loads(out)["errors"][0]["transient"] is True
    assert count(env) == 100 and versions(env) == [1]  # rolled back whole
    r = json.loads(run_cli("ingest", "fault-readings", "--json", env=env).stdout)["results"][0]
    assert (r["status"], r["version"], r["rows"]) == ("adopted", 2, 300)  # not duplicated
    assert count(env) == 300 and versions(env) == [1, 2]

    # a ledger batch: entries, head and checkpoint written, not committed, when the
    # sequencer's connection is terminated (each call changes the name: a change is one
    # more ledger entry; only the operator may change a registered credit code). The
    # trade's rows and its queued event were committed before the batch, so the batch is
    # rolled back whole, the sequencer connects again and integrates the event: the
    # command succeeds, and its entry is in the ledger once
    org = ["exchange", "enterprise", "register", "fault-org", "--as", "fault-org", "--json",
           "--credit-code", credit_code("440115", "MA59ABC1"), "--name"]  # fmt: skip
    run_cli(*org, "故障公司", env=env)
    before = json.loads(run_cli("audit", "verify", "--json", env=env).stdout)["entries"]
    proc = start([*org, "故障公司二"], env, "ledger.written")
    wait_stopped(proc)
    assert _terminate_all(database) >= 1
    code, out, err = resume(proc)
    assert code == 0, err
    receipt = json.loads(out)["receipt"]
    assert receipt["index"] == before
    verify = json.loads(run_cli("audit", "verify", "--json", env=env).stdout)
    assert verify["ok"] is True and verify["entries"] == before + 1
    run_cli(*org, "故障公司三", env=env)
    verify = json.loads(run_cli("audit", "verify", "--json", env=env).stdout)
    assert verify["ok"] is True and verify["entries"] == before + 2


# ---------------------------------------------------------------------------------------------
# NSDX_HOME on a full file system


@pytest.fixture
def small_home(tmp_path):
    """NSDX_HOME on a 3 MB tmpfs (mounted and removed here; root only)."""
    home = tmp_path / "small"
    home.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (a container or VM run as root)")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(home)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"mount -t tmpfs refused: {r.stderr.decode().strip()}")
    try:
        yield home
    finally:
        subprocess.run(["umount", "-l", str(home)], capture_output=True)


def _grow(home: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(home)], check=True)


def test_a_full_nsdx_home_then_space_again(small_home, nsdx_env, tmp_path):
    env = {**nsdx_env, "NSDX_HOME": str(small_home)}
    csv = tmp_path / "rows.csv"
    write_rows(csv, 100)
    declare(env, csv)
    run_cli("ingest", "fault-readings", env=env)
    org = ["exchange", "enterprise", "register", "fault-org", "--as", "fault-org", "--json",
           "--credit-code", credit_code("440115", "MA59ABC1"), "--name"]  # fmt: skip
    run_cli(*org, "故障公司", env=env)

    write_rows(csv, 200_000, seed=1)  # ~7 MB of Parquet that does not compress: no room
    proc = run_cli("ingest", "fault-readings", "--json", env=env, check=False)
    assert_clear(proc.returncode, proc.stdout, proc.stderr, "full")
    assert json.loads(proc.stdout)["errors"][0]["transient"] is True
    assert count(env) == 100 and versions(env) == [1]

    # the ledger on the full disk: fill what is left, append, refused cleanly
    filler = small_home / "filler"
    subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k"], capture_output=True)
    proc = run_cli(*org, "故障公司二", env=env, check=False)
    assert_clear(proc.returncode, proc.stdout, proc.stderr, "full")
    filler.unlink()

    _grow(small_home, "64m")  # the fault clears
    verify = json.loads(run_cli("audit", "verify", "--json", env=env).stdout)
    assert verify["ok"] is True
    run_cli(*org, "故障公司二", env=env)
    again = json.loads(run_cli("audit", "verify", "--json", env=env).stdout)
    assert again["ok"] is True and again["entries"] == verify["entries"] + 1
    r = json.loads(run_cli("ingest", "fault-readings", "--json", env=env).stdout)["results"][0]
    assert r["status"] == "published" and r["rows"] == 200_000
    assert count(env) == 200_000 and len(versions(env)) == 2
