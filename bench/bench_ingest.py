"""Ingest benchmark: `nsdx ingest` of the bus GPS CSV against plain pyarrow CSV→Parquet.

    .venv/bin/python bench/bench_ingest.py [--rows 1000000]

Every variant runs in its own process on the same file, in the same run; wall time and
peak RSS (from wait4) are measured per process. Prints a markdown table with ratios.
This is a benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
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


def run(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS bytes and stdout of one process.

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
    return secs, max(ru.ru_maxrss * 1024, tree_peak), streams["out"].decode()


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--keep", action="store_true")
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
    noval = {**bus, "id": "nansha-bus-gps-noval", "expectations": []}
    (tmp / "datasets.yaml").write_text(
        yaml.safe_dump({"datasets": [bus, noval]}, allow_unicode=True), encoding="utf-8"
    )
    env = {
        **os.environ,
        "NSDX_HOME": str(tmp / "home"),
        "NSDX_DATASETS": str(tmp / "datasets.yaml"),
        "NSDX_PII_KEY": "bench",
    }
    env.pop("NSDX_DATABASE_URL", None)
    env.pop("NSDX_STORAGE_URL", None)

    results = {}
    results["pyarrow read_csv + write_table"] = run(
        [PY, "-c", PYARROW_TABLE, str(csv), str(tmp / "a.parquet")]
    )
    results["pyarrow open_csv streaming"] = run(
        [PY, "-c", PYARROW_STREAMING, str(csv), str(tmp / "b.parquet"), str(16 << 20)]
    )
    results["pyarrow open_csv streaming, 1 MiB blocks"] = run(
        [PY, "-c", PYARROW_STREAMING, str(csv), str(tmp / "c.parquet"), str(1 << 20)]
    )
    # warm the catalogue (migrations, key) so the timed runs measure the pipeline
    run([NSDX, "datasets", "list", "--json"], env)
    for ds in ("nansha-bus-gps", "nansha-bus-gps-noval"):
        secs, rss, out = run([NSDX, "ingest", ds, "--json"], env)
        inner = json.loads(out)["results"][0]["seconds"]
        results[f"nsdx ingest {ds} (process)"] = (secs, rss, out)
        results[f"nsdx ingest {ds} (pipeline)"] = (inner, rss, out)

    base = results["pyarrow open_csv streaming"][0]
    print(f"\nbus GPS CSV: {args.rows:,} rows, {size / 1e6:.1f} MB\n")
    print("| variant | seconds | rows/s | MB/s | peak RSS MB | throughput vs pyarrow streaming |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (secs, rss, _) in results.items():
        print(
            f"| {name} | {secs:.2f} | {args.rows / secs:,.0f} | {size / 1e6 / secs:.0f} "
            f"| {rss / 1e6:.0f} | {base / secs:.2f} |"
        )
    val = results["nsdx ingest nansha-bus-gps (pipeline)"][0]
    noval_s = results["nsdx ingest nansha-bus-gps-noval (pipeline)"][0]
    print(f"\nvalidation cost: ingest with expectations / without = {val / noval_s:.2f}")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}")


if __name__ == "__main__":
    main()
