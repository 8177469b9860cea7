"""Ingest benchmark: `nsdx ingest` of the bus GPS CSV against plain pyarrow CSV→Parquet.

    .venv/bin/python bench/bench_ingest.py [--rows 2000000] [--repeat 3]

The dataset is issue 18's: the bus GPS file (2M rows ≈ 180 MB) with three expectations
(``ts`` not null, ``speed_kmh`` between 0 and 150, ``vehicle_id`` matching a regex) and the
plate masked (keyed HMAC). A fourth variant declares the same three checks as ``gx:`` entries,
which run through great-expectations in the validation worker (the path every row-level check
took before Arrow judged the simple ones), to show what that costs.

Every variant runs in its own process on the same file, in the same run, ``--repeat`` rounds
with the variants interleaved; medians and ranges are printed as a markdown table with ratios.
Wall time, CPU time (user + system) and peak RSS (from wait4, plus children) are measured
per process; on a shared machine the CPU ratio is the steadier one.

Three `nsdx ingest` variants: *cold* (no validation worker from an earlier command: this one
imports great-expectations), *warm* (right after the cold one, whose worker lingers for the
next command, as it does for a user who ingests again within NSDX_VALIDATION_LINGER seconds)
and *no expectations*. "process" is the command's wall time; "pipeline" the time the command
reports for the dataset (without the CLI's start-up and catalogue registration).
This is a benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
NSDX = str(Path(sys.executable).parent / "nsdx")
PACKAGES = ("nsdx", "catalogue", "ingest", "validation", "exchange")

# pyarrow's streaming reader reads 32 blocks ahead: with 16 MiB blocks its memory grows
# with the file up to 512 MiB of raw text; 1 MiB blocks keep it flat (as nsdx reads)
PYARROW_STREAMING = """
import sys, pyarrow.csv as pv, pyarrow.parquet as pq
r = pv.open_csv(sys.argv[1], read_options=pv.ReadOptions(block_size=int(sys.argv[3])))
w = pq.ParquetWriter(sys.argv[2], r.schema, compression="zstd")
for b in r:
    w.write_batch(b)
w.close()
"""
PYARROW_TABLE = """
import sys, pyarrow.csv as pv, pyarrow.parquet as pq
pq.write_table(pv.read_csv(sys.argv[1]), sys.argv[2], compression="zstd")
"""


def run(cmd: list[str], env: dict | None = None) -> tuple[float, int, str, float]:
    """Wall seconds, peak RSS bytes, stdout and CPU seconds (user + system, all threads;
    steadier than wall time on a shared machine) of one process.

    Peak RSS is the larger of wait4's ru_maxrss (the process, or its largest reaped child)
    and the peak of the summed RSS of the process and its children (the validation worker),
    sampled every 50 ms: what the machine needs for the whole ingest."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    streams: dict[str, bytes] = {}
    readers = [
        threading.Thread(target=lambda k=k, s=s: streams.__setitem__(k, s.read()))
        for k, s in (("out", p.stdout), ("err", p.stderr))
    ]
    for t in readers:
        t.start()
    tree_peak = 0
    while True:  # reap with wait4 for the child's own rusage
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        tree_peak = max(tree_peak, tree_rss(p.pid))
        time.sleep(0.05)
    for t in readers:
        t.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{streams['err'].decode()[-3000:]}")
    cpu = ru.ru_utime + ru.ru_stime
    return secs, max(ru.ru_maxrss * 1024, tree_peak), streams["out"].decode(), cpu


def tree_rss(pid: int) -> int:
    """Summed RSS of ``pid`` and its descendants (Linux /proc; 0 elsewhere)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return total


THREE = [
    {"column": "ts", "not_null": True},
    {"column": "speed_kmh", "between": [0, 150]},
    {"column": "vehicle_id", "regex": r"^NSB\d{5}$"},
]
THREE_GX = [
    {"gx": "expect_column_values_to_not_be_null", "column": "ts"},
    {"gx": "expect_column_values_to_be_between", "column": "speed_kmh", "min_value": 0,
     "max_value": 150},
    {"gx": "expect_column_values_to_match_regex", "column": "vehicle_id", "regex": r"^NSB\d{5}$"},
]  # fmt: skip
BASE = "pyarrow open_csv streaming"
COLD = "cold: starts the validation worker"
WARM = "warm: the worker the previous command left"
NOVAL = "no expectations"
GX = "the three as gx: entries, cold (great-expectations in the worker)"


def _stop_lingering() -> None:
    from validation.worker import _Worker

    while (w := _Worker.connect()) is not None:
        w.stop()


def _lingering():
    """The validation worker the last command left (it takes a moment to listen again)."""
    from validation.worker import _Worker

    for _ in range(40):
        if (w := _Worker.connect()) is not None:
            return w
        time.sleep(0.05)
    return None


def _peak_rss(pid: int) -> int:
    """A process's peak resident set (VmHWM) in bytes; 0 when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians are reported")
    ap.add_argument(
        "--no-bytecode", action="store_true", help="do not compile nsdx's bytecode first"
    )
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="nsdx-bench-"))
    # generated in a child process: on Linux a child's peak RSS counts the parent's memory
    # at fork time, so this process must stay small
    subprocess.run(
        [NSDX, "samples", "generate", "--out", str(tmp / "samples"), "--rows", str(args.rows)],
        check=True,
        capture_output=True,
    )
    csv = tmp / "samples" / "bus_gps.csv"
    size = csv.stat().st_size
    specs = yaml.safe_load((ROOT / "datasets.yaml").read_text(encoding="utf-8"))["datasets"]
    bus = next(s for s in specs if s["id"] == "nansha-bus-gps")
    bus["source"]["path"] = str(csv)
    bus["expectations"] = THREE
    noval = {**bus, "id": "nansha-bus-gps-noval", "expectations": []}
    gx = {**bus, "id": "nansha-bus-gps-gx", "expectations": THREE_GX}
    (tmp / "datasets.yaml").write_text(
        yaml.safe_dump({"datasets": [bus, noval, gx]}, allow_unicode=True), encoding="utf-8"
    )
    env = {
        **os.environ,
        "NSDX_HOME": str(tmp / "home"),
        "NSDX_DATASETS": str(tmp / "datasets.yaml"),
        "NSDX_PII_KEY": "bench",
    }
    env.pop("NSDX_DATABASE_URL", None)
    env.pop("NSDX_STORAGE_URL", None)

    # nsdx's own bytecode, as an installed nsdx has it (pip compiles at install; Python
    # writes it on a checkout's first run): with PYTHONDONTWRITEBYTECODE set, as on the
    # machines these figures come from, every command would compile ~100 modules again
    # (~0.1 s), which is not what users run. --no-bytecode measures that case.
    if not args.no_bytecode:
        subprocess.run(
            [PY, "-m", "compileall", "-q", *(str(ROOT / p) for p in PACKAGES)],
            check=True,
            capture_output=True,
        )
    # create the deployment (migrations, key) so the timed runs measure the pipeline
    run([NSDX, "ingest", "nansha-bus-gps-noval", "--json"], env)
    # the commands' workers linger, and this process's leave() must not stop them either
    env["NSDX_VALIDATION_LINGER"] = os.environ["NSDX_VALIDATION_LINGER"] = "120"
    pyarrow_runs = {
        "pyarrow read_csv + write_table": [PY, "-c", PYARROW_TABLE, str(csv), str(tmp / "a.pq")],
        BASE: [PY, "-c", PYARROW_STREAMING, str(csv), str(tmp / "b.pq"), str(16 << 20)],
        "pyarrow open_csv streaming, 1 MiB blocks": [
            PY, "-c", PYARROW_STREAMING, str(csv), str(tmp / "c.pq"), str(1 << 20)
        ],
    }  # fmt: skip
    nsdx_runs = [  # in this order in every round: the warm run uses the cold run's worker
        (COLD, "nansha-bus-gps"),
        (WARM, "nansha-bus-gps"),
        (NOVAL, "nansha-bus-gps-noval"),
        (GX, "nansha-bus-gps-gx"),
    ]
    results: dict[str, list[tuple[float, int]]] = {}
    cpu: dict[str, list[float]] = {}  # CPU seconds of the processes
    load_before = os.getloadavg()
    worker_peak = 0
    for _ in range(args.repeat):  # rounds interleave the variants: noise hits them alike
        for name, cmd in pyarrow_runs.items():
            secs, rss, _out, used = run(cmd)
            results.setdefault(name, []).append((secs, rss))
            cpu.setdefault(name, []).append(used)
        _stop_lingering()  # cold means no worker from an earlier command
        for label, ds in nsdx_runs:
            if label == GX:
                _stop_lingering()  # cold: great-expectations imported by this command
            secs, rss, out, used = run([NSDX, "ingest", ds, "--json", "--force"], env)
            cpu.setdefault(f"nsdx ingest, {label} (process)", []).append(used)
            inner = json.loads(out)["results"][0]["seconds"]
            results.setdefault(f"nsdx ingest, {label} (process)", []).append((secs, rss))
            results.setdefault(f"nsdx ingest, {label} (pipeline)", []).append((inner, rss))
            if (w := _lingering()) is not None:  # the lingering worker: its own peak RSS
                worker_peak = max(worker_peak, _peak_rss(w.pid))
                w.leave()
    _stop_lingering()  # the bench's own worker does not outlive it

    load_after = os.getloadavg()
    base = statistics.median(s for s, _ in results[BASE])
    print(f"\nbus GPS CSV: {args.rows:,} rows, {size / 1e6:.1f} MB; median of {args.repeat} runs")
    if args.no_bytecode:
        print("nsdx's bytecode not compiled first (--no-bytecode)")
    print(
        f"load average (1 min) before {load_before[0]:.2f}, after {load_after[0]:.2f} "
        f"({os.cpu_count()} CPUs)\n"
    )
    print(
        "| variant | seconds (median, range) | rows/s | MB/s | peak RSS MB "
        "| throughput vs pyarrow streaming (median, range) | CPU s (median) | CPU vs pyarrow |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    base_cpu = statistics.median(cpu[BASE])
    for name, runs in results.items():
        secs = [s for s, _ in runs]
        med = statistics.median(secs)
        used = statistics.median(cpu[name]) if name in cpu else None
        print(
            f"| {name} | {med:.2f} ({min(secs):.2f}–{max(secs):.2f}) | {args.rows / med:,.0f} "
            f"| {size / 1e6 / med:.0f} | {max(r for _, r in runs) / 1e6:.0f} "
            f"| {base / med:.2f} ({base / max(secs):.2f}–{base / min(secs):.2f}) "
            + (f"| {used:.2f} | {base_cpu / used:.2f} |" if used else "| — | — |")
        )

    def med(label: str) -> float:
        return statistics.median(s for s, _ in results[f"nsdx ingest, {label} (pipeline)"])

    print(
        f"\nvalidation cost: ingest with expectations / without = {med(COLD) / med(NOVAL):.2f} "
        f"cold, {med(WARM) / med(NOVAL):.2f} warm"
    )
    print(
        f"peak RSS of the lingering validation worker: {worker_peak / 1e6:.0f} MB (a separate "
        "process once its first command has ended; the warm rows' RSS do not include it)"
    )
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}")


if __name__ == "__main__":
    main()
