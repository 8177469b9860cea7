"""Memory does not grow with the size of the source (issue 2 item 4, issue 4 item 2).

Each ingest runs in a fresh process (peak RSS is per process and never goes down). The bus
GPS file is ingested with its expectations at two sizes, 4x apart, with small chunks so that
both sizes stream many chunks; peak RSS of the ingest process and of its validation worker
must stay about the same. Not a timing test. The margin is wide enough for allocator noise
and narrow enough to catch a reader buffering the file (the 4x file is ~110 MB larger).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# the small file (~36 MB) already fills pyarrow's read-ahead (32 blocks of 1 MiB, see
# ingest.readers.csv); below that, memory grows with the file up to that bound
SMALL_ROWS = 400_000
CHUNK_ROWS = 100_000  # many chunks even in the small file
# bytes of peak RSS allowed between the two sizes: measured +25 MiB (chunks in flight while
# the worker imports great-expectations), flat beyond; 16 MiB read-ahead blocks gave +139 MiB
GROWTH_LIMIT = 64 << 20

GENERATE = """
import sys
import numpy as np
from nsdx.samples.transport import gen_bus_gps
data, _ = gen_bus_gps(np.random.default_rng(7), int(sys.argv[2]))
open(sys.argv[1], "wb").write(data)
"""

INGEST = """
import json, resource, sys, yaml
from pathlib import Path
import ingest.pipeline as pipeline
from ingest.spec import parse_specs
from ingest.storage import open_store
from validation import dataset_level, worker

pipeline.CHUNK_ROWS = int(sys.argv[4])
dataset_level.MEMORY_LIMIT = "64MB"  # DuckDB's bound, reached by both sizes
csv, work = Path(sys.argv[1]), Path(sys.argv[2])
doc = yaml.safe_load(Path(sys.argv[3]).read_text(encoding="utf-8"))
bus = next(d for d in doc["datasets"] if d["id"] == "nansha-bus-gps")
bus["source"]["path"] = str(csv)
(spec,) = parse_specs(yaml.safe_dump({"datasets": [bus]}, allow_unicode=True), base_dir=work)
store = open_store(f"file://{work}/objects")
r = pipeline.run_pipeline(spec, store, previous=None, pii_key=b"k", reports_dir=work / "reports")
worker.shutdown()  # reap the worker: its peak is then in RUSAGE_CHILDREN
print(json.dumps({
    "status": r.status,
    "rows": r.row_count,
    "ingest": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    "worker": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
}))
"""


def _python(code: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT), "NSDX_VALIDATION_WORKER": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _peak(tmp_path: Path, rows: int) -> dict:
    csv = tmp_path / f"bus-{rows}.csv"
    _python(GENERATE, str(csv), str(rows))
    work = tmp_path / f"work-{rows}"
    work.mkdir()
    result = json.loads(
        _python(INGEST, str(csv), str(work), str(ROOT / "datasets.yaml"), str(CHUNK_ROWS))
    )
    assert (result["status"], result["rows"]) == ("published", rows)
    return result


@pytest.mark.slow
def test_peak_rss_does_not_grow_with_the_file(tmp_path):
    small = _peak(tmp_path, SMALL_ROWS)
    large = _peak(tmp_path, 4 * SMALL_ROWS)
    for part in ("ingest", "worker"):
        grown = large[part] - small[part]
        assert grown < GROWTH_LIMIT, (
            f"peak RSS of the {part} process grew by {grown / 2**20:.0f} MiB for a 4x larger "
            f"file ({small[part] / 2**20:.0f} -> {large[part] / 2**20:.0f} MiB)"
        )
    # the bus data's row-level checks are judged by Arrow in the ingest process
    # (validation.native): no great-expectations worker is started for them
    assert small["worker"] == 0
