"""Validation benchmark: peak memory of a validated ingest of a ~2 GB CSV, and the cost of
validation on the 1M-row bus GPS file.

    .venv/bin/python bench/bench_validation.py [--gb 2.0] [--rows 1000000] [--keep DIR]

1. The 1M-row bus GPS CSV is ingested with and without its expectations (``nsdx ingest``,
   each in its own process): validation cost = pipeline seconds with / without.
2. A ~2 GB bus GPS-like CSV is built by repeating a generated file with the fleet renumbered
   per copy (NSB1xxxx, NSB2xxxx ...), so every expectation of the dataset holds, including
   (vehicle_id, ts) unique; it is then ingested with validation.

Every measured run is its own process; this process stays small (on Linux a child's peak
RSS includes its parent's memory at fork). Peak RSS is that of the ingest process and its
validation worker together (see bench_ingest.run).
This is a benchmark, not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from bench_ingest import run

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
NSDX = str(Path(sys.executable).parent / "nsdx")
BLOCK = 64 << 20


def repeat_csv(src: Path, dest: Path, target_bytes: int) -> int:
    """Write copies of ``src`` (header once) with the fleet renumbered per copy, until
    ``dest`` holds about ``target_bytes``; returns the number of data rows. Runs in a child."""
    copies = 0
    rows = 0
    with open(dest, "wb") as out:
        while out.tell() < target_bytes and copies < 9:
            copies += 1
            with open(src, "rb") as f:
                header = f.readline()
                if copies == 1:
                    out.write(header)
                rest = b""
                while block := f.read(BLOCK):
                    block = rest + block
                    cut = block.rfind(b"\n") + 1
                    block, rest = block[:cut], block[cut:]
                    out.write(block.replace(b'"NSB1', f'"NSB{copies}'.encode()))
                    rows += block.count(b"\n")
                out.write(rest.replace(b'"NSB1', f'"NSB{copies}'.encode()))
    return rows


def run_json(cmd: list[str], env: dict) -> dict:
    secs, rss, out = run(cmd, env)
    return {"seconds": secs, "peak_rss": rss, "stdout": out}


def bus_spec(csv: Path, dataset_id: str, *, expectations: bool = True) -> dict:
    specs = yaml.safe_load((ROOT / "datasets.yaml").read_text(encoding="utf-8"))["datasets"]
    bus = next(s for s in specs if s["id"] == "nansha-bus-gps")
    bus = {**bus, "id": dataset_id, "source": {**bus["source"], "path": str(csv)}}
    if not expectations:
        bus["expectations"] = []
    return bus


def ingest(tmp: Path, spec: dict) -> dict:
    """`nsdx ingest` of one dataset in a fresh deployment under ``tmp``."""
    home = tmp / f"home-{spec['id']}"
    (tmp / f"{spec['id']}.yaml").write_text(
        yaml.safe_dump({"datasets": [spec]}, allow_unicode=True), encoding="utf-8"
    )
    env = {
        **os.environ,
        "NSDX_HOME": str(home),
        "NSDX_DATASETS": str(tmp / f"{spec['id']}.yaml"),
        "NSDX_PII_KEY": "bench",
        # each ingest starts (and so counts) its own worker: cold, and measured with it
        "NSDX_VALIDATION_LINGER": "0",
    }
    env.pop("NSDX_DATABASE_URL", None)
    env.pop("NSDX_STORAGE_URL", None)
    run([NSDX, "datasets", "list", "--json"], env)  # migrations, so the timed run is the ingest
    r = run_json([NSDX, "ingest", spec["id"], "--json"], env)
    out = json.loads(r["stdout"])
    if out.get("errors"):
        raise SystemExit(f"ingest failed: {out['errors']}")
    r["pipeline"] = out["results"][0]["seconds"]
    r["rows"] = out["results"][0]["rows"]
    shutil.rmtree(home, ignore_errors=True)
    return r


def row(name: str, r: dict, rows: int, size: int, secs: float) -> str:
    return (
        f"| {name} | {secs:.2f} | {rows / secs:,.0f} | {size / 1e6 / secs:.0f} "
        f"| {r['peak_rss'] / 1e6:.0f} |"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gb", type=float, default=2.0, help="size of the big CSV (GB)")
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the small CSV")
    ap.add_argument("--keep", type=Path, help="work folder to keep (and reuse generated CSVs)")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--repeat-csv", nargs=3, help=argparse.SUPPRESS)  # internal: child task
    args = ap.parse_args()
    if args.repeat_csv:
        src, dest, target = args.repeat_csv
        print(repeat_csv(Path(src), Path(dest), int(target)))
        return
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="nsdx-bench-val-"))
    tmp.mkdir(parents=True, exist_ok=True)
    header = (
        "| run | seconds | rows/s | MB/s | peak RSS MB (ingest + worker) |\n"
        "|---|---:|---:|---:|---:|"
    )

    small = tmp / f"small-{args.rows}" / "bus_gps.csv"
    if not small.exists():
        subprocess.run(
            [NSDX, "samples", "generate", "--out", str(small.parent), "--rows", str(args.rows)],
            check=True,
            capture_output=True,
        )
    size = small.stat().st_size
    with_v = ingest(tmp, bus_spec(small, "bus-validated"))
    without = ingest(tmp, bus_spec(small, "bus-unvalidated", expectations=False))
    print(f"\n1. bus GPS CSV, {args.rows:,} rows, {size / 1e6:.1f} MB (pipeline seconds)\n")
    print(header)
    print(row("nsdx ingest, with validation", with_v, args.rows, size, with_v["pipeline"]))
    print(row("nsdx ingest, no expectations", without, args.rows, size, without["pipeline"]))
    print(
        f"\nvalidation cost: pipeline with / without expectations = "
        f"{with_v['pipeline'] / without['pipeline']:.2f} "
        f"(process wall {with_v['seconds']:.2f} s / {without['seconds']:.2f} s)"
    )

    if not args.skip_big:
        big = tmp / "big" / "bus_gps.csv"
        target = int(args.gb * 1e9)
        if not big.exists() or abs(big.stat().st_size - target) > target * 0.15:
            base = tmp / "base"
            base_rows = max(100_000, int(target / 89 / 9) + 1)  # ~89 bytes a row, 9 copies
            subprocess.run(
                [NSDX, "samples", "generate", "--out", str(base), "--rows", str(base_rows)],
                check=True,
                capture_output=True,
            )
            big.parent.mkdir(exist_ok=True)
            subprocess.run(
                [PY, __file__, "--repeat-csv", str(base / "bus_gps.csv"), str(big), str(target)],
                check=True,
                capture_output=True,
            )
            shutil.rmtree(base, ignore_errors=True)
        bsize = big.stat().st_size
        r = ingest(tmp, bus_spec(big, "bus-big"))
        print(f"\n2. bus GPS-like CSV, {r['rows']:,} rows, {bsize / 1e9:.2f} GB, with validation\n")
        print(header)
        print(row("nsdx ingest (pipeline seconds)", r, r["rows"], bsize, r["pipeline"]))
        print(row("nsdx ingest (process wall)", r, r["rows"], bsize, r["seconds"]))
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
