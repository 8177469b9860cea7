"""A fast sample of the crash-consistency harness (bench/crash_harness.py runs the full one:
≥ 30 kills of `nsdx ingest` per backend, ≥ 15 ledger kills per database, 8 PostgreSQL
appenders at once).

Each kill here is a real SIGKILL of a real `nsdx ingest` or ledger appender at a real
point: the process stops itself at a failpoint (ingest/failpoints.py) or is killed after a
random delay; the harness's checks then run unchanged — every registered version complete
(manifest present, every file with its SHA-256), the previous version still served, a rerun
converging to exactly one new version; `nsdx audit verify` passing, no gap, no half entry,
every receipt kept.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys

import pytest

from tests.conftest import ROOT

_spec = importlib.util.spec_from_file_location("crash_harness", ROOT / "bench" / "crash_harness.py")
assert _spec and _spec.loader
harness = importlib.util.module_from_spec(_spec)
sys.modules["crash_harness"] = harness
_spec.loader.exec_module(harness)


def _run_points(rig, points: list[str], random_kills: int = 0) -> list[dict]:
    """The harness's round loop restricted to ``points`` (then ``random_kills`` timer kills)."""
    saved = harness.INGEST_POINTS[rig.backend]
    # rounds i with i % 3 != 2 walk the points in order; i % 3 == 2 is a random delay
    order: list[str] = []
    rounds = 0
    pts = iter(points)
    while len(order) < len(points) or rounds - len(order) < random_kills:
        if rounds % 3 != 2:
            p = next(pts, None)
            if p is None:
                break
            order.append(p)
        rounds += 1
    harness.INGEST_POINTS[rig.backend] = order
    try:
        out = harness.ingest_kills(rig, rounds, random.Random(7), log=lambda *_: None)
    finally:
        harness.INGEST_POINTS[rig.backend] = saved
    return out["rounds"]


def _assert_held(rounds: list[dict]) -> None:
    for r in rounds:
        assert r["killed"] or r["mode"].endswith("(finished first)"), r
        assert r["problems"] == [], r


def test_ingest_killed_at_each_commit_step_local(tmp_path):
    rig = harness.IngestRig(tmp_path / "local", "local", validate=False, second_rerun=False)
    rounds = _run_points(
        rig,
        ["storage.before_rename", "catalogue.register.tx", "catalogue.registered"],
    )
    _assert_held(rounds)
    points = [r["point"] for r in rounds if r["mode"] == "failpoint"]
    assert points == [
        "storage.before_rename",
        "catalogue.register.tx",
        "catalogue.registered",
    ]
    # killed after storage's commit, before the catalogue's: the rerun adopts, not duplicates
    statuses = {r["point"]: r["rerun"]["status"] for r in rounds if r["mode"] == "failpoint"}
    assert statuses["catalogue.register.tx"] == "adopted"
    assert statuses["storage.before_rename"] == "published"  # under the next number
    assert statuses["catalogue.registered"] == "up_to_date"  # it was already registered


@pytest.mark.s3
def test_ingest_killed_while_writing_and_before_the_manifest_s3(seaweedfs, tmp_path):
    """Killed while writing its Parquet, then after the uploads before the manifest, then
    after a random delay counted from its first failpoint. The round after the kill during
    writing is the kind that once exited 2 before reaching its failpoint
    (docs/reliability.md): a run that ends before it is killed is a problem of its round,
    reported with its output."""
    bucket = seaweedfs.bucket()
    rig = harness.IngestRig(
        tmp_path / "s3", "s3", seaweedfs.env(bucket, "c"), validate=False, second_rerun=False
    )
    rounds = _run_points(rig, ["ingest.written", "storage.before_manifest"], random_kills=1)
    _assert_held(rounds)
    named = [r for r in rounds if r["mode"] == "failpoint"]
    assert [r["point"] for r in named] == ["ingest.written", "storage.before_manifest"]
    assert [r["rerun"]["status"] for r in named] == ["published", "published"]
    timed = [r for r in rounds if r["mode"].startswith("random delay")]
    assert len(timed) == 1 and timed[0]["phase"] != "starting"  # past the start-up


def test_ledger_appender_killed_sqlite(tmp_path):
    rig = harness.LedgerRig(tmp_path / "ledger", f"sqlite:///{tmp_path / 'ledger.db'}")
    out = harness.ledger_kills_serial(rig, 3, random.Random(3), log=lambda *_: None)
    assert [r["how"].split("@")[0] for r in out["rounds"]] == [
        "ledger.append",
        "ledger.written",
        "random delay",
    ]
    for r in out["rounds"]:
        assert r["problems"] == [], r
    assert out["entries"] > 0


def test_postgres_appenders_killed_while_others_append(postgres_url, tmp_path):
    rig = harness.LedgerRig(tmp_path / "ledger", postgres_url)
    out = harness.ledger_kills_concurrent(rig, 2, 4, random.Random(5), log=lambda *_: None, per=20)
    assert len(out["rounds"]) == 2
    for r in out["rounds"]:
        assert r["problems"] == [], r
    assert out["entries"] >= 2 * 20  # the survivors' events, plus what the killed ones got in


def test_a_failpoint_is_a_real_sigkill(tmp_path):
    code = "from ingest import failpoints\nfailpoints.hit('ingest.read')\nprint('survived')"
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "NSDX_FAILPOINTS": "ingest.read=kill"},
    )
    assert p.returncode == -signal.SIGKILL and "survived" not in p.stdout
    p = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "NSDX_FAILPOINTS": "ingest.read=kill@2"},
    )
    assert p.returncode == 0 and "survived" in p.stdout  # only the 2nd hit kills


def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "T"
    except OSError:
        return False


def _survivors_lost_nothing(rig, postgres_url, procs, outs, killed, per, *, survivors):
    """After sequencers were SIGKILLed among appending processes: every other process
    exited 0 with all its receipts, the ledger verifies and keeps every receipt, nothing is
    left queued, each event is in the ledger exactly once (at least ``survivors`` processes'
    worth and the opening entry), and no index was given twice."""
    import json as _json

    from catalogue.db import make_engine
    from exchange.ledger.store import LedgerStore

    receipts = []
    for p, (out, err) in zip(procs, outs, strict=True):
        got = harness._receipts(out)
        receipts += got
        if p.pid in killed:
            assert p.returncode == -signal.SIGKILL
        else:
            assert p.returncode == 0, err[-500:]
            assert len(got) == per
    assert rig.verify() == []
    assert rig.receipts_kept(receipts) == []
    store = LedgerStore(make_engine(postgres_url), None)
    assert store.pending() == 0
    events = [_json.loads(p) for _i, p, _h in store.iter_rows()]
    keys = [(e["run"], e["worker"], e["i"]) for e in events]
    assert len(keys) == len(set(keys))  # exactly once
    assert len(events) >= survivors * per + 1
    assert len({r["index"] for r in receipts}) == len(receipts)  # no index given twice
    store.engine.dispose()


@pytest.mark.slow
def test_postgres_sequencer_killed_mid_batch_loses_no_acknowledged_append(postgres_url, tmp_path):
    """Five appender processes; whichever is the ledger sequencer when its 12th batch is
    written but not committed stops there (failpoint), is found stopped and SIGKILLed.
    Another process takes over; every receipt any process printed (the killed one's
    included) is in the ledger with its leaf hash, every event is there exactly once, the
    indices are dense, nothing is left queued, and `nsdx audit verify` passes."""

    rig = harness.LedgerRig(tmp_path / "ledger", postgres_url)
    first = rig.start(9, 1)  # migrates and makes the key before the five start
    assert first.wait(120) == 0, first.communicate()[1][-500:]
    per = 60
    fp = {"NSDX_FAILPOINTS": "ledger.written=stop@12"}
    procs = [rig.start(w, per, fp) for w in range(5)]
    killed: list[int] = []
    while any(p.poll() is None for p in procs):
        for p in procs:
            if p.poll() is None and _stopped(p.pid):
                if killed:  # a later sequencer at its own 12th batch: let it go on
                    os.kill(p.pid, signal.SIGCONT)
                else:
                    os.kill(p.pid, signal.SIGKILL)
                    killed.append(p.pid)
        try:
            procs[0].wait(0.05)
        except subprocess.TimeoutExpired:
            pass
    outs = [p.communicate(timeout=60) for p in procs]
    assert len(killed) == 1, "no sequencer reached its 12th batch"
    _survivors_lost_nothing(rig, postgres_url, procs, outs, killed, per, survivors=4)


@pytest.mark.slow
def test_postgres_sequencer_killed_while_pipelining_loses_no_acknowledged_append(
    postgres_url, tmp_path
):
    """No failpoint armed, so the sequencer sends each batch's statement and COMMIT (and
    the next batch's head lock and queue drain) in one pipeline: five appenders, and
    twice the process that is the sequencer (its session names it in pg_stat_activity)
    is SIGKILLed wherever it is. Every receipt printed is in the ledger with its leaf,
    each event once, the indices dense, nothing left queued, `nsdx audit verify` passes."""
    import time

    import psycopg

    rig = harness.LedgerRig(tmp_path / "ledger", postgres_url)
    first = rig.start(9, 1)  # migrates and makes the key before the five start
    assert first.wait(120) == 0, first.communicate()[1][-500:]
    per = 80
    procs = [rig.start(w, per) for w in range(5)]
    pids = {p.pid: p for p in procs}
    dsn = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    killed: list[int] = []
    seen_receipts = 0
    with psycopg.connect(dsn, autocommit=True) as c:
        while len(killed) < 2 and any(p.poll() is None for p in procs):
            names = c.execute(
                "SELECT application_name FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name LIKE 'nsdx ledger sequencer %'"
            ).fetchall()
            seen_receipts = c.execute("SELECT count(*) FROM ledger_entries").fetchone()[0]
            for (name,) in names:
                pid = int(name.rsplit(" ", 1)[1])
                # kill once some batches are in, while others still append
                if pid in pids and pid not in killed and seen_receipts > 40 * (len(killed) + 1):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.01)
    outs = [p.communicate(timeout=300) for p in procs]
    assert len(killed) == 2, f"found {len(killed)} sequencers to kill ({seen_receipts} entries)"
    _survivors_lost_nothing(rig, postgres_url, procs, outs, killed, per, survivors=3)
