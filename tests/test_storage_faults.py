"""Crash of the object store in the middle of `nsdx ingest`: the command fails with a clear
message, the previous version is still served, and a rerun publishes exactly one version."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from tests.conftest import NSDX, run_cli

pytestmark = [pytest.mark.s3, pytest.mark.slow]


def write_readings(path: Path, rows: int, seed: int) -> None:
    """Detector readings with random values: Parquet that does not compress away."""
    rng = np.random.default_rng(seed)
    pcsv.write_csv(
        pa.table(
            {
                "reading_id": np.arange(rows),
                "flow": rng.random(rows) * 3000,
                "speed": rng.random(rows) * 120,
            }
        ),
        path,
    )


def declare(env: dict, csv: Path) -> None:
    Path(env["NSDX_DATASETS"]).write_text(
        f"""datasets:
  - id: detector-readings
    title: 南沙检测器读数
    domain: transport
    organization: nansha-transport-bureau
    source: {{path: {csv}, format: csv}}
""",
        encoding="utf-8",
    )


def count(env: dict) -> int:
    out = run_cli(
        "query",
        "SELECT count(*) AS n FROM transport.detector_readings",
        "--format",
        "json",
        env=env,
    )
    return json.loads(out.stdout)[0]["n"]


def test_store_killed_mid_ingest(seaweedfs_factory, nsdx_env, tmp_path):
    server = seaweedfs_factory()
    bucket = server.bucket("nsdx-fault")
    env = {**nsdx_env, **server.env(bucket, "catalogue"), "NSDX_STAGING_DIR": str(tmp_path / "st")}
    csv = tmp_path / "readings.csv"
    write_readings(csv, 1_000, seed=1)
    declare(env, csv)
    run_cli("ingest", "detector-readings", env=env)
    assert count(env) == 1_000

    write_readings(csv, 2_000_000, seed=2)  # v2: ~48 MB of Parquet to upload
    proc = subprocess.Popen(
        [NSDX, "ingest", "detector-readings"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = server.client()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        # the publish marker appears just before the data objects are uploaded
        listed = client.list_objects_v2(Bucket=bucket, Prefix="catalogue/_staging/publish/")
        if listed.get("KeyCount"):
            server.kill()  # SIGKILL by pid: a crash of the store
            break
        time.sleep(0.02)
    else:
        proc.kill()
        pytest.fail("the publish never started (or finished before the store could be killed)")
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "AWS_ENDPOINT_URL" in err, err  # says what to check
    assert "Traceback" not in err

    server.start()  # same directory and ports
    assert count(env) == 1_000, "the previous version is still served"
    out = json.loads(run_cli("ingest", "detector-readings", "--json", env=env).stdout)
    (result,) = out["results"]
    # v2 stays claimed by the run the crash cut off (the store could not say whether it was
    # committed, so its number is never reused; docs/storage.md): the new version is v3
    assert (result["status"], result["version"], result["rows"]) == ("published", 3, 2_000_000)
    assert count(env) == 2_000_000
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix="catalogue/nansha-transport-bureau/detector-readings/"
        )
        for o in page.get("Contents", [])
    ]
    manifests = sorted(k.split("/")[3] for k in keys if k.endswith("manifest.json"))
    assert manifests == ["v1", "v3"], "exactly one new committed version"
    # what the cut-off run left under v2 is no version, and gc removes it (the store may have
    # died before the first object of v2 arrived: then there is nothing to remove)
    v2_left = [k for k in keys if k.split("/")[3] == "v2"]
    out = json.loads(run_cli("gc", "--older-than", "0s", "--json", env=env).stdout)
    if v2_left:
        assert any("v2/" in r for r in out["removed"]), (v2_left, out)
    left = client.list_objects_v2(
        Bucket=bucket, Prefix="catalogue/nansha-transport-bureau/detector-readings/v2/"
    )
    assert left.get("KeyCount", 0) == 0
