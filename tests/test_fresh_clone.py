"""The README's promise checked the way a newcomer meets it: `git clone` into an empty
folder with nothing beside it, then the demo `make demo` runs (scripts/demo.sh, the same
file). All 14 datasets must publish from what the repository holds, and the example query
must print.

The clone is of the checkout under test at its HEAD (committed work only). The demo runs with
this test run's Python environment (its libraries), but the code it runs is the clone's:
`python -m nsdx` with PYTHONPATH set to the clone, checked below. Installing a second
environment would only measure the package index.

Slow (two demos: 14 datasets published each time, the first with the 1,000,000 bus GPS rows
`make demo` generates, the second, about a missing file, with 20,000): about 1-2 minutes on a
busy 2-core machine; marked `slow`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("fresh-clone")]

REAL_IDS = {
    "cairns-gtfs",
    "nyc-311-animal-complaints",
    "hk-mtr-lines-and-stations",
    "hk-mtr-barrier-free-facilities",
    "hk-mtr-fares",
    "montreal-bike-counts",
}


def fresh_clone(tmp_path: Path) -> Path:
    box = tmp_path / "empty"
    box.mkdir()
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(box / "nsdx")], check=True)
    clone = box / "nsdx"
    subprocess.run(["git", "checkout", "--quiet", "--detach", head], cwd=clone, check=True)
    assert sorted(p.name for p in box.iterdir()) == ["nsdx"]  # nothing beside it
    assert not (clone / "data" / "samples").exists() and not (clone / ".nsdx").exists()
    return clone


def clone_env(clone: Path) -> dict[str, str]:
    """A newcomer's shell (no NSDX_* settings), running the clone's code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NSDX_", "PYTHON"))}
    return {
        **env,
        "PYTHONPATH": str(clone),
        "NSDX": f"{sys.executable} -m nsdx",
        "NSDX_VALIDATION_LINGER": "0",  # leave no worker behind the test
        "COLUMNS": "200",
    }


def run_demo(clone: Path, rows: int | None = None) -> subprocess.CompletedProcess:
    """scripts/demo.sh as `make demo` runs it (``rows``: fewer bus GPS rows than its 1,000,000)."""
    env = clone_env(clone) | ({"NSDX_DEMO_ROWS": str(rows)} if rows else {})
    return subprocess.run(
        ["sh", "scripts/demo.sh"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )


def nsdx_json(clone: Path, *args: str):
    out = subprocess.run(
        [sys.executable, "-m", "nsdx", *args, "--json"],
        cwd=clone, env=clone_env(clone), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return json.loads(out)


def published(clone: Path) -> dict[str, int | None]:
    """The current version of each dataset datasets.yaml declares (None: not published);
    the exchange demo adds catalogue entries of its own, not counted here."""
    declared = {d["id"] for d in nsdx_json(clone, "datasets", "list", "--declared")}
    assert len(declared) == 14
    listed = {p["name"]: p["nsdx"]["current_version"] for p in nsdx_json(clone, "datasets", "list")}
    return {i: listed.get(i) for i in declared}


def test_the_code_that_runs_is_the_clones(tmp_path):
    clone = fresh_clone(tmp_path)
    code = (
        "import catalogue, exchange, ingest, nsdx, validation, validation.worker as w; "
        "print(*(m.__file__ for m in (catalogue, exchange, ingest, nsdx, validation)), w._ROOT)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=clone_env(clone),
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert len(out) == 6
    assert all(Path(p).resolve().is_relative_to(clone.resolve()) for p in out), out


def test_make_demo_in_a_fresh_clone(tmp_path):
    clone = fresh_clone(tmp_path)
    makefile = (clone / "Makefile").read_text(encoding="utf-8")
    assert "NSDX=$(BIN)/nsdx sh scripts/demo.sh" in makefile  # make demo runs this file
    r = run_demo(clone)
    assert r.returncode == 0, f"stdout:\n{r.stdout[-4000:]}\nstderr:\n{r.stderr[-4000:]}"
    versions = published(clone)
    assert len(versions) == 14 and all(versions.values()), versions
    assert REAL_IDS <= set(versions)
    # the example query printed its five routes
    assert "avg_speed_kmh" in r.stdout and "(5 rows)" in r.stdout
    assert "ledger verified" in r.stdout


def test_a_missing_data_file_is_named_and_the_rest_publishes(tmp_path):
    clone = fresh_clone(tmp_path)
    missing = clone / "data" / "real" / "montreal_bikes_latin1" / "bikes.csv"
    missing.unlink()
    r = run_demo(clone, rows=20_000)  # the full-size demo is the test above
    assert r.returncode != 0  # the demo says something failed ...
    err = r.stderr
    assert "✗ montreal-bike-counts" in err
    assert "file not found: data/real/montreal_bikes_latin1/bikes.csv" in err  # which file
    assert f"looked in {clone}" in err
    assert "git checkout -- data/real" in err  # ... and what to do
    versions = published(clone)  # ... the others are published and the demo went on
    assert versions.pop("montreal-bike-counts", None) is None
    assert len(versions) == 13 and all(versions.values()), versions
    assert "(5 rows)" in r.stdout and "ledger verified" in r.stdout
    # restored as the message says, the next ingest publishes it
    subprocess.run(["git", "checkout", "--", "data/real"], cwd=clone, check=True)
    subprocess.run(
        [sys.executable, "-m", "nsdx", "ingest", "montreal-bike-counts"],
        cwd=clone, env=clone_env(clone), capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert published(clone)["montreal-bike-counts"] == 1
