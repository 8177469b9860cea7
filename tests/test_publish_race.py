"""Concurrent publishes of one dataset, on the local folder and on a real SeaweedFS.

The attack run of issue 20 started two ingests of one dataset with different bytes 0-0.3 s
apart: on S3 both said "published v8" while storage held one run's objects and the
catalogue the other's fingerprint; and a run registering late moved ``current`` backwards.
Here every trial checks what users depend on: each successful run's version in the
catalogue is exactly what storage holds (fingerprint, manifest, every file's SHA-256), the
versions differ, queries return the current version's rows, and ``current`` never goes back.
"""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path

import pytest

from catalogue.publishing import publish_dataset
from catalogue.query import connect, run_query
from catalogue.registry import Catalogue
from ingest.spec import parse_specs

KEY = b"k"
# Trials of two publishes, the second 0-0.3 s after the first (seeded). On SeaweedFS and
# PostgreSQL 10: each S3 trial costs about 1.5 CPU seconds (fresh clients, a dozen requests
# per check), and the first 10 already hold both orders of arrival and delays from 8 ms to
# 0.3 s.
TRIALS = 20


def spec_for(tmp_path: Path, name: str, rows: list[int]):
    tmp_path.mkdir(parents=True, exist_ok=True)
    csv = tmp_path / f"{name}.csv"
    csv.write_text("n\n" + "".join(f"{v}\n" for v in rows), encoding="utf-8")
    (spec,) = parse_specs(
        f"""datasets:
  - id: race-data
    title: 并发发布
    domain: transport
    organization: race-org
    source: {{path: {csv}, format: csv}}
    schema:
      - {{name: n, type: integer}}
""",
        base_dir=tmp_path,
    )
    return spec


def check_version(cat: Catalogue, store, result) -> None:
    """The catalogue's record of ``result`` is exactly what storage holds under its prefix."""
    with cat.Session() as s:
        from sqlalchemy import select

        from catalogue.models import Dataset, Version

        ver = s.scalar(
            select(Version)
            .join(Dataset, Dataset.id == Version.dataset_id)
            .where(Dataset.name == "race-data", Version.number == result.version)
        )
        assert ver is not None, f"v{result.version} is not registered"
        assert ver.fingerprint == result.manifest["fingerprint"]
        stored = json.loads(store.get_bytes(f"{ver.prefix}/manifest.json"))
        assert stored["fingerprint"] == ver.fingerprint
        assert stored["files"] == ver.manifest["files"]
        assert stored["row_count"] == ver.row_count
        for f in stored["files"]:
            assert store.sha256(f"{ver.prefix}/{f['path']}") == f["sha256"]
        listed = {i.key[len(ver.prefix) + 1 :] for i in store.list(f"{ver.prefix}/")}
        assert listed == {f["path"] for f in stored["files"]} | {"manifest.json"}


def _start_both(specs, delays, cat_url, make_store, tmp_path):
    """Two publishes, released together, the second ``delays`` seconds later."""
    results: list = [None, None]
    errors: list = []
    gate = threading.Barrier(2)

    def run(i: int) -> None:
        try:
            gate.wait()
            threading.Event().wait(delays[i])
            results[i] = publish_dataset(
                Catalogue(cat_url), make_store(), specs[i], pii_key=KEY, reports_dir=tmp_path / "r"
            )
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results, errors, threads


def race(tmp_path: Path, cat_url: str, make_store, trials: int = TRIALS) -> None:
    rng = random.Random(20)
    last_current = 0
    for trial in range(trials):
        specs = [
            spec_for(tmp_path / f"t{trial}", "a", [trial * 10 + 1] * 5),
            spec_for(tmp_path / f"t{trial}", "b", [trial * 10 + 2] * 7),
        ]
        delays = [0.0, rng.uniform(0, 0.3)]
        rng.shuffle(delays)
        results, errors, threads = _start_both(specs, delays, cat_url, make_store, tmp_path)
        assert not any(t.is_alive() for t in threads), "a publish hung"
        assert errors == []
        cat, store = Catalogue(cat_url), make_store()
        assert {r.status for r in results} == {"published"}
        assert results[0].version != results[1].version
        for r in results:
            check_version(cat, store, r)
        cur = cat.current("race-data")
        assert cur.number >= last_current  # never backwards
        assert cur.number == max(r.version for r in results)
        assert sum(r.current for r in results) >= 1
        last_current = cur.number
        winner = next(r for r in results if r.version == cur.number)
        t = run_query(
            connect(cat, store), "SELECT sum(n) AS s, count(*) AS c FROM transport.race_data"
        )
        value = trial * 10 + (1 if winner.row_count == 5 else 2)
        assert (t.column("c")[0].as_py(), t.column("s")[0].as_py()) == (
            winner.row_count,
            winner.row_count * value,
        )


def test_concurrent_publishes_local(tmp_path):
    from ingest.storage.local import LocalStore

    race(tmp_path, f"sqlite:///{tmp_path / 'cat.db'}", lambda: LocalStore(tmp_path / "objects"))


@pytest.mark.s3
@pytest.mark.slow  # each trial's checks are a dozen S3 requests (README: Tests)
def test_concurrent_publishes_seaweedfs(tmp_path, seaweedfs, s3_store):
    def make_store():
        return seaweedfs.store(
            bucket=s3_store.bucket, prefix="nsdx", staging_dir=tmp_path / "staging"
        )

    race(tmp_path, f"sqlite:///{tmp_path / 'cat.db'}", make_store, trials=10)


def test_concurrent_publishes_postgres(tmp_path, pg_available):
    if not pg_available:
        pytest.skip("PostgreSQL not reachable")
    from ingest.storage.local import LocalStore
    from tests.conftest import pg_database

    with pg_database() as url:
        race(tmp_path, url, lambda: LocalStore(tmp_path / "objects"), trials=10)


def test_a_late_registration_never_moves_current_back(tmp_path, store):
    """Run A publishes and is delayed before registering; run B publishes and registers a
    newer version; A registers last: its version is recorded, B's stays current."""
    url = f"sqlite:///{tmp_path / 'cat.db'}"
    a = spec_for(tmp_path / "a", "a", [1, 1])
    b = spec_for(tmp_path / "b", "b", [2, 2, 2])
    published = threading.Event()
    b_done = threading.Event()

    class SlowCatalogue(Catalogue):
        def register_version(self, *args, **kw):
            published.set()
            assert b_done.wait(60)
            return super().register_version(*args, **kw)

    out: dict = {}

    def run_a() -> None:
        out["a"] = publish_dataset(SlowCatalogue(url), store, a, pii_key=KEY)

    ta = threading.Thread(target=run_a)
    ta.start()
    assert published.wait(60)
    try:
        out["b"] = publish_dataset(Catalogue(url), store, b, pii_key=KEY)
    finally:
        b_done.set()
        ta.join(60)
    ra, rb = out["a"], out["b"]
    assert (ra.status, rb.status) == ("published", "published")
    assert rb.version > ra.version
    cat = Catalogue(url)
    assert cat.current("race-data").number == rb.version
    assert (ra.current, rb.current) == (False, True)
    assert any("stays current" in w for w in ra.warnings)
    for r in (ra, rb):
        check_version(cat, store, r)
    assert (
        run_query(connect(cat, store), "SELECT sum(n) AS s FROM transport.race_data")
        .column("s")[0]
        .as_py()
        == 6
    )
