"""Atomic, idempotent publishing on both storage backends (local folder, real SeaweedFS)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from catalogue.publishing import publish_dataset
from catalogue.query import connect, run_query
from catalogue.registry import Catalogue
from ingest.errors import IngestError, SchemaMismatch
from ingest.spec import parse_specs
from tests.fixtures.procs import child_workers, gone
from validation import ValidationFailed
from validation import worker as validation_worker

KEY = b"k"


# through great-expectations in the validation worker (Arrow judges the shorthand `between`)
GX_CHECK = (
    "{gx: expect_column_values_to_be_between, column: entries, min_value: 0, max_value: 100000}"
)


def make_spec(
    tmp_path: Path,
    rows: list[tuple[str, int]],
    more: str = "",
    check: str = "{column: entries, between: [0, 100000]}",
):
    """Metro entries per station; ``more``: YAML lines appended after its expectation."""
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
      - {check}
{more}""",
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


def _kill_workers(killed: list[int]) -> None:
    for pid in child_workers():
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)


def test_validation_worker_crash_publishes_nothing(tmp_path, cat, store):
    """The worker dies mid-run: a clear IngestError, staging discarded, previous version kept,
    no process left behind."""
    spec = make_spec(tmp_path, [("蕉门", 10), ("金洲", 20)], check=GX_CHECK)
    publish_dataset(cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "r")
    bigger = make_spec(tmp_path, [("南沙客运港", i % 1000) for i in range(300_000)], check=GX_CHECK)

    killed: list[int] = []

    def crash(event, **fields):
        if event == "rows":
            _kill_workers(killed)

    with pytest.raises(IngestError, match="validation worker process stopped") as e:
        publish_dataset(cat, store, bigger, pii_key=KEY, reports_dir=tmp_path / "r", progress=crash)
    assert e.value.fields["dataset"] == "metro-flow"
    assert cat.current("metro-flow").number == 1
    assert total(cat, store) == 30
    assert [i.key for i in store.list("guangzhou-metro/metro-flow/v2")] == []
    assert killed and all(gone(p) for p in killed)  # reaped: no zombie
    r = publish_dataset(cat, store, bigger, pii_key=KEY, reports_dir=tmp_path / "r")
    assert (r.status, r.version) == ("published", 2)  # a fresh worker


def test_interrupted_ingest_leaves_no_process_and_no_version(tmp_path, cat, store):
    spec = make_spec(tmp_path, [("南沙客运港", i % 1000) for i in range(300_000)], check=GX_CHECK)

    def interrupt(event, **fields):
        if event == "rows":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        publish_dataset(
            cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "r", progress=interrupt
        )
    assert cat.current("metro-flow") is None
    assert [i.key for i in store.list("guangzhou-metro/")] == []
    assert [
        p for p in child_workers() if p not in {w.proc.pid for w in validation_worker._idle}
    ] == []


def test_quarantine_rows_publishes_the_valid_rows(tmp_path, cat, store):
    rows = [("蕉门", 10), ("金洲", -5), ("黄阁", 20), ("南沙客运港", 200_000)]
    spec = make_spec(
        tmp_path,
        rows,
        "      - {row_count: {between: [1, 10]}}\n    on_invalid: quarantine_rows\n",
    )
    r = publish_dataset(cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "r")
    assert r.status == "published_with_warnings" and r.row_count == 2
    assert total(cat, store) == 30
    (path,) = r.quarantine
    bad = pq.read_table(path).to_pylist()
    assert bad == [
        {"station": "金洲", "entries": -5, "_failed_expectations": "entries between [0, 100000]"},
        {
            "station": "南沙客运港",
            "entries": 200_000,
            "_failed_expectations": "entries between [0, 100000]",
        },
    ]
    assert r.validation["quarantined_rows"] == 2


def test_quarantine_rows_cannot_set_aside_a_failed_dataset_check(tmp_path, cat, store):
    """Setting bad rows aside cannot satisfy row_count: nothing is published, and the error
    says what can be done."""
    rows = [("蕉门", 10), ("金洲", -5), ("黄阁", 20)]
    spec = make_spec(
        tmp_path,
        rows,
        "      - {row_count: {between: [5, 10]}}\n    on_invalid: quarantine_rows\n",
    )
    with pytest.raises(ValidationFailed) as e:
        publish_dataset(cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "r")
    assert "on_invalid: warn" in e.value.hint and "row_count" in e.value.hint
    assert cat.current("metro-flow") is None
    assert [i.key for i in store.list("guangzhou-metro/")] == []
