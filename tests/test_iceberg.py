"""Every open published version as an Iceberg snapshot (catalogue/iceberg.py), read back with
pyiceberg and with DuckDB's iceberg extension, on the local folder (SQLite catalog) and on
SeaweedFS (PostgreSQL catalog), with time travel to earlier versions."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from sqlalchemy import inspect

from catalogue import iceberg
from catalogue.iceberg import IcebergError, IcebergTables, load_duckdb_iceberg
from catalogue.publishing import publish_dataset
from catalogue.registry import Catalogue
from ingest.spec import parse_specs
from tests.conftest import run_cli

KEY = b"k"


def make_spec(tmp_path: Path, rows: list[tuple[str, int]], *, note: bool = False, more: str = ""):
    """Metro entries per station (``note``: a version with one more column)."""
    csv = tmp_path / "flow.csv"
    head = "station,entries" + (",note" if note else "")
    body = "".join(f"{s},{n}" + (",新" if note else "") + "\n" for s, n in rows)
    csv.write_text(f"{head}\n{body}", encoding="utf-8")
    (spec,) = parse_specs(
        f"""datasets:
  - id: metro-flow
    title: 地铁进站客流
    domain: urban-management
    organization: guangzhou-metro
    source: {{path: {csv}, format: csv}}
    schema_changes: allow
{more}""",
        base_dir=tmp_path,
    )
    return spec


def publish(cat, store, tmp_path, rows, **kw):
    r = publish_dataset(cat, store, make_spec(tmp_path, rows, **kw), pii_key=KEY,
                        reports_dir=tmp_path / "r")  # fmt: skip
    assert r.status.startswith("published"), r
    return r


def duck_rows(con, location: str, snapshot: int | None = None) -> list[tuple]:
    at = f", snapshot_from_id := {snapshot}" if snapshot is not None else ""
    return con.execute(
        f"SELECT station, entries FROM iceberg_scan('{location}'{at}) ORDER BY station"
    ).fetchall()


def check_three_versions(cat, store, tmp_path) -> None:
    """Publish v1, v2 and v3 (one more column); each is a snapshot, read back both ways."""
    r1 = publish(cat, store, tmp_path, [("蕉门", 10), ("金洲", 20)])
    r2 = publish(cat, store, tmp_path, [("蕉门", 11), ("金洲", 21)])
    r3 = publish(cat, store, tmp_path, [("蕉门", 12), ("金洲", 22), ("南沙客运港", 5)], note=True)
    assert not [w for w in r1.warnings + r2.warnings + r3.warnings if "Iceberg" in w]

    ice = IcebergTables(cat, store)
    (t,) = ice.snapshots("metro-flow")
    assert t["table"] == "urban_management.metro_flow"
    assert [v["version"] for v in t["versions"]] == [1, 2, 3]
    assert [v["current"] for v in t["versions"]] == [False, False, True]
    sids = {v["version"]: v["snapshot_id"] for v in t["versions"]}
    # the mapping both ways
    for n, sid in sids.items():
        assert ice.snapshot_of("metro-flow", n) == sid
        assert ice.version_of(sid) == {
            "dataset": "metro-flow",
            "version": n,
            "table": "urban_management.metro_flow",
            "snapshot_id": sid,
        }

    # pyiceberg: the current version, and time travel by snapshot id and by tag
    table = ice.catalog.load_table("urban_management.metro_flow")
    now = table.scan().to_arrow().sort_by("station").to_pylist()
    assert [(r["station"], r["entries"], r["note"]) for r in now] == [
        ("南沙客运港", 5, "新"),
        ("蕉门", 12, "新"),
        ("金洲", 22, "新"),
    ]
    v1 = table.scan(snapshot_id=sids[1]).to_arrow().sort_by("station")
    assert v1.column_names == ["station", "entries"]  # v1's own schema: no `note` yet
    assert v1.to_pylist() == [
        {"station": "蕉门", "entries": 10},
        {"station": "金洲", "entries": 20},
    ]
    assert table.metadata.refs["v2"].snapshot_id == sids[2]
    v2 = table.scan(snapshot_id=table.metadata.refs["v2"].snapshot_id).to_arrow()
    assert sorted(v2.column("entries").to_pylist()) == [11, 21]

    # no Parquet file was copied or rewritten: the snapshot's data files are the version's
    current = cat.current("metro-flow")
    keys = [f["key"] for r in current.resources for f in r.files]
    assert sorted(task.file.file_path for task in table.scan().plan_files()) == sorted(
        iceberg.file_uri(store, k) for k in keys
    )
    under_iceberg = [o.key for o in store.list(iceberg.PREFIX + "/")]
    assert under_iceberg and not [k for k in under_iceberg if k.endswith(".parquet")]

    # DuckDB's iceberg extension (the PyPI package at the pinned DuckDB version)
    con = duckdb.connect()
    load_duckdb_iceberg(con, store)
    loc = table.metadata_location
    assert duck_rows(con, loc) == [("南沙客运港", 5), ("蕉门", 12), ("金洲", 22)]
    assert duck_rows(con, loc, sids[1]) == [("蕉门", 10), ("金洲", 20)]
    assert duck_rows(con, loc, sids[2]) == [("蕉门", 11), ("金洲", 21)]
    got = con.execute(
        f"SELECT snapshot_id, operation FROM iceberg_snapshots('{loc}') ORDER BY sequence_number"
    ).fetchall()
    assert [s for s, _ in got] == [sids[1], sids[2], sids[3]]


def test_versions_are_snapshots_on_the_local_folder(tmp_path):
    from ingest.storage.local import LocalStore

    cat = Catalogue(f"sqlite:///{tmp_path / 'cat.db'}")
    store = LocalStore(tmp_path / "objects")
    check_three_versions(cat, store, tmp_path)
    # the Iceberg catalog's tables are in nsdx's own database (what a JDBC catalog reads)
    names = set(inspect(cat.engine).get_table_names())
    assert {"iceberg_tables", "iceberg_namespace_properties", "datasets"} <= names


@pytest.mark.s3
@pytest.mark.postgres
@pytest.mark.xdist_group("seaweedfs-iceberg")
def test_versions_are_snapshots_on_seaweedfs_with_postgres(tmp_path, s3_store, postgres_url):
    cat = Catalogue(postgres_url)
    check_three_versions(cat, s3_store, tmp_path)
    loc = IcebergTables(cat, s3_store).snapshots("metro-flow")[0]["metadata_location"]
    assert loc.startswith(f"s3://{s3_store.bucket}/")


def test_restricted_and_private_datasets_stay_out_of_the_open_catalog(tmp_path):
    from ingest.storage.local import LocalStore

    cat = Catalogue(f"sqlite:///{tmp_path / 'cat.db'}")
    store = LocalStore(tmp_path / "objects")
    publish(cat, store, tmp_path, [("蕉门", 10)], more="    access: restricted\n")
    ice = IcebergTables(cat, store)
    assert ice.snapshots("metro-flow") == []
    with pytest.raises(IcebergError):
        ice.snapshot_of("metro-flow", 1)

    # made open: the next sync registers it; made restricted again: dropped from the catalog
    publish(cat, store, tmp_path, [("蕉门", 11)])
    assert [v["version"] for v in ice.snapshots("metro-flow")[0]["versions"]] == [1, 2]
    publish(cat, store, tmp_path, [("蕉门", 12)], more="    access: restricted\n")
    assert ice.snapshots("metro-flow") == []
    assert not ice.catalog.table_exists("urban_management.metro_flow")


def test_a_failed_registration_leaves_the_publish_whole_and_sync_catches_up(tmp_path, monkeypatch):
    from ingest.storage.local import LocalStore

    cat = Catalogue(f"sqlite:///{tmp_path / 'cat.db'}")
    store = LocalStore(tmp_path / "objects")
    publish(cat, store, tmp_path, [("蕉门", 10)])

    def broken(*a, **kw):
        raise OSError("metadata store unreachable")

    monkeypatch.setattr(IcebergTables, "_commit", staticmethod(broken))
    r2 = publish(cat, store, tmp_path, [("蕉门", 11)])
    assert (r2.status, r2.version, r2.current) == ("published_with_warnings", 2, True)
    assert any("Iceberg registration" in w and "nsdx iceberg sync" in w for w in r2.warnings)
    ice = IcebergTables(cat, store)
    assert [v["version"] for v in ice.snapshots("metro-flow")[0]["versions"]] == [1]

    monkeypatch.undo()
    report = ice.sync()
    assert [(r["version"], r["table"]) for r in report.registered] == [
        (2, "urban_management.metro_flow")
    ]
    assert ice.sync().registered == []  # again: nothing to do
    table = ice.catalog.load_table("urban_management.metro_flow")
    assert table.scan().to_arrow().column("entries").to_pylist() == [11]


def test_a_table_wider_than_the_cap_is_skipped_with_a_warning(tmp_path, monkeypatch):
    """pyiceberg's schema handling grows with the square of the columns (a 10,000-column
    table took 64 s to register, its publish 3 s): a table wider than MAX_COLUMNS is
    published, not registered, and the publish and `sync` say so (not as an error that a
    retry would mend)."""
    from catalogue import iceberg
    from ingest.storage.local import LocalStore

    monkeypatch.setattr(iceberg, "MAX_COLUMNS", 1)  # metro-flow has two columns
    cat = Catalogue(f"sqlite:///{tmp_path / 'cat.db'}")
    store = LocalStore(tmp_path / "objects")
    r = publish(cat, store, tmp_path, [("蕉门", 10)])
    assert (r.status, r.version, r.current) == ("published_with_warnings", 1, True)
    assert r.warnings == [
        "urban_management.metro_flow v1 is not registered in Iceberg: 2 columns, more than 1; "
        "read it with `nsdx query`, nsdx.connect or its download"
    ]
    ice = IcebergTables(cat, store)
    assert ice.snapshots("metro-flow") == []
    report = ice.sync()
    assert report.registered == [] and report.errors == []
    assert report.as_dict()["skipped"] == [
        {"dataset": "metro-flow", "table": "urban_management.metro_flow", "version": 1,
         "columns": 2}
    ]  # fmt: skip


def test_cli_backfills_and_maps_versions(tmp_path, nsdx_env, monkeypatch):
    """Versions published with NSDX_ICEBERG=0 are registered by `nsdx iceberg sync`;
    `show` and `which` give the mapping both ways as JSON."""
    from nsdx.core import Nsdx

    monkeypatch.setenv("NSDX_ICEBERG", "0")
    nx = Nsdx()
    for n in (10, 13):  # two versions, published in-process (the CLI's own core)
        r = nx.ingest_one(make_spec(tmp_path, [("蕉门", n)]))
        assert r.status == "published"
    assert nx.iceberg.snapshots("metro-flow") == []

    out = json.loads(run_cli("iceberg", "sync", "--json", env=nsdx_env).stdout)
    assert [r["version"] for r in out["registered"]] == [1, 2] and out["errors"] == []
    shown = json.loads(run_cli("iceberg", "show", "metro-flow", "--json", env=nsdx_env).stdout)
    (t,) = shown["tables"]
    sid1 = t["versions"][0]["snapshot_id"]
    which = json.loads(run_cli("iceberg", "which", str(sid1), "--json", env=nsdx_env).stdout)
    assert (which["dataset"], which["version"]) == ("metro-flow", 1)

    missing = run_cli("iceberg", "which", "12345", "--json", env=nsdx_env, check=False)
    assert missing.returncode == 1
    assert "no Iceberg snapshot 12345" in json.loads(missing.stderr)["error"]["message"]
    unknown = run_cli("iceberg", "sync", "no-such-dataset", env=nsdx_env, check=False)
    assert unknown.returncode == 1 and "no-such-dataset" in unknown.stderr


def test_an_edit_that_closes_a_dataset_unlists_it_in_the_same_transaction(tmp_path):
    """Made private or deleted on the portal / CKAN API, or restricted in datasets.yaml:
    the table leaves the open catalog with the edit, no sync needed."""
    from catalogue.access import SYSTEM
    from catalogue.editing import Packages
    from ingest.storage.local import LocalStore

    cat = Catalogue(f"sqlite:///{tmp_path / 'cat.db'}")
    store = LocalStore(tmp_path / "objects")
    ident = "urban_management.metro_flow"
    publish(cat, store, tmp_path, [("蕉门", 10)])
    ice = IcebergTables(cat, store)
    assert ice.catalog.table_exists(ident)

    Packages(cat).patch(SYSTEM, {"id": "metro-flow", "private": True})
    assert not ice.catalog.table_exists(ident)
    Packages(cat).patch(SYSTEM, {"id": "metro-flow", "private": False})
    assert [r["version"] for r in ice.sync().registered] == [1]  # open again: sync lists it

    # restricted in datasets.yaml: the run that records it unlists it
    spec = make_spec(tmp_path, [("蕉门", 10)], more="    access: restricted\n")
    publish_dataset(cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "r")
    assert not ice.catalog.table_exists(ident)

    publish(cat, store, tmp_path, [("蕉门", 11)])
    assert ice.catalog.table_exists(ident)
    Packages(cat).delete(SYSTEM, "metro-flow")
    assert not ice.catalog.table_exists(ident)


def test_each_table_of_a_multi_table_dataset_is_its_own_iceberg_table(tmp_path):
    """A GTFS feed: one Iceberg table per GTFS file, named like its query view."""
    import zipfile

    from ingest.storage.local import LocalStore

    def feed(stops: str) -> Path:
        path = tmp_path / "bus.zip"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("agency.txt", "agency_id,agency_name,agency_url,agency_timezone\n"
                       "NS,南沙公交,https://example.cn,Asia/Shanghai\n")  # fmt: skip
            z.writestr("stops.txt", "stop_id,stop_name,stop_lat,stop_lon\n" + stops)
        return path

    def spec(path: Path):
        (s,) = parse_specs(
            f"""datasets:
  - id: nansha-bus-gtfs
    title: 南沙公交线路
    domain: transport
    organization: nansha-bus
    source: {{path: {path}, format: gtfs}}
""",
            base_dir=tmp_path,
        )
        return s

    cat = Catalogue(f"sqlite:///{tmp_path / 'cat.db'}")
    store = LocalStore(tmp_path / "objects")
    publish_dataset(cat, store, spec(feed("S1,蕉门,22.79,113.53\n")), pii_key=KEY)
    publish_dataset(cat, store, spec(feed("S1,蕉门,22.79,113.53\nS2,金洲,22.77,113.55\n")),
                    pii_key=KEY)  # fmt: skip
    ice = IcebergTables(cat, store)
    tables = {t["table"]: t for t in ice.snapshots("nansha-bus-gtfs")}
    assert set(tables) == {"transport.nansha_bus_gtfs__agency", "transport.nansha_bus_gtfs__stops"}
    stops = ice.catalog.load_table("transport.nansha_bus_gtfs__stops")
    v1 = ice.snapshot_of("nansha-bus-gtfs", 1, table="stops")
    assert stops.scan(snapshot_id=v1).to_arrow().column("stop_name").to_pylist() == ["蕉门"]
    assert sorted(stops.scan().to_arrow().column("stop_name").to_pylist()) == ["蕉门", "金洲"]
    con = duckdb.connect()
    load_duckdb_iceberg(con)
    loc = tables["transport.nansha_bus_gtfs__agency"]["metadata_location"]
    assert con.execute(f"SELECT agency_name FROM iceberg_scan('{loc}')").fetchall() == [
        ("南沙公交",)
    ]


@pytest.mark.parametrize("registered_before", [True, False], ids=["new-version", "new-table"])
def test_a_dataset_closed_while_its_registration_runs_stays_out_of_the_open_catalog(
    tmp_path, monkeypatch, database_url, registered_before
):
    """Made private between registration's openness check and its catalog write (the edit
    runs right there, from a hook): the open catalog ends without the dataset's table, on
    both databases — neither re-created by the retry nor left by a create."""
    import threading

    from sqlalchemy import text

    from catalogue.access import SYSTEM
    from catalogue.editing import Packages
    from ingest.storage.local import LocalStore

    cat = Catalogue(database_url)
    store = LocalStore(tmp_path / "objects")
    ident = "urban_management.metro_flow"
    if registered_before:
        publish(cat, store, tmp_path, [("蕉门", 10)])
    else:
        monkeypatch.setenv("NSDX_ICEBERG", "0")
        publish(cat, store, tmp_path, [("蕉门", 10)])
        monkeypatch.delenv("NSDX_ICEBERG")
        assert not IcebergTables(cat, store).catalog.table_exists(ident)
    errors: list[BaseException] = []
    edits: list[threading.Thread] = []

    def close_it() -> None:
        try:
            Packages(cat).patch(SYSTEM, {"id": "metro-flow", "private": True})
        except BaseException as e:  # noqa: BLE001 - asserted below
            errors.append(e)

    def edit_now(self, ds, ver) -> None:
        if edits:
            return
        edits.append(threading.Thread(target=close_it))
        edits[0].start()
        if cat.engine.dialect.name != "postgresql":
            edits[0].join()  # SQLite: the edit commits before the write
            return
        # PostgreSQL: the edit waits for the registration's row lock; go on once it does
        for _ in range(600):
            with cat.engine.connect() as c:
                waiting = c.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock'"
                    )
                )
            if waiting:
                return
            # finished without waiting: the registration held no lock on the dataset's row
            # (only its re-check after the write would then catch the edit, not an edit
            # whose delete ran before that write and committed after the re-check)
            assert edits[0].is_alive(), "the edit did not wait for the registration"
            edits[0].join(0.05)
        raise AssertionError("the edit neither waited nor finished")

    monkeypatch.setattr(IcebergTables, "_before_write", edit_now)
    if registered_before:
        publish(cat, store, tmp_path, [("蕉门", 11)])
    else:
        assert IcebergTables(cat, store).sync(["metro-flow"]).errors == []
    assert edits, "the registration never reached its catalog write"
    edits[0].join()
    assert errors == []
    monkeypatch.undo()
    ice = IcebergTables(cat, store)
    assert not ice.catalog.table_exists(ident)
    assert ice.snapshots("metro-flow") == []
    assert ice.sync().registered == []  # still private: nothing comes back


def test_the_catalog_is_opened_while_the_pipeline_runs_and_a_failure_there_is_met_again(
    tmp_path, monkeypatch
):
    """A run that writes a new version opens the Iceberg catalog (pyiceberg's import) in a
    background thread while its pipeline runs; the registration after the commit point uses
    it. If opening it there fails, the registration opens it again itself: the snapshot is
    still registered. A run with nothing new opens nothing."""
    import threading

    from ingest.storage.local import LocalStore

    cat = Catalogue(f"sqlite:///{tmp_path / 'cat.db'}")
    store = LocalStore(tmp_path / "objects")
    opened: list[str] = []
    real = iceberg.open_catalog

    def flaky(engine, st):
        opened.append(threading.current_thread().name)
        if len(opened) == 1:
            raise OSError("catalog database busy")
        return real(engine, st)

    monkeypatch.setattr(iceberg, "open_catalog", flaky)
    r1 = publish(cat, store, tmp_path, [("蕉门", 10)])
    assert (r1.status, r1.warnings) == ("published", [])
    assert opened == ["nsdx-iceberg-warm-up", threading.current_thread().name]
    r2 = publish(cat, store, tmp_path, [("蕉门", 11)])
    assert r2.warnings == [] and opened[2:] == ["nsdx-iceberg-warm-up"]
    monkeypatch.undo()
    ice = IcebergTables(cat, store)
    assert [v["version"] for v in ice.snapshots("metro-flow")[0]["versions"]] == [1, 2]

    monkeypatch.setattr(iceberg, "open_catalog", flaky)
    again = publish_dataset(cat, store, make_spec(tmp_path, [("蕉门", 11)]), pii_key=KEY,
                            reports_dir=tmp_path / "r")  # fmt: skip
    assert again.status == "up_to_date" and len(opened) == 3  # nothing new: nothing opened


def test_a_refused_publish_leaves_no_warm_up_thread_behind(tmp_path, monkeypatch):
    """A run that fails after taking its version number (here its data fails a check) waits
    for the catalog's background opening before it raises: no thread of the run is left
    writing into the deployment's database or folder (a test's temporary folder was found
    refilled while it was being removed)."""
    import threading
    import time

    from ingest.storage.local import LocalStore
    from validation import ValidationFailed

    cat = Catalogue(f"sqlite:///{tmp_path / 'cat.db'}")
    store = LocalStore(tmp_path / "objects")
    done: list[bool] = []
    real = iceberg.open_catalog

    def slow(engine, st):
        time.sleep(1.0)  # longer than the refused run takes
        done.append(True)
        return real(engine, st)

    monkeypatch.setattr(iceberg, "open_catalog", slow)
    failing = "    expectations:\n      - {column: entries, between: [0, 5]}\n"
    with pytest.raises(ValidationFailed):
        publish_dataset(cat, store, make_spec(tmp_path, [("蕉门", 10)], more=failing),
                        pii_key=KEY, reports_dir=tmp_path / "r")  # fmt: skip
    assert done == [True]  # the opening had finished when the run raised
    assert not [t for t in threading.enumerate() if t.name == "nsdx-iceberg-warm-up"]


def test_a_registration_applies_the_staged_metadata_once_per_change(tmp_path, monkeypatch):
    """pyiceberg's Transaction rebuilds (deep-copies) the whole table metadata — every
    snapshot and tag of every version — each time it is read, some thirty times per commit;
    nsdx's registration builds it once per staged change, so its cost no longer multiplies
    with the table's history. The versions are still all there, tagged, and readable."""
    from pyiceberg.table import update as table_update

    from ingest.storage.local import LocalStore

    cat = Catalogue(f"sqlite:///{tmp_path / 'cat.db'}")
    store = LocalStore(tmp_path / "objects")
    for n in range(4):
        publish(cat, store, tmp_path, [("蕉门", 10 + n)])
    calls = []
    real = table_update.update_table_metadata

    def counted(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    import pyiceberg.table as pt

    monkeypatch.setattr(pt, "update_table_metadata", counted)
    publish(cat, store, tmp_path, [("蕉门", 14)], note=True)  # v5: one more column
    assert 0 < len(calls) <= 8, len(calls)
    monkeypatch.undo()
    ice = IcebergTables(cat, store)
    (table,) = ice.snapshots("metro-flow")
    assert [v["version"] for v in table["versions"]] == [1, 2, 3, 4, 5]
    t = ice.catalog.load_table("urban_management.metro_flow")
    assert t.scan().to_arrow().column("note").to_pylist() == ["新"]
    v3 = t.snapshot_by_name("v3").snapshot_id
    assert t.scan(snapshot_id=v3).to_arrow().column("entries").to_pylist() == [12]


RESTRICTED = """
import json, sys
from pathlib import Path
sys.path.insert(0, ".")
from catalogue.publishing import publish_dataset
from catalogue.registry import Catalogue
from ingest.storage.local import LocalStore
from tests.test_iceberg import make_spec
tmp = Path(sys.argv[1])
cat = Catalogue(f"sqlite:///{tmp / 'cat.db'}")
store = LocalStore(tmp / "objects")
r = publish_dataset(cat, store, make_spec(tmp, [("蕉门", 10)], more="    access: restricted\\n"),
                    pii_key=b"k", reports_dir=tmp / "r")
print(json.dumps({"status": r.status, "warnings": r.warnings,
                  "pyiceberg": any(m.startswith("pyiceberg") for m in sys.modules)}))
"""


def test_publishing_a_restricted_dataset_does_not_load_pyiceberg(tmp_path):
    """Only open datasets are registered: a restricted one's publish asks the catalog's
    table whether there is anything of it to drop, without importing pyiceberg (~0.4 s of
    CPU) or opening the catalog in the background."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", RESTRICTED, str(tmp_path)],
        capture_output=True, text=True, cwd=root, timeout=120, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout) == {"status": "published", "warnings": [], "pyiceberg": False}
