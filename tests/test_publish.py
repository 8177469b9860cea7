"""Atomic, idempotent publishing on both storage backends (local folder, real SeaweedFS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalogue.publishing import publish_dataset
from catalogue.query import connect, run_query
from catalogue.registry import Catalogue
from ingest.errors import SchemaMismatch
from ingest.spec import parse_specs

KEY = b"k"


def make_spec(tmp_path: Path, rows: list[tuple[str, int]]):
    csv = tmp_path / "flow.csv"
    csv.write_text("station,entries\n" + "".join(f"{s},{n}\n" for s, n in rows), encoding="utf-8")
    (spec,) = parse_specs(
        f"""datasets:
  - id: metro-flow
    title: 地铁进站客流
    domain: transport
    organization: guangzhou-metro
    source: {{path: {csv}, format: csv}}
    schema:
      - {{name: entries, type: integer}}
    expectations:
      - {{column: entries, between: [0, 100000]}}
""",
        base_dir=tmp_path,
    )
    return spec


def total(cat, store) -> int:
    t = run_query(connect(cat, store), "SELECT sum(entries) AS n FROM transport.metro_flow")
    return t.column("n")[0].as_py()


@pytest.fixture
def cat(tmp_path):
    return Catalogue(f"sqlite:///{tmp_path / 'cat.db'}")


def test_rerun_on_unchanged_input_creates_no_version(tmp_path, cat, store):
    spec = make_spec(tmp_path, [("蕉门", 10), ("金洲", 20)])
    r1 = publish_dataset(cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "r")
    assert (r1.status, r1.version) == ("published", 1)
    r2 = publish_dataset(cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "r")
    assert (r2.status, r2.version) == ("up_to_date", 1)
    assert [k.key for k in store.list("guangzhou-metro/metro-flow/v2")] == []
    spec = make_spec(tmp_path, [("蕉门", 10), ("金洲", 25)])
    r3 = publish_dataset(cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "r")
    assert (r3.status, r3.version) == ("published", 2)
    assert total(cat, store) == 35


def test_crash_between_files_and_pointer_keeps_previous_version(tmp_path, cat, store, monkeypatch):
    spec = make_spec(tmp_path, [("蕉门", 10), ("金洲", 20)])
    publish_dataset(cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "r")
    new = make_spec(tmp_path, [("蕉门", 1000), ("金洲", 2000)])

    def crash(*a, **k):  # the process dies after storage, before the catalogue moves
        raise RuntimeError("simulated crash before the catalogue pointer moved")

    monkeypatch.setattr(Catalogue, "register_version", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        publish_dataset(cat, store, new, pii_key=KEY, reports_dir=tmp_path / "r")
    monkeypatch.undo()
    # the previous version is intact and is what readers see
    assert cat.current("metro-flow").number == 1
    assert total(cat, store) == 30
    # the rerun adopts the version that reached storage: exactly one new version
    r = publish_dataset(cat, store, new, pii_key=KEY, reports_dir=tmp_path / "r")
    assert (r.status, r.version) == ("adopted", 2)
    assert total(cat, store) == 3000
    r = publish_dataset(cat, store, new, pii_key=KEY, reports_dir=tmp_path / "r")
    assert r.status == "up_to_date"
    versions = {i.key.split("/")[2] for i in store.list("guangzhou-metro/metro-flow/")}
    assert versions == {"v1", "v2"}


def test_failure_while_writing_exposes_nothing(tmp_path, cat, store):
    spec = make_spec(tmp_path, [("蕉门", 10), ("金洲", 20)])
    publish_dataset(cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "r")
    # many good rows, then a bad one at the end: the error comes mid-stream
    rows = [("南沙客运港", i) for i in range(50_000)] + [("黄阁", "lots")]
    bad = make_spec(tmp_path, rows)
    with pytest.raises(SchemaMismatch) as e:
        publish_dataset(cat, store, bad, pii_key=KEY, reports_dir=tmp_path / "r")
    assert e.value.line == 50_002 and e.value.column == "entries"
    assert cat.current("metro-flow").number == 1
    assert total(cat, store) == 30
    assert [i.key for i in store.list("guangzhou-metro/metro-flow/v2")] == []
    before = sorted(i.key for i in store.list("guangzhou-metro/metro-flow/v1"))
    store.gc(0)  # removes every staging leftover; never a committed version
    assert sorted(i.key for i in store.list("guangzhou-metro/metro-flow/v1")) == before
    assert total(cat, store) == 30
