"""`nsdx storage check` and `nsdx gc` as a user runs them, on a real SeaweedFS."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.s3


@pytest.fixture
def s3_env(seaweedfs, nsdx_env):
    if seaweedfs.proc is None or seaweedfs.proc.poll() is not None:
        seaweedfs.start()
    return {**nsdx_env, **seaweedfs.env(seaweedfs.bucket(), "nsdx")}


def test_storage_check_works_and_reports_json(s3_env):
    out = run_cli("storage", "check", env=s3_env)
    assert out.stdout.startswith("✓ storage works: s3://")
    data = json.loads(run_cli("storage", "check", "--json", env=s3_env).stdout)
    assert data["ok"] is True and data["storage"].startswith("s3://")


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"AWS_SECRET_ACCESS_KEY": "wrong"}, "AWS_SECRET_ACCESS_KEY"),
        ({"NSDX_STORAGE_URL": "s3://no-such-bucket-nsdx/x"}, "no-such-bucket-nsdx"),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}, "AWS_ENDPOINT_URL"),
    ],
    ids=["wrong-secret", "missing-bucket", "unreachable"],
)
def test_storage_check_says_what_to_fix(s3_env, change, expected):
    proc = run_cli("storage", "check", env={**s3_env, **change}, check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("Error: ")
    assert expected in proc.stderr
    assert "hint:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_gc_on_a_clean_store_removes_nothing(s3_env):
    out = json.loads(run_cli("gc", "--older-than", "0s", "--json", env=s3_env).stdout)
    assert out == {"removed": []}
    proc = run_cli("gc", "--older-than", "soon", env=s3_env, check=False)
    assert proc.returncode == 2 and "use a number with s, m, h or d" in proc.stderr
