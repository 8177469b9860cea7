"""Seeded, reproducible sample data for the Nansha datasets declared in ``datasets.yaml``.

``generate(out_dir)`` writes one file per dataset. The same seed (and, for the bus GPS
file, the same row count) gives byte-identical files. A stamp file in ``out_dir`` records
what was written; a dataset whose parameters and file are unchanged is not generated again,
and a file whose new bytes equal the old ones is not rewritten (its mtime is kept), so
re-running ``make demo`` does not change the inputs of the ingest pipeline.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import transport, urban
from ._common import rng_for

#: Bump when any generator's output changes, so stale files are regenerated.
GENERATOR_VERSION = 1
DEFAULT_ROWS = 1_000_000
DEFAULT_SEED = 20261127
STAMP_NAME = ".nsdx-samples.json"


@dataclass(frozen=True)
class Sample:
    dataset_id: str
    filename: str
    make: Callable[[np.random.Generator, int], tuple[bytes, int]]
    sized: bool = False  # True: the file depends on ``rows``


SAMPLES: tuple[Sample, ...] = (
    Sample("nansha-bus-gps", "bus_gps.csv", transport.gen_bus_gps, sized=True),
    Sample(
        "gz-metro-station-flow",
        "metro_station_flow.xlsx",
        lambda rng, _: transport.gen_metro_flow(rng),
    ),
    Sample(
        "nansha-traffic-detector-counts",
        "traffic_detector_counts.csv",
        lambda rng, _: transport.gen_detector_counts(rng),
    ),
    Sample(
        "nansha-ride-hailing-orders",
        "ride_hailing_orders.ndjson",
        lambda rng, _: transport.gen_ride_hailing(rng),
    ),
    Sample(
        "nansha-drone-flight-logs",
        "drone_flight_logs.csv",
        lambda rng, _: transport.gen_drone_flights(rng),
    ),
    Sample(
        "nansha-hotline-cases", "hotline_cases.csv", lambda rng, _: urban.gen_hotline_cases(rng)
    ),
    Sample(
        "nansha-streetlight-faults",
        "streetlight_faults.xlsx",
        lambda rng, _: urban.gen_streetlight_faults(rng),
    ),
    Sample(
        "nansha-sanitation-truck-runs",
        "sanitation_truck_runs.ndjson",
        lambda rng, _: urban.gen_sanitation_runs(rng),
    ),
)

#: dataset id -> file name inside ``out_dir``
SAMPLE_FILES: dict[str, str] = {s.dataset_id: s.filename for s in SAMPLES}


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _read_stamp(out_dir: Path) -> dict:
    try:
        stamp = json.loads((out_dir / STAMP_NAME).read_text(encoding="utf-8"))
        return stamp if isinstance(stamp, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_if_changed(path: Path, data: bytes) -> bool:
    """Write ``data`` atomically unless the file already holds exactly these bytes."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def generate(
    out_dir: Path,
    *,
    rows: int = DEFAULT_ROWS,
    seed: int = DEFAULT_SEED,
    progress: Callable[[str, int], None] | None = None,
    only: list[str] | None = None,
) -> dict[str, Path]:
    """Write every sample dataset into ``out_dir``; return ``{dataset id: file path}``.

    ``rows`` is the number of bus GPS positions; the other datasets have fixed sizes (from
    4,000 to ~40,000 rows) that depend only on ``seed``. ``progress(dataset_id, rows)`` is
    called once per dataset when its file is ready (generated or found up to date).
    ``only`` limits the run to some dataset ids.
    """
    if rows < 1:
        raise ValueError("rows must be at least 1")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = _read_stamp(out_dir)
    entries: dict = dict(stamp.get("datasets") or {})
    result: dict[str, Path] = {}
    for sample in SAMPLES:
        if only is not None and sample.dataset_id not in only:
            continue
        path = out_dir / sample.filename
        params = {"version": GENERATOR_VERSION, "seed": int(seed)}
        if sample.sized:
            params["rows"] = int(rows)
        old = entries.get(sample.dataset_id) or {}
        if (
            old.get("params") == params
            and old.get("file") == sample.filename
            and old.get("sha256") == _sha256(path)
        ):
            n_rows = int(old.get("rows", 0))
        else:
            data, n_rows = sample.make(rng_for(int(seed), sample.dataset_id), int(rows))
            _write_if_changed(path, data)
            entries[sample.dataset_id] = {
                "file": sample.filename,
                "params": params,
                "rows": int(n_rows),
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
            new_stamp = {"generator": "nsdx.samples", "datasets": entries}
            _write_if_changed(
                out_dir / STAMP_NAME,
                (
                    json.dumps(new_stamp, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
                ).encode(),
            )
        result[sample.dataset_id] = path
        if progress is not None:
            progress(sample.dataset_id, n_rows)
    return result
