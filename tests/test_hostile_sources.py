"""Hostile sources through the whole pipeline (issue 15, item 6): generated CSV, JSON, NDJSON,
xlsx and zip inputs (hypothesis), and named cases the earlier attack runs did not cover
(tests/test_ingest_hostile.py holds those: unclosed quotes, zip bombs, member names, 10 MB
fields through the reader, NUL bytes, int64 in JSON, organisation names, symlinks).

What every case must give: a published version that holds exactly the source's rows, or an
error of nsdx's own (never another exception) naming the file — and its line and column where
they apply — with nothing published (no version in the catalogue, no object in storage). The
heavy cases run as `nsdx ingest` in a child process whose peak RSS is measured.

The number of generated examples per format is in FUZZ_EXAMPLES; docs/reliability.md's table
is checked against it (tests/test_reliability_doc.py).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import tempfile
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalogue.publishing import publish_dataset
from catalogue.registry import Catalogue
from ingest.errors import ConfigError, IngestError, SourceError
from ingest.spec import parse_specs
from ingest.storage.local import LocalStore
from tests.conftest import NSDX
from validation.errors import NsdxError

# generated examples per format (docs/reliability.md's fuzz row is checked against these)
FUZZ_EXAMPLES = {"csv": 30, "csv-bytes": 30, "json": 25, "ndjson": 25, "xlsx": 10, "zip": 30}
# peak RSS of one `nsdx ingest` of a hostile source, above the same command on a tiny CSV
RSS_MARGIN = 400 << 20

_settings = dict(
    deadline=None,
    derandomize=True,  # the same examples every run: a failure is reproducible
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


class Rig:
    """One catalogue and store; every publish is a new dataset id (hypothesis runs many
    examples in one test: opening a catalogue per example would cost most of the time)."""

    _seq = 0

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="nsdx-hostile-")
        self.dir = Path(self._tmp.name)
        self.cat = Catalogue(f"sqlite:///{self.dir / 'cat.db'}")
        self.store = LocalStore(self.dir / "objects")
        self.id = "hostile-0"

    def publish(self, name: str, data: bytes, fmt: str, source: str = "", more: str = ""):
        Rig._seq += 1
        self.id = f"hostile-{Rig._seq}"
        (self.dir / name).write_bytes(data)
        (spec,) = parse_specs(
            f"""datasets:
  - id: {self.id}
    title: t
    domain: test
    organization: org-a
    source: {{path: {name}, format: {fmt}{source}}}
{more}""",
            base_dir=self.dir,
        )
        r = publish_dataset(self.cat, self.store, spec, pii_key=b"k", reports_dir=self.dir / "r")
        tables = {
            t["name"]: pa.concat_tables(
                pq.read_table(self.store.uri(f"{r.prefix}/{f['path']}")) for f in t["files"]
            )
            for t in r.manifest["tables"]
        }
        return r, tables

    def refused(self, name: str, data: bytes, fmt: str, **kw) -> NsdxError:
        """The source is refused with nsdx's own error naming the file; nothing published."""
        with pytest.raises(NsdxError) as e:
            self.publish(name, data, fmt, **kw)
        self.nothing_published()
        assert name in str(e.value), f"the error does not name {name}: {e.value}"
        return e.value

    def nothing_published(self) -> None:
        assert self.cat.current(self.id) is None
        assert [i.key for i in self.store.list(f"org-a/{self.id}/")] == []

    def close(self) -> None:
        from catalogue.db import dispose_all

        dispose_all()
        self._tmp.cleanup()


@pytest.fixture(scope="module")
def shared():
    r = Rig()
    yield r
    r.close()


def outcome(rig: Rig, name: str, data: bytes, fmt: str, **kw):
    """Publish; on an error, check it is nsdx's own, names the file, and left nothing."""
    try:
        return rig.publish(name, data, fmt, **kw)
    except NsdxError as e:
        assert name in str(e) or (getattr(e, "file", None) or "").endswith(name), str(e)
        rig.nothing_published()
        return e


# ---------------------------------------------------------------------------------------------
# generated inputs

_cell = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r"),
    max_size=30,
)


@settings(max_examples=FUZZ_EXAMPLES["csv"], **_settings)
@given(rows=st.lists(st.lists(_cell, min_size=3, max_size=3), min_size=1, max_size=30))
def test_generated_csv_round_trips_as_text(shared, rows):
    """Any text in any cell (quotes, separators, newlines, any script): declared as strings,
    the published rows are the written rows, cell for cell."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["a", "b", "c"])
    w.writerows(rows)
    rig = shared
    schema = (
        "    schema: [{name: a, type: string}, {name: b, type: string}, {name: c, type: string}]"
    )
    got = outcome(
        rig, "g.csv", buf.getvalue().encode(), "csv",
        source=", encoding: utf-8, delimiter: ',', null_values: []", more=schema,
    )  # fmt: skip
    if isinstance(got, Exception):
        # refused: only for what the rules name (e.g. a field a quote leaves open)
        assert isinstance(got, SourceError), got
        return
    r, tables = got
    published = [list(t) for t in zip(*tables["data"].to_pydict().values(), strict=True)]
    assert published == [[c if c != "" else None for c in row] for row in rows] or (
        published == rows
    )


@settings(max_examples=FUZZ_EXAMPLES["csv-bytes"], **_settings)
@given(
    data=st.binary(max_size=400),
    head=st.sampled_from([b"n,name\n", b"", b"\xef\xbb\xbfn;name\n", b"a\tb\tc\n"]),
)
def test_generated_csv_bytes_publish_or_are_refused_cleanly(shared, head, data):
    rig = shared
    got = outcome(rig, "b.csv", head + data, "csv")
    if not isinstance(got, Exception):
        r, _ = got
        assert r.status in ("published", "published_with_warnings")


_json_value = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    _cell,
    st.lists(st.integers(min_value=-5, max_value=5), max_size=3),
)
_records = st.lists(
    st.dictionaries(st.sampled_from(["id", "v", "w", "名称"]), _json_value, min_size=1),
    min_size=1,
    max_size=25,
)


@pytest.mark.parametrize("fmt", ["json", "ndjson"])
def test_generated_json_publishes_its_records_or_names_the_line(shared, fmt):
    @settings(max_examples=FUZZ_EXAMPLES[fmt], **_settings)
    @given(records=_records)
    def check(records):
        if fmt == "json":
            data = json.dumps(records, ensure_ascii=False).encode()
        else:
            data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
        rig = shared
        got = outcome(rig, f"g.{fmt}", data, fmt)
        if isinstance(got, Exception):
            assert isinstance(got, SourceError), got
            if "has no rows" not in str(got) and "no column" not in str(got):
                assert got.line is not None or got.column is not None, str(got)
            return
        r, tables = got
        assert r.row_count == len(records)

    check()


@settings(max_examples=FUZZ_EXAMPLES["xlsx"], **_settings)
@given(
    rows=st.lists(
        st.lists(
            st.one_of(
                st.none(),
                st.integers(min_value=-(2**53), max_value=2**53),
                st.floats(allow_nan=False, allow_infinity=False, width=32),
                st.text(
                    alphabet=st.characters(
                        blacklist_categories=("Cs", "Cc"), blacklist_characters="="
                    ),
                    max_size=20,
                ),
                st.booleans(),
            ),
            min_size=2,
            max_size=2,
        ),
        min_size=1,
        max_size=15,
    )
)
def test_generated_xlsx_publishes_its_rows_or_names_the_row(shared, rows):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["a", "b"])
    for row in rows:
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    rig = shared
    got = outcome(rig, "g.xlsx", buf.getvalue(), "xlsx")
    if isinstance(got, Exception):
        assert isinstance(got, SourceError), got
        return
    r, _ = got
    # a row whose cells are all empty is no row in a sheet
    assert r.row_count == sum(1 for row in rows if any(v not in (None, "") for v in row))


_member_name = st.one_of(
    st.sampled_from(
        [
            "stops.txt",
            "routes.txt",
            "../stops.txt",
            "/etc/stops.txt",
            "a/../../trips.txt",
            "C:/feed/stops.txt",
            "..\\stops.txt",
            "feed/stops.txt",
            "calendar.txt",
        ]
    ),  # fmt: skip
    st.text(max_size=20).map(lambda s: s + ".txt"),
)


@settings(max_examples=FUZZ_EXAMPLES["zip"], **_settings)
@given(
    members=st.dictionaries(
        _member_name,
        st.sampled_from([b"stop_id,stop_name\n1,a\n2,b\n", b"x\n", b"", b"\x00\x01", b"a,b\n1\n"]),
        min_size=1,
        max_size=4,
    )
)
def test_generated_gtfs_zips_publish_or_are_refused_cleanly(shared, members):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
    rig = shared
    got = outcome(rig, "feed.zip", buf.getvalue(), "gtfs")
    if any(
        n.startswith(("/", "\\")) or ".." in n.replace("\\", "/").split("/") or n[1:2] == ":"
        for n in members
    ):
        assert isinstance(got, SourceError), got  # refused (this or another member first)
    # nothing is ever written outside the deployment's folders
    assert not (rig.dir.parent / "stops.txt").exists()
    assert not Path("/etc/stops.txt").exists()


# ---------------------------------------------------------------------------------------------
# named cases


@pytest.fixture
def rig():
    r = Rig()
    yield r
    r.close()


@pytest.mark.parametrize(
    "member", ["../stops.txt", "/etc/stops.txt", "feed/../../stops.txt", "..\\stops.txt",
               "C:/stops.txt", "../../../../tmp/evil.sh"]
)  # fmt: skip
def test_a_feed_member_leaving_its_folder_is_refused(rig, member):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("routes.txt", "route_id\n1\n")
        zf.writestr(zipfile.ZipInfo(member), "stop_id\n1\n")
    e = rig.refused("feed.zip", buf.getvalue(), "gtfs")
    assert "absolute path or a '..' step" in str(e) and repr(member) in str(e)


def test_an_encoding_that_changes_half_way_names_the_line(rig):
    """UTF-8 for 3,000 lines, then GB18030: refused at the first line that is not UTF-8."""
    head = "".join(f"{i},南沙{i}\n" for i in range(3000)).encode("utf-8")
    tail = "".join(f"{i},蕉门{i}\n" for i in range(3000, 3010)).encode("gb18030")
    e = rig.refused("mixed.csv", b"n,name\n" + head + tail, "csv")
    assert isinstance(e, SourceError)
    assert e.line == 3002, str(e)  # header + 3,000 UTF-8 lines, then the first GB18030 one
    assert "encoding" in str(e).lower() or "encoding" in (e.hint or "").lower()


def test_year_99999_is_refused_when_declared_a_date_and_kept_as_text_otherwise(rig):
    data = b"n,day\n1,2024-05-01\n2,99999-01-01\n"
    e = rig.refused("years.csv", data, "csv", more="    schema: [{name: day, type: date}]")
    assert isinstance(e, SourceError) and e.line == 3 and e.column == "day", str(e)
    r, tables = rig.publish("years.csv", data, "csv")
    assert tables["data"].column("day").to_pylist() == ["2024-05-01", "99999-01-01"]


def test_int64_overflow_in_a_csv_is_refused_when_declared_an_integer(rig):
    data = b"n,v\n1,5\n2,99999999999999999999\n"
    e = rig.refused("big.csv", data, "csv", more="    schema: [{name: v, type: integer}]")
    assert isinstance(e, SourceError) and e.line == 3 and e.column == "v", str(e)
    r, tables = rig.publish("big.csv", data, "csv")  # inferred: text, nothing lost
    assert tables["data"].column("v").to_pylist()[1] == "99999999999999999999"


@pytest.mark.parametrize(
    "dataset_id", ["../victim", "org-a/victim", "/abs", "..", "x/../../y", "a\\b", "v1--x"]
)
def test_dataset_ids_cannot_name_another_storage_folder(dataset_id):
    text = (
        "datasets:\n"
        f"  - id: '{dataset_id}'\n"
        "    title: t\n"
        "    domain: transport\n"
        "    organization: org-a\n"
        "    source: {path: a.csv, format: csv}\n"
    )
    with pytest.raises(ConfigError) as e:
        parse_specs(text)
    assert e.value.line == 2 and "datasets.yaml:2" in str(e.value)


def test_nothing_leaves_the_storage_root_through_a_key(tmp_path):
    from ingest.errors import StorageError

    store = LocalStore(tmp_path / "objects")
    for key in ("../escape", "a/../../escape", "/etc/passwd"):
        with pytest.raises(StorageError, match="escapes the storage root"):
            store.put_bytes(key, b"x")
    assert not (tmp_path / "escape").exists()


# ---------------------------------------------------------------------------------------------
# peak memory of `nsdx ingest` on the heavy cases, in a child process


def _ingest_rss(tmp: Path, name: str, data: bytes, fmt: str) -> tuple[int, str, int]:
    """(exit code, stdout + stderr, peak RSS in bytes) of `nsdx ingest` on one source."""
    work = tmp / name.replace(".", "-")
    work.mkdir()
    (work / name).write_bytes(data)
    (work / "datasets.yaml").write_text(
        f"datasets:\n  - {{id: hostile, title: t, domain: test, organization: org-a,"
        f" source: {{path: {name}, format: {fmt}}}}}\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "NSDX_HOME": str(work / "home"),
        "NSDX_DATASETS": str(work / "datasets.yaml"),
        "NSDX_PII_KEY": "k",
    }
    env.pop("NSDX_DATABASE_URL", None)
    env.pop("NSDX_STORAGE_URL", None)
    with open(work / "out", "wb") as out, open(work / "err", "wb") as err:
        p = subprocess.Popen([NSDX, "ingest", "hostile", "--json"], stdout=out, stderr=err, env=env)
        _pid, status, usage = os.wait4(p.pid, 0)  # this child's own peak, nothing else's
        p.returncode = os.waitstatus_to_exitcode(status)
    said = (work / "out").read_text(errors="replace") + (work / "err").read_text(errors="replace")
    return p.returncode, said, usage.ru_maxrss * 1024


def _zip_of_zeros(member: str, size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(member)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as f:
            f.write(b"stop_id,stop_name\n")
            block = b"\0" * (1 << 20)
            for _ in range(size >> 20):
                f.write(block)
    return buf.getvalue()


@pytest.mark.slow
def test_peak_memory_of_hostile_ingests_is_bounded(tmp_path):
    """Each heavy case in its own `nsdx ingest`, its peak RSS compared with a tiny ingest's:
    a 10 MB field, NUL bytes, 10,000 columns (published), a 256 MiB zip bomb (refused)."""
    code, err, base = _ingest_rss(tmp_path, "tiny.csv", b"n,name\n1,a\n", "csv")
    assert code == 0, err
    cases = [
        ("field.csv", b"n,text\n1," + b"x" * (10 << 20) + b"\n2,y\n", "csv", 0),
        ("nul.csv", b"n,text\n" + b"1,a\x00b\n" * 200_000, "csv", 1),
        ("wide.csv", (",".join(f"c{i}" for i in range(10_000)) + "\n").encode()
         + (",".join("1" for _ in range(10_000)) + "\n").encode() * 2, "csv", 0),
        ("bomb.zip", _zip_of_zeros("stops.txt", 256 << 20), "gtfs", 1),
    ]  # fmt: skip
    for name, data, fmt, want in cases:
        code, err, peak = _ingest_rss(tmp_path, name, data, fmt)
        assert code == want, f"{name}: exit {code}\n{err}"
        if want:
            assert name in err and "likely a bug" not in err, err
            if name == "bomb.zip":
                assert "a zip bomb?" in err, err
        assert peak - base < RSS_MARGIN, (
            f"{name}: peak RSS {peak >> 20} MiB, {(peak - base) >> 20} MiB above a tiny ingest"
        )


def test_an_error_in_a_source_is_nsdx_own():
    assert issubclass(SourceError, IngestError) and issubclass(IngestError, NsdxError)
