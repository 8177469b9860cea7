"""A validation worker that outlives its command and serves the next ones (warm).

What a user depends on is checked from outside, as they would see it: which worker processes
exist (/proc), what they hold, what the commands answer. Everything that shares the
lingering worker's address runs in one test, in order (the file is also one xdist group):
tests running at the same time would take the worker from each other. Every other test runs
with NSDX_VALIDATION_LINGER=0 (tests/conftest.py), and never connects to a lingering worker.
Workers are found by their linger value *and* this checkout's folder: another checkout's
suite running on the same machine starts workers with the same arguments.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli
from tests.fixtures.procs import child_workers, workers_started_with_linger
from validation import worker as vw
from validation.errors import ValidationPackageError

pytestmark = pytest.mark.xdist_group("validation-linger")

LINGER = "97"  # a value no one else uses: this file's workers are found by it
LINGER_LEFT = "89"  # the worker left mid-table (step 6)


def _ours(linger: str = LINGER) -> list[int]:
    return workers_started_with_linger(linger, str(ROOT))


def _wait_for(condition, seconds: float = 30) -> bool:
    """Poll until ``condition()`` holds (a bound for a slow machine, not a timing claim)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _stop_ours() -> None:
    for pid in _ours():
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _lingering() -> vw._Worker | None:
    """Connect to the lingering worker (it takes a moment to listen again after a command)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (w := vw._Worker.connect()) is not None:
            return w
        time.sleep(0.05)
    return None


def _declare(tmp_path: Path, env: dict) -> None:
    csv = tmp_path / "flow.csv"
    csv.write_text(
        "station,entries\n" + "".join(f"南沙客运港,{i}\n" for i in range(200)), encoding="utf-8"
    )
    Path(env["NSDX_DATASETS"]).write_text(
        f"""datasets:
  - id: flow
    title: 客流
    domain: transport
    organization: guangzhou-metro
    source: {{path: {csv}, format: csv}}
    expectations:
      - {{column: entries, between: [0, 150]}}
      - {{column: station, not_null: true}}
      - {{gx: expect_column_mean_to_be_between, column: entries, min_value: 0, max_value: 150}}
    on_invalid: warn
""",
        encoding="utf-8",
    )


def _ingest(env: dict, cwd: Path, *extra: str) -> dict:
    # capture_output: a worker that kept the command's stdout/stderr pipes open would make
    # this call wait for it (`$(nsdx ingest ...)`, `nsdx ingest | jq` hang the same way)
    cwd.mkdir(exist_ok=True)
    out = json.loads(run_cli("ingest", "flow", "--json", *extra, env=env, cwd=cwd).stdout)
    assert out["errors"] == []
    (r,) = out["results"]
    assert r["status"] == "published_with_warnings"
    # entries 151..199 judged in the worker; the mean, over the staged files, passes
    assert len(r["warnings"]) == 1 and "49 rows" in r["warnings"][0], r["warnings"]
    return r


def test_a_lingering_worker_serves_later_commands(tmp_path, nsdx_env, monkeypatch):
    monkeypatch.setenv("NSDX_VALIDATION_LINGER", LINGER)
    # a relative NSDX_HOME, commands in two folders: the worker must get absolute paths
    env = {**nsdx_env, "NSDX_VALIDATION_LINGER": LINGER, "NSDX_HOME": "home"}
    _declare(tmp_path, env)
    _stop_ours()
    try:
        # 1. the first command starts the worker; it stays after the command exits
        _ingest(env, tmp_path / "a")
        assert _wait_for(lambda: len(_ours()) == 1), "no worker lingered after the command"
        [first] = _ours()
        proc = Path(f"/proc/{first}")
        started = (proc / "stat").read_text().split(")")[1].split()[19]  # start time
        assert (proc / "stat").read_text().split(")")[1].split()[1] != str(os.getpid())
        # it belongs to no command now: no working directory, no secrets of the command's
        assert os.readlink(proc / "cwd") == "/"
        environ = (proc / "environ").read_bytes()
        assert b"NSDX_PII_KEY" not in environ and b"test-pii-key" not in environ

        # 2. the next command, elsewhere, is served by it (warm): no new worker ever starts
        # (a command that started its own would leave two lingering, or replace the first)
        _ingest(env, tmp_path / "b", "--force")
        assert _wait_for(lambda: _ours() == [first])
        assert (proc / "stat").read_text().split(")")[1].split()[19] == started  # same process

        # 3. files are named to it by absolute path: its working directory is "/" now
        import pyarrow as pa
        import pyarrow.parquet as pq

        from validation import BatchValidator

        monkeypatch.chdir(tmp_path)
        pq.write_table(pa.table({"entries": [1, 2, 3]}), "part.parquet")
        mean = {"gx": "expect_column_mean_to_be_between", "column": "entries", "max_value": 5}
        vw.shutdown()  # this test process's own idle worker (from other tests) would come first
        v = BatchValidator("flow", [mean], pa.schema([("entries", pa.int64())]), worker=True)
        with v:
            report = v.finish(["part.parquet"])
            assert child_workers() == []  # served by the lingering worker, none of our own
        assert report.success and report.results[0].result["observed_value"] == 2
        vw.shutdown()
        assert _ours() == [first]
        w = _lingering()
        assert w is not None and w.pid == first

        # 4. while it is busy (we hold it), a command starts its own worker and succeeds
        _ingest(env, tmp_path / "b", "--force")
        w.leave()
        assert _wait_for(lambda: len(_ours()) == 1)  # one of the two steps back

        # 5. another user's process is turned away without a word (checked by SO_PEERCRED)
        if os.getuid() == 0:
            assert _other_user_gets_nothing()
    finally:
        _stop_ours()
    assert _wait_for(lambda: _ours() == [], 10)

    # 6. a command that dies mid-table: its worker goes instead of lingering (here, in the
    # same test: a worker lingering from the steps above would serve that command instead)
    _a_worker_left_mid_table_exits()
    if os.getuid() != 0:
        pytest.skip("steps 1-4, 6 passed; step 5 (another user is refused) needs root to setuid")


def _other_user_gets_nothing() -> bool:
    """From a child running as ``nobody``: connecting gets the connection closed, no hello."""
    import socket

    address = vw._address(vw.code_fingerprint())
    r, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(address)
            s.settimeout(20)
            got = s.recv(1)
            os.write(wfd, b"refused" if got == b"" else b"answered")
        except BaseException as e:  # noqa: BLE001 — reported to the parent
            os.write(wfd, f"error {type(e).__name__}: {e}".encode())
        finally:
            os._exit(0)
    os.close(wfd)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as f:
        answer = f.read().decode()
    assert answer == "refused", answer
    return True


LEFT_MID_TABLE = """
import os, sys
import pyarrow as pa
from validation import BatchValidator

schema = pa.schema([("speed", pa.float64())])
v = BatchValidator("demo", [{"gx": "expect_column_values_to_be_between", "column": "speed", "min_value": 0, "max_value": 150}], schema, worker=True)
v.check_batch(pa.table({"speed": [1.0, 200.0]}, schema=schema), 0)
v.check_batch(pa.table({"speed": [3.0]}, schema=schema), 2)  # returns once the first is sent
from tests.fixtures.procs import child_workers
print(*child_workers(), flush=True)
os._exit(0)  # the command dies with a table open, leaving its worker behind
"""


def _a_worker_left_mid_table_exits() -> None:
    """A command that dies mid-table leaves its worker in an unknown state: it must exit
    instead of lingering for the next command."""
    env = {**os.environ, "NSDX_VALIDATION_LINGER": LINGER_LEFT}
    r = subprocess.run(
        [sys.executable, "-c", LEFT_MID_TABLE],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    [pid] = [int(p) for p in r.stdout.split()]  # the command had a worker of its own
    # and that one goes (a zombie left to an init that does not reap counts as gone);
    # lingering, it would wait 89 s for another command
    assert _wait_for(lambda: pid not in _ours(LINGER_LEFT), 60)


def test_linger_setting_is_checked(monkeypatch):
    monkeypatch.setenv("NSDX_VALIDATION_LINGER", "ten minutes")
    with pytest.raises(ValidationPackageError, match="NSDX_VALIDATION_LINGER") as e:
        vw.linger_seconds()
    assert "600" in e.value.hint
    monkeypatch.setenv("NSDX_VALIDATION_LINGER", "0")
    assert vw.linger_seconds() == 0
    monkeypatch.setenv("NSDX_VALIDATION_LINGER", "1e300")
    assert vw.linger_seconds() == 86400  # at most a day
    monkeypatch.delenv("NSDX_VALIDATION_LINGER")
    assert vw.linger_seconds() == vw.DEFAULT_LINGER
