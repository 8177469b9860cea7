"""Crash-consistency harness: SIGKILL `nsdx ingest` and ledger appenders at random points and
check, after every kill, what a user depends on.

    python bench/crash_harness.py [--kills 30] [--ledger-kills 15] [--appenders 8]
                                  [--seed 1] [--no-s3] [--no-pg] [--write-doc]

**Ingest** (local folder and a real SeaweedFS): one dataset is published as v1, then each
round changes the source and starts `nsdx ingest`, which is killed with SIGKILL either at a
named failpoint (``ingest/failpoints.py``: the process stops itself there with SIGSTOP, the
harness checks that the previous version is served meanwhile, then SIGKILLs it) or after a
random delay counted from the first failpoint the run passes (its first line in the failpoint
trace), within the time a clean run takes from there to its end — so the random kills land
across reading, validating, writing and committing, not in the interpreter's start-up (the
phase of each is read from the trace).
After every kill:

* every version the catalogue lists is complete: its ``manifest.json`` is in storage, every
  file it names is there with its SHA-256, and nothing else is under its prefix;
* the current version is the previous one (or the new one, when the kill came after the
  catalogue's commit) and a query returns exactly its rows; the previous version's own view
  ``<view>__v<N>`` still returns its rows;
* a rerun exits 0 and converges to exactly one new version (registered, current, with the new
  rows, the only new committed manifest in storage), and a second rerun is ``up_to_date``.

**Ledger** (SQLite, one appender at a time; PostgreSQL, ``--appenders`` processes at once):
appenders print a receipt (index, payload) after each append returns; they are SIGKILLed at
failpoints (lock held / written, not committed / committed, not settled) or after random
delays counted from their first append. After every kill ``nsdx audit verify`` passes, the indices are dense (no gap, no
duplicate), every entry's leaf hash is its payload's (no half entry), and every receipt
given is in the ledger at its index. On PostgreSQL the appenders run at once and the killed
ones are restarted, so concurrency and kills are tested together.

Results go to ``bench/results/crash_harness.json``; ``--write-doc`` also rewrites the crash
table of ``docs/reliability.md`` from them (``tests/test_reliability_doc.py`` checks that the
doc's table is the one these results give, so the figures cannot drift).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NSDX = str(Path(sys.executable).parent / "nsdx")
RESULTS = ROOT / "bench" / "results" / "crash_harness.json"
PG_ADMIN = os.environ.get("NSDX_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

DATASET = "crash-readings"
VIEW = "transport.crash_readings"
ROWS = 20_000

# failpoints of a publish on each backend, in the order a publish passes them
INGEST_POINTS = {
    "local": [
        "ingest.read",
        "ingest.validated",
        "ingest.written",
        "ingest.staged",
        "storage.before_rename",
        "storage.committed",
        "catalogue.register",
        "catalogue.register.tx",
        "catalogue.registered",
    ],
    "s3": [
        "ingest.read",
        "ingest.validated",
        "ingest.written",
        "ingest.staged",
        "storage.uploaded",
        "storage.before_manifest",
        "storage.committed",
        "catalogue.register",
        "catalogue.register.tx",
        "catalogue.registered",
    ],
}
LEDGER_POINTS = ["ledger.append", "ledger.written", "ledger.committed"]


def _phase(point: str | None) -> str:
    from ingest.failpoints import POINTS

    return POINTS.get(point, "starting") if point else "starting"


# ---------------------------------------------------------------------------------------------
# ingest


@dataclass
class IngestRig:
    """One deployment (catalogue on SQLite, storage local or S3) with the crash dataset."""

    work: Path
    backend: str
    storage_env: dict[str, str] = field(default_factory=dict)
    validate: bool = True  # an expectation: great-expectations runs in the worker process
    second_rerun: bool = True  # also check that a second rerun is up_to_date
    content: int = 0

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.csv = self.work / "readings.csv"
        self.trace = self.work / "trace.txt"
        self.env = {
            "NSDX_HOME": str(self.work / "home"),
            "NSDX_DATASETS": str(self.work / "datasets.yaml"),
            "NSDX_PII_KEY": "crash-pii-key",
            # the production default keeps the validation worker for the next command (a
            # killed ingest's worker then serves the rerun); it leaves 2 minutes after the run
            "NSDX_VALIDATION_LINGER": "120",
            "NSDX_STAGING_DIR": str(self.work / "staging"),
            **self.storage_env,
        }
        (self.work / "datasets.yaml").write_text(
            f"""datasets:
  - id: {DATASET}
    title: 崩溃测试读数
    domain: transport
    organization: crash-org
    source: {{path: {self.csv}, format: csv}}
    schema:
      - {{name: n, type: integer}}
      - {{name: v, type: integer}}
"""
            + (
                "    expectations:\n      - {column: v, between: [0, 1000000000]}\n"
                if self.validate
                else ""
            ),
            encoding="utf-8",
        )

    # -- the source: content k has ROWS + k rows, every v = k (sum and count identify it)
    def write_source(self, k: int) -> None:
        self.content = k
        rows = ROWS + k
        with open(self.csv, "w", encoding="utf-8") as f:
            f.write("n,v\n")
            f.writelines(f"{i},{k}\n" for i in range(rows))

    @staticmethod
    def expected(k: int) -> tuple[int, int]:
        return ROWS + k, (ROWS + k) * k

    def full_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {**os.environ, **self.env, **(extra or {})}
        for k in ("NSDX_FAILPOINTS", "NSDX_FAILPOINTS_TRACE"):
            if extra is None or k not in extra:
                env.pop(k, None)
        return env

    def ingest(self) -> dict:
        p = subprocess.run(
            [NSDX, "ingest", DATASET, "--json"],
            capture_output=True,
            text=True,
            env=self.full_env(),
            timeout=300,
        )
        if p.returncode != 0:
            raise AssertionError(f"ingest exited {p.returncode}: {p.stdout}\n{p.stderr}")
        return json.loads(p.stdout)["results"][0]

    def start(self, extra: dict[str, str]) -> subprocess.Popen:
        with open(self.work / "killed.out", "wb") as out:
            return subprocess.Popen(
                [NSDX, "ingest", DATASET, "--json"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.full_env(extra),
            )

    # -- what the harness reads, in its own process ---------------------------------------
    def open(self):
        from catalogue.registry import Catalogue
        from ingest.storage import open_store

        url = self.env.get("NSDX_STORAGE_URL") or f"file://{self.env['NSDX_HOME']}/objects"
        saved = {k: os.environ.get(k) for k in self.storage_env}
        os.environ.update(self.storage_env)
        try:
            store = open_store(url)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return Catalogue(f"sqlite:///{self.env['NSDX_HOME']}/nsdx.db"), store

    def versions(self, cat) -> list:
        from sqlalchemy import select

        from catalogue.models import Dataset, Version

        with cat.Session() as s:
            return list(
                s.scalars(
                    select(Version)
                    .join(Dataset, Dataset.id == Version.dataset_id)
                    .where(Dataset.name == DATASET)
                    .order_by(Version.number)
                )
            )


def _complete(store, ver) -> str | None:
    """None if the version's files in storage are exactly its manifest's, with their SHA-256."""
    try:
        stored = json.loads(store.get_bytes(f"{ver.prefix}/manifest.json"))
    except Exception as e:  # noqa: BLE001 - reported as the failure
        return f"v{ver.number}: manifest.json unreadable: {e}"
    if stored.get("fingerprint") != ver.fingerprint:
        return f"v{ver.number}: manifest fingerprint differs from the catalogue's"
    for f in stored["files"]:
        key = f"{ver.prefix}/{f['path']}"
        try:
            digest = store.sha256(key)
        except Exception:  # noqa: BLE001
            return f"v{ver.number}: {f['path']} missing"
        if digest != f["sha256"]:
            return f"v{ver.number}: {f['path']} SHA-256 differs"
    listed = {i.key[len(ver.prefix) + 1 :] for i in store.list(f"{ver.prefix}/")}
    if listed != {f["path"] for f in stored["files"]} | {"manifest.json"}:
        return f"v{ver.number}: storage holds other files under its prefix"
    return None


def _served(cat, store, view: str) -> tuple[int, int]:
    from catalogue.query import connect, run_query

    t = run_query(connect(cat, store), f"SELECT count(*) AS c, sum(v) AS s FROM {view}")
    return t.column("c")[0].as_py(), t.column("s")[0].as_py() or 0


def _committed_numbers(store) -> set[int]:
    out = set()
    for info in store.list(f"crash-org/{DATASET}/"):
        parts = info.key.split("/")
        if len(parts) == 4 and parts[3] == "manifest.json":
            out.add(int(parts[2][1:]))
    return out


def check_after_kill(rig: IngestRig, before: dict, k_old: int, k_new: int) -> list[str]:
    """The invariants right after a kill; a list of what did not hold."""
    problems = []
    cat, store = rig.open()
    versions = rig.versions(cat)
    for ver in versions:
        if (p := _complete(store, ver)) is not None:
            problems.append(p)
    cur = cat.current(DATASET)
    numbers = [v.number for v in versions]
    if cur is None:
        return [*problems, "no current version"]
    if cur.number == before["current"]:
        want = rig.expected(k_old)
    elif cur.number not in before["registered"] and cur.number > before["current"]:
        want = rig.expected(k_new)  # killed after the catalogue's commit
    else:
        return [*problems, f"current moved to v{cur.number} unexpectedly"]
    got = _served(cat, store, VIEW)
    if got != want:
        problems.append(f"current v{cur.number} serves {got}, expected {want}")
    old = _served(cat, store, f"{VIEW}__v{before['current']}")
    if old != rig.expected(k_old):
        problems.append(f"previous v{before['current']} serves {old}")
    if len(numbers) > len(before["registered"]) + 1:
        problems.append(f"more than one new version registered: {numbers}")
    return problems


def check_after_rerun(rig: IngestRig, before: dict, k_new: int) -> tuple[list[str], dict]:
    problems = []
    r = rig.ingest()
    cat, store = rig.open()
    versions = rig.versions(cat)
    new = [v.number for v in versions if v.number not in before["registered"]]
    if len(new) != 1:
        problems.append(f"rerun: {len(new)} new versions registered ({new})")
    cur = cat.current(DATASET)
    if cur is None or cur.number != (new[0] if new else -1):
        problems.append(f"rerun: current is v{cur.number if cur else None}, new {new}")
    for ver in versions:
        if (p := _complete(store, ver)) is not None:
            problems.append(p)
    if _served(cat, store, VIEW) != rig.expected(k_new):
        problems.append("rerun: the new version does not serve the new rows")
    committed = _committed_numbers(store)
    if committed != {v.number for v in versions}:
        problems.append(
            f"committed manifests {sorted(committed)} != registered {numbers(versions)}"
        )
    if rig.second_rerun and (again := rig.ingest())["status"] != "up_to_date":
        problems.append(f"second rerun: {again['status']}, not up_to_date")
    return problems, {"status": r["status"], "version": r["version"]}


def numbers(versions) -> list[int]:
    return [v.number for v in versions]


def _wait_stopped(pid: int, timeout: float = 120.0) -> bool:
    """True once ``pid`` is stopped (state T); False if it exited first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state in ("T", "t"):
            return True
        if state == "Z":
            return False
        time.sleep(0.01)
    raise TimeoutError(f"process {pid} neither stopped nor exited in {timeout} s")


def ingest_kills(rig: IngestRig, kills: int, rng: random.Random, log=print) -> dict:
    """``kills`` rounds of change-source / kill / check / rerun / check on ``rig``."""
    rig.write_source(0)
    rig.trace.unlink(missing_ok=True)
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [NSDX, "ingest", DATASET, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=rig.full_env({"NSDX_FAILPOINTS_TRACE": str(rig.trace)}),
    )
    t_first = _wait_first_trace(proc, rig.trace)
    out, err = proc.communicate(timeout=300)
    clean_seconds = time.monotonic() - t0
    assert proc.returncode == 0 and t_first is not None, f"the clean run: {out}\n{err}"
    first = json.loads(out)["results"][0]
    assert first["status"] == "published", first
    # how long a run works once it passed its first failpoint: the random delays' range
    window = time.monotonic() - t_first
    points = INGEST_POINTS[rig.backend]
    rounds: list[dict] = []
    i = 0
    while sum(1 for r in rounds if r["killed"]) < kills:  # a run that finishes first is no kill
        cat, _store = rig.open()
        before = {
            "current": cat.current(DATASET).number,
            "registered": numbers(rig.versions(cat)),
        }
        k_old, k_new = rig.content, i + 1
        rig.write_source(k_new)
        rig.trace.unlink(missing_ok=True)
        extra = {"NSDX_FAILPOINTS_TRACE": str(rig.trace)}
        if i % 3 != 2:  # two rounds in three at a named point, cycling through them all
            point = points[(i - i // 3) % len(points)]
            extra["NSDX_FAILPOINTS"] = f"{point}=stop"
            mode = "failpoint"
        else:
            point, mode = None, "random delay"
        proc = rig.start(extra)
        served_while_stopped = None
        early = None
        if mode == "failpoint" and not _wait_stopped(proc.pid):
            early = proc.wait()  # it ended before its failpoint: a problem of its own
        elif mode == "failpoint":
            cat, store = rig.open()
            served_while_stopped = _served(cat, store, VIEW) in (
                rig.expected(k_old),
                rig.expected(k_new),
            )
            os.kill(proc.pid, signal.SIGKILL)
        else:  # the clock starts at the first failpoint, past the interpreter's start-up
            delay = rng.uniform(0.0, window)
            if (t_first := _wait_first_trace(proc, rig.trace)) is not None:
                try:
                    proc.wait(timeout=max(0.0, t_first + delay - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
        rc = proc.wait()
        if mode == "random delay":
            trace = rig.trace.read_text().split() if rig.trace.exists() else []
            point = trace[-1] if trace else None
            if rc == 0:  # finished before the timer: not a kill; count it honestly
                mode = "random delay (finished first)"
                if t_first is not None:  # a warm run is quicker than the first: aim within it
                    window = min(window, time.monotonic() - t_first)
        problems = check_after_kill(rig, before, k_old, k_new)
        if early is not None or rc not in (0, -signal.SIGKILL):
            said = (rig.work / "killed.out").read_text(errors="replace")[-1500:]
            problems.append(f"the ingest ended with {rc} before it was killed: {said}")
        if served_while_stopped is False:
            problems.append("the previous version was not served while the ingest was stopped")
        rerun_problems, rerun = check_after_rerun(rig, before, k_new)
        problems += rerun_problems
        row = {
            "round": i,
            "mode": mode,
            "point": point,
            "phase": _phase(point),
            "killed": rc == -signal.SIGKILL,
            "rerun": rerun,
            "problems": problems,
        }
        rounds.append(row)
        i += 1
        log(
            f"  {rig.backend} round {i}: {mode:13s} {point or '-':24s} "
            f"rerun {rerun['status']} v{rerun['version']}  {'OK' if not problems else problems}"
        )
    return {
        "clean_seconds": round(clean_seconds, 2),
        "window_seconds": round(window, 2),
        "rounds": rounds,
    }


def _wait_first_trace(proc: subprocess.Popen, trace: Path, timeout: float = 300.0):
    """The monotonic time at which ``proc`` passed its first failpoint (the trace file has a
    line), or None if it ended before that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if trace.stat().st_size > 0:
                return time.monotonic()
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            return None
        time.sleep(0.005)
    raise TimeoutError(f"process {proc.pid} passed no failpoint in {timeout} s")


# ---------------------------------------------------------------------------------------------
# ledger

APPENDER = r"""
import json, os, sys
from nsdx.core import Nsdx
worker, count = int(sys.argv[1]), int(sys.argv[2])
ledger = Nsdx().exchange.ledger
for i in range(count):
    data = {"worker": worker, "i": i, "run": sys.argv[3]}
    if i % 2:
        a = ledger.append_event("crash.test", data)
    else:
        with ledger.transaction() as s:
            a = ledger.append(s, "crash.test", data)
        a = ledger.settle(a)
    print(json.dumps({"index": a.index, "leaf": a.leaf_hash.hex()}), flush=True)
"""


@dataclass
class LedgerRig:
    work: Path
    database_url: str

    def __post_init__(self) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = {
            "NSDX_HOME": str(self.work / "home"),
            "NSDX_DATABASE_URL": self.database_url,
            "NSDX_DATASETS": str(self.work / "datasets.yaml"),
            "NSDX_PII_KEY": "crash-pii-key",
        }
        (self.work / "datasets.yaml").write_text("datasets: []\n", encoding="utf-8")

    def start(self, worker: int, count: int, extra: dict[str, str] | None = None):
        env = {**os.environ, **self.env, **(extra or {})}
        if not extra or "NSDX_FAILPOINTS" not in extra:
            env.pop("NSDX_FAILPOINTS", None)
        return subprocess.Popen(
            [sys.executable, "-c", APPENDER, str(worker), str(count), uuid.uuid4().hex[:8]],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )

    def verify(self) -> list[str]:
        """`nsdx audit verify` and the invariants of the table itself."""
        problems = []
        p = subprocess.run(
            [NSDX, "audit", "verify", "--json"],
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=300,
        )
        if p.returncode != 0:
            problems.append(f"audit verify exited {p.returncode}: {p.stdout[-500:]} {p.stderr}")
        from catalogue.db import make_engine
        from exchange.ledger.merkle import leaf_hash
        from exchange.ledger.store import LedgerStore

        store = LedgerStore(make_engine(self.database_url), None)
        rows = list(store.iter_rows())
        if [r[0] for r in rows] != list(range(len(rows))):
            problems.append("the ledger's indices have a gap or a duplicate")
        if len(rows) != store.head_size():
            problems.append(f"{len(rows)} entries, head says {store.head_size()}")
        for idx, payload, lh in rows:
            if leaf_hash(payload if isinstance(payload, bytes) else payload.encode()) != lh:
                problems.append(f"entry {idx}: leaf hash is not its payload's (half entry)")
                break
        self._rows = {idx: bytes(lh) for idx, _p, lh in rows}
        store.engine.dispose()
        return problems

    def receipts_kept(self, receipts: list[dict]) -> list[str]:
        missing = [
            r["index"] for r in receipts if self._rows.get(r["index"]) != bytes.fromhex(r["leaf"])
        ]
        return [f"receipts given but not in the ledger: {missing[:5]}"] if missing else []


def _receipts(out: str) -> list[dict]:
    got = []
    for line in out.splitlines():
        try:
            got.append(json.loads(line))
        except ValueError:
            pass  # a line cut by the kill: no receipt was given
    return got


def _kill_plan(rng: random.Random, i: int) -> tuple[str, dict[str, str], float | None]:
    if i % 3 != 2:
        point = LEDGER_POINTS[(i - i // 3) % len(LEDGER_POINTS)]
        nth = rng.randint(1, 20)
        return f"{point}@{nth}", {"NSDX_FAILPOINTS": f"{point}=kill@{nth}"}, None
    # counted from the appender's first failpoint (its first append), not from its start
    return "random delay", {}, rng.uniform(0.0, 2.0)


def _traced(rig: LedgerRig, w: int, extra: dict[str, str]) -> tuple[dict[str, str], Path]:
    """``extra`` with a fresh failpoint trace for appender ``w`` (to start a delay's clock)."""
    trace = rig.work / f"trace-{w}.txt"
    trace.unlink(missing_ok=True)
    return {**extra, "NSDX_FAILPOINTS_TRACE": str(trace)}, trace


def ledger_kills_serial(rig: LedgerRig, kills: int, rng: random.Random, log=print) -> dict:
    """One appender at a time (SQLite), killed ``kills`` times."""
    rounds = []
    receipts: list[dict] = []
    for i in range(kills):
        how, extra, delay = _kill_plan(rng, i)
        extra, trace = _traced(rig, i, extra)
        proc = rig.start(i, 10_000, extra)
        if delay is not None and (t_first := _wait_first_trace(proc, trace)) is not None:
            time.sleep(max(0.0, t_first + delay - time.monotonic()))
            os.kill(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
        got = _receipts(out)
        receipts += got
        problems = rig.verify() + rig.receipts_kept(receipts)
        if proc.returncode != -signal.SIGKILL:
            problems.append(f"appender ended with {proc.returncode}, not killed: {err[-300:]}")
        rounds.append(
            {"round": i, "how": how, "receipts": len(got), "killed": True, "problems": problems}
        )
        log(f"  ledger kill {i + 1}/{kills}: {how:22s} {len(got)} receipts  {problems or 'OK'}")
    return {"rounds": rounds, "entries": len(rig._rows)}


def ledger_kills_concurrent(
    rig: LedgerRig, kills: int, appenders: int, rng: random.Random, log=print, per: int = 150
) -> dict:
    """``appenders`` processes append ``per`` events each, at once; in every round two of them
    are SIGKILLed (at a failpoint or after a delay) while the others finish."""
    rounds = []
    receipts: list[dict] = []
    done = 0
    i = 0
    while done < kills:
        victims = set(rng.sample(range(appenders), min(2, kills - done)))
        procs, plans, traces = [], {}, {}
        for w in range(appenders):
            if w in victims:
                how, extra, delay = _kill_plan(rng, done + len(plans))
                plans[w] = (how, delay)
                extra, traces[w] = _traced(rig, w, extra)
                procs.append(rig.start(w, 10_000, extra))
            else:
                procs.append(rig.start(w, per))
        for w, (_how, delay) in plans.items():
            if delay is not None and (t_first := _wait_first_trace(procs[w], traces[w])):
                time.sleep(max(0.0, t_first + delay - time.monotonic()))
                os.kill(procs[w].pid, signal.SIGKILL)
        outs = [p.communicate(timeout=600) for p in procs]
        got = [_receipts(o) for o, _e in outs]
        for g in got:
            receipts += g
        problems = rig.verify() + rig.receipts_kept(receipts)
        for w, p in enumerate(procs):
            if w in victims and p.returncode != -signal.SIGKILL:
                problems.append(f"appender {w} ended with {p.returncode}: {outs[w][1][-300:]}")
            if w not in victims and p.returncode != 0:
                problems.append(f"appender {w} failed ({p.returncode}): {outs[w][1][-300:]}")
            if w not in victims and len(got[w]) != per:
                problems.append(f"appender {w}: {len(got[w])} receipts of {per}")
        for w, (how, _d) in plans.items():
            rounds.append(
                {
                    "round": i,
                    "how": how,
                    "receipts": len(got[w]),
                    "killed": True,
                    "problems": problems,
                }  # fmt: skip
            )
        done += len(plans)
        log(
            f"  pg round {i + 1}: {appenders} appenders, killed {sorted(victims)} "
            f"({', '.join(h for h, _ in plans.values())}); {len(rig._rows)} entries  "
            f"{problems or 'OK'}"
        )
        i += 1
    return {"rounds": rounds, "entries": len(rig._rows), "appenders": appenders}


# ---------------------------------------------------------------------------------------------
# the run and its summary


def summarise(results: dict) -> dict:
    """Counts for the doc's table, from the raw rounds."""
    out: dict[str, Any] = {}
    for backend in ("local", "s3"):
        r = results.get(f"ingest_{backend}")
        if not r:
            continue
        rounds = r["rounds"]
        kills = [x for x in rounds if x["killed"]]
        out[f"ingest_{backend}"] = {
            "kills": len(kills),
            "failpoint_kills": sum(1 for x in kills if x["mode"] == "failpoint"),
            "random_kills": sum(1 for x in kills if x["mode"] == "random delay"),
            "points": len({x["point"] for x in kills if x["point"]}),
            "phases": dict(sorted(Counter(x["phase"] for x in kills).items())),
            "held": sum(1 for x in kills if not x["problems"]),
            "reruns": dict(sorted(Counter(x["rerun"]["status"] for x in kills).items())),
        }
    for db in ("sqlite", "postgres"):
        r = results.get(f"ledger_{db}")
        if not r:
            continue
        rounds = r["rounds"]
        out[f"ledger_{db}"] = {
            "kills": len(rounds),
            "failpoint_kills": sum(1 for x in rounds if x["how"] != "random delay"),
            "random_kills": sum(1 for x in rounds if x["how"] == "random delay"),
            "held": sum(1 for x in rounds if not x["problems"]),
            "entries": r["entries"],
            "appenders": r.get("appenders", 1),
        }
    return out


def table(summary: dict) -> str:
    """The markdown table docs/reliability.md carries (checked by tests/test_reliability_doc.py)."""
    lines = [
        "| what was killed | kills | at named points / after random delays | phases | held |",
        "|---|---|---|---|---|",
    ]
    names = {
        "ingest_local": "`nsdx ingest`, local folder",
        "ingest_s3": "`nsdx ingest`, SeaweedFS (S3)",
        "ledger_sqlite": "ledger appender, SQLite (1 at a time)",
        "ledger_postgres": "ledger appenders, PostgreSQL ({appenders} at once)",
    }
    for key, name in names.items():
        s = summary.get(key)
        if not s:
            continue
        phases = (
            ", ".join(f"{k} {v}" for k, v in s["phases"].items())
            if "phases" in s
            else f"{s['entries']:,} entries"
        )
        lines.append(
            f"| {name.format(**s)} | {s['kills']} | {s['failpoint_kills']} / "
            f"{s['random_kills']} | {phases} | {s['held']} of {s['kills']} |"
        )
    return "\n".join(lines)


BEGIN, END = "<!-- crash-harness:begin -->", "<!-- crash-harness:end -->"


def write_doc(summary: dict, doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    head, rest = text.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{table(summary)}\n{END}{tail}", encoding="utf-8")


def merge(paths: list[Path]) -> dict:
    """One results file from the parts run in parallel (``--parts``)."""
    results: dict[str, Any] = {"rows": ROWS, "seconds": 0.0, "parts": {}}
    for path in paths:
        part = json.loads(path.read_text(encoding="utf-8"))
        for k, v in part.items():
            if k.startswith(("ingest_", "ledger_")):
                results[k] = v
        results["parts"][path.name] = {"seed": part["seed"], "seconds": part["seconds"]}
        results["seconds"] = max(results["seconds"], part["seconds"])
    results["summary"] = summarise(results)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=30, help="ingest kills per backend")
    ap.add_argument("--ledger-kills", type=int, default=15, help="ledger kills per database")
    ap.add_argument("--appenders", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--parts",
        default="local,s3,sqlite,pg",
        help="what to run (comma-separated; run parts in parallel, then --merge)",
    )
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--merge", type=Path, nargs="+", help="combine the results of parts")
    ap.add_argument("--write-doc", action="store_true", help="rewrite docs/reliability.md's table")
    args = ap.parse_args()
    if args.merge:
        results = merge(args.merge)
    else:
        results = run(args)
    results["summary"] = summarise(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    print(table(results["summary"]))
    print(f"{results['seconds']} s; results in {args.out}")
    if args.write_doc:
        write_doc(results["summary"], ROOT / "docs" / "reliability.md")
    bad = [k for k, s in results["summary"].items() if s["held"] != s["kills"]]
    return 1 if bad else 0


def run(args) -> dict:
    parts = set(args.parts.split(","))
    if args.no_s3:
        parts.discard("s3")
    if args.no_pg:
        parts.discard("pg")
    rng = random.Random(args.seed)
    results: dict[str, Any] = {"seed": args.seed, "rows": ROWS}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="nsdx-crash-") as tmp:
        work = Path(tmp)
        if "local" in parts:
            print(f"ingest on the local folder: {args.kills} kills", flush=True)
            results["ingest_local"] = ingest_kills(
                IngestRig(work / "local", "local"), args.kills, rng
            )
        if "s3" in parts:
            from ingest.storage.seaweed_dev import SeaweedFS

            server = SeaweedFS(Path(tempfile.mkdtemp(prefix="nsdx-crash-sw-"))).start()
            try:
                server.client().create_bucket(Bucket="crash")
                print(f"ingest on SeaweedFS: {args.kills} kills", flush=True)
                results["ingest_s3"] = ingest_kills(
                    IngestRig(work / "s3", "s3", server.env("crash", "c")), args.kills, rng
                )
            finally:
                server.stop()
        if "sqlite" in parts:
            print(f"ledger on SQLite: {args.ledger_kills} kills", flush=True)
            results["ledger_sqlite"] = ledger_kills_serial(
                LedgerRig(work / "ledger-sqlite", f"sqlite:///{work / 'ledger.db'}"),
                args.ledger_kills,
                rng,
            )
        if "pg" in parts:
            import psycopg
            from sqlalchemy.engine import make_url

            name = f"nsdx_crash_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f'CREATE DATABASE "{name}"')
            url = (
                make_url(PG_ADMIN)
                .set(drivername="postgresql+psycopg", database=name)
                .render_as_string(hide_password=False)
            )
            try:
                print(f"ledger on PostgreSQL: {args.ledger_kills} kills", flush=True)
                results["ledger_postgres"] = ledger_kills_concurrent(
                    LedgerRig(work / "ledger-pg", url), args.ledger_kills, args.appenders, rng
                )
            finally:
                from catalogue.db import dispose_all

                dispose_all()
                with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                    c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


if __name__ == "__main__":
    sys.exit(main())
