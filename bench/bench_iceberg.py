"""Iceberg registration benchmark: what registering a version as an Iceberg snapshot adds to
publishing it (local folder store, SQLite catalogue), measured in the same run.

    .venv/bin/python bench/bench_iceberg.py [--versions 10] [--rows 200000]

Publishes ``--versions`` versions of one dataset with registration off (NSDX_ICEBERG=0),
then registers them all with ``IcebergTables.sync`` (the backfill) and prints the time per
version of each, and their ratio. pyiceberg's one-time import is printed apart.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, default=10)
    ap.add_argument("--rows", type=int, default=200_000)
    args = ap.parse_args()
    os.environ["NSDX_ICEBERG"] = "0"
    os.environ["NSDX_VALIDATION_WORKER"] = "0"

    from catalogue.publishing import publish_dataset
    from catalogue.registry import Catalogue
    from ingest.spec import parse_specs
    from ingest.storage.local import LocalStore

    tmp = Path(tempfile.mkdtemp(prefix="nsdx-bench-iceberg-"))
    cat = Catalogue(f"sqlite:///{tmp / 'cat.db'}")
    store = LocalStore(tmp / "objects")
    csv = tmp / "flow.csv"
    publish_s = 0.0
    for v in range(args.versions):
        with open(csv, "w", encoding="utf-8") as f:
            f.write("station,entries,ts\n")
            for i in range(args.rows):
                f.write(
                    f"s{i % 97},{(i * 7 + v) % 10007},2026-03-0{1 + i % 5} 08:{i % 60:02d}:00\n"
                )
        (spec,) = parse_specs(
            f"""datasets:
  - id: metro-flow
    title: bench
    domain: transport
    organization: bench
    source: {{path: {csv}, format: csv}}
""",
            base_dir=tmp,
        )
        t = time.perf_counter()
        r = publish_dataset(cat, store, spec, pii_key=b"k", reports_dir=tmp / "r")
        publish_s += time.perf_counter() - t
        assert r.status.startswith("published"), r.status

    t = time.perf_counter()
    import pyiceberg.catalog.sql  # noqa: F401
    import pyiceberg.io.pyarrow  # noqa: F401

    import_s = time.perf_counter() - t
    from catalogue.iceberg import IcebergTables

    t = time.perf_counter()
    report = IcebergTables(cat, store).sync()
    sync_s = time.perf_counter() - t
    assert len(report.registered) == args.versions and not report.errors, report.as_dict()
    n = args.versions
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{n} versions of {args.rows:,} rows")
    print(f"publish:  {publish_s / n * 1000:8.1f} ms per version")
    print(f"register: {sync_s / n * 1000:8.1f} ms per version (catalog opened once)")
    print(f"ratio register/publish: {sync_s / publish_s:.3f}")
    print(f"pyiceberg import (once per process): {import_s * 1000:.0f} ms")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
