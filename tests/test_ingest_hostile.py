"""Hostile sources: inputs that must never publish less, more or other data than they hold.

Each test is the regression test of one finding of the ingest attack run (issue 20): an
unbalanced quote, zip bombs, archive member names, huge fields, organisation names,
symlinks, NUL bytes, integers beyond int64, empty sources, silent schema changes.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from pathlib import Path

import pyarrow as pa
import pytest

from ingest.errors import ConfigError, SourceError
from ingest.readers import open_source, source_files
from ingest.spec import SourceSpec, parse_specs


def read_all(path, fmt="csv", **opts) -> pa.Table:
    tables = open_source(SourceSpec(path=str(path), format=fmt, **opts))
    return {t.name: pa.Table.from_batches(list(t.batches), schema=t.schema) for t in tables}


def one(path, fmt="csv", **opts) -> pa.Table:
    (t,) = read_all(path, fmt, **opts).values()
    return t


# ---------------------------------------------------------------------------------------------
# 3. an unbalanced quote


def _rows(n: int, bad: int | None = None, text=False) -> str:
    lines = ["name,count" if not text else "count,name"]
    for i in range(1, n + 1):
        lines.append(f"x{i},{i}" if not text else f"{i},x{i}")
    if bad is not None:  # data line `bad` (1-based): a quote opened, never closed
        i = bad
        lines[i] = f'"x{i},{i}' if not text else f'{i},"x{i}'
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("text_last", [False, True])
@pytest.mark.parametrize("bad", [500, 1000])
def test_an_unclosed_quote_is_an_error_naming_its_line(tmp_path, bad, text_last):
    """1,000 rows with a quote opened on data row 500 (line 501) or on the last line: an
    error naming the line, never 500 rows published with quality 100."""
    p = tmp_path / "q.csv"
    p.write_text(_rows(1000, bad, text=text_last))
    with pytest.raises(SourceError, match="never closed") as e:
        one(p)
    assert e.value.line == bad + 1  # the header is line 1


def test_a_closed_multiline_field_at_the_end_is_fine(tmp_path):
    p = tmp_path / "ok.csv"
    p.write_text('count,name\n1,a\n2,"two\nlines"\n')
    t = one(p)
    assert t.column("name").to_pylist() == ["a", "two\nlines"]
    p.write_text('count,name\n1,a\n2,"b ""quoted"""\n')
    assert one(p).column("name").to_pylist() == ["a", 'b "quoted"']


# ---------------------------------------------------------------------------------------------
# 8. one 10 MB field; a line without end


def test_a_10_mb_field_is_read(tmp_path):
    big = "x" * (10 << 20)
    p = tmp_path / "big.csv"
    small = "".join(f"{i},short\n" for i in range(100))
    p.write_text(f"n,text\n{small}100,{big}\n101,after\n")
    t = one(p)
    assert t.column("n").to_pylist() == list(range(102))
    assert [len(v) for v in t.column("text").to_pylist()][-3:] == [5, 10 << 20, 5]


def test_a_field_beyond_the_limit_names_line_and_limit(tmp_path, monkeypatch):
    from ingest.readers import csv as csv_reader

    monkeypatch.setattr(csv_reader, "MAX_FIELD_CHARS", 1 << 20)
    p = tmp_path / "huge.csv"
    p.write_text("id,text\n1,a\n2," + "y" * (3 << 20) + "\n")
    with pytest.raises(SourceError, match="1,048,576 characters") as e:
        one(p)
    assert e.value.line == 3


# ---------------------------------------------------------------------------------------------
# 4. zip bombs, 5. member names


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _zip_of_zeros(path: Path, member: str, size: int) -> Path:
    """A member of ``size`` zero bytes after a header line, compressed as it is generated
    (never held in memory)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(member)
        info.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(info, "w", force_zip64=True) as f:
            f.write(b"stop_id,stop_name\n")
            block = b"\0" * (1 << 20)
            for _ in range(size >> 20):
                f.write(block)
    return path


def _lying_zip(path: Path, member: str, declared: int) -> Path:
    """A zip whose central directory declares ``declared`` unpacked bytes for a tiny member
    (a bomb's header, without building the bomb)."""
    data = b"stop_id\n1\n"
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    packed = comp.compress(data) + comp.flush()
    crc = zlib.crc32(data)
    name = member.encode()
    extra = struct.pack("<HHQQ", 1, 16, declared, len(packed))  # zip64 sizes
    local = (
        struct.pack(
            "<IHHHHHIIIHH",
            0x04034B50,
            45,
            0,
            8,
            0,
            0,
            crc,
            0xFFFFFFFF,
            0xFFFFFFFF,
            len(name),
            len(extra),
        )
        + name
        + extra
        + packed
    )
    central = (
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            45,
            45,
            0,
            8,
            0,
            0,
            crc,
            0xFFFFFFFF,
            0xFFFFFFFF,
            len(name),
            len(extra),
            0,
            0,
            0,
            0,
            0,
        )
        + name
        + extra
    )
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local), 0)
    path.write_bytes(local + central + end)
    return path


def test_a_member_declaring_10_gb_is_refused_before_reading(tmp_path):
    p = _lying_zip(tmp_path / "bomb.zip", "stop_times.txt", 10 << 30)
    assert zipfile.ZipFile(p).getinfo("stop_times.txt").file_size == 10 << 30
    with pytest.raises(SourceError, match="more than the limit") as e:
        read_all(p, "gtfs")
    assert "max_unpacked_bytes" in e.value.hint


def test_a_highly_compressed_member_is_refused(tmp_path):
    # 64 MiB of zeros pack to ~64 KiB: a ratio of ~1000, above the default of 100
    p = _zip_of_zeros(tmp_path / "zeros.zip", "stops.txt", 64 << 20)
    with pytest.raises(SourceError, match="times its compressed size") as e:
        read_all(p, "gtfs")
    assert "max_compression_ratio" in e.value.hint


def test_zip_limits_are_configurable(tmp_path):
    rows = b"stop_id,stop_name\n" + b"".join(b"%d,stop %d\n" % (i, i) for i in range(50_000))
    p = _zip(tmp_path / "feed.zip", {"stops.txt": rows})
    assert read_all(p, "gtfs")["stops"].num_rows == 50_000
    with pytest.raises(SourceError, match="more than the limit of 100,000 bytes"):
        read_all(p, "gtfs", max_unpacked_bytes=100_000)
    (spec,) = parse_specs(
        "datasets:\n  - {id: feed, title: t, domain: transport, organization: org-a,\n"
        "     source: {path: feed.zip, format: gtfs, max_unpacked_bytes: 100000,"
        " max_compression_ratio: 20}}\n",
        base_dir=tmp_path,
    )
    assert (spec.source.max_unpacked_bytes, spec.source.max_compression_ratio) == (100_000, 20)


@pytest.mark.parametrize("member", ["...txt", "a/...txt", "x y.txt", ".txt", "a.b.txt"])
def test_member_names_are_checked_like_ids(tmp_path, member):
    p = _zip(tmp_path / "feed.zip", {"stops.txt": b"stop_id\n1\n", member: b"a\n1\n"})
    with pytest.raises(SourceError, match="table name must match"):
        read_all(p, "gtfs")


def test_duplicate_tables_in_a_feed_are_refused(tmp_path):
    p = _zip(tmp_path / "feed.zip", {"a/stops.txt": b"stop_id\n1\n", "b/stops.txt": b"x\n2\n"})
    with pytest.raises(SourceError, match="both table 'stops'"):
        read_all(p, "gtfs")


# ---------------------------------------------------------------------------------------------
# 9. organisation names


@pytest.mark.parametrize("org", ["red-org/victim/v2", "..", "../../x", "/abs", ".", "A"])
def test_organisation_names_are_checked_at_load_time(org):
    text = (
        "datasets:\n"
        "  - id: victim-data\n"
        "    title: t\n"
        "    domain: transport\n"
        f"    organization: '{org}'\n"
        "    source: {path: a.csv, format: csv}\n"
    )
    with pytest.raises(ConfigError, match="organization .* must match") as e:
        parse_specs(text)
    assert (e.value.line, e.value.column) == (5, 19)
    assert "datasets.yaml:5:19" in str(e.value)


# ---------------------------------------------------------------------------------------------
# 10. symlinked sources


def test_a_symlink_out_of_the_source_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "passwd"
    secret.write_text("root,x\n0,0\n")
    src = tmp_path / "project" / "data"
    src.mkdir(parents=True)
    (src / "a.csv").write_text("n,m\n1,2\n")
    (src / "b.csv").symlink_to(secret)
    spec = SourceSpec(path="data/*.csv", format="csv", base_dir=tmp_path / "project")
    with pytest.raises(SourceError, match="symbolic link") as e:
        source_files(spec)
    assert "follow_symlinks" in e.value.hint
    # inside the folder: fine; declared: fine
    (src / "b.csv").unlink()
    (src / "b.csv").symlink_to(src / "a.csv")
    assert len(source_files(spec)) == 2
    (src / "b.csv").unlink()
    (src / "b.csv").symlink_to(secret)
    allowed = SourceSpec(
        path="data/*.csv", format="csv", base_dir=tmp_path / "project", follow_symlinks=True
    )
    assert [p.name for p in source_files(allowed)] == ["a.csv", "b.csv"]


# ---------------------------------------------------------------------------------------------
# 6, 7: what a published version holds (through the whole pipeline)


@pytest.fixture
def publish(tmp_path):
    from catalogue.publishing import publish_dataset
    from catalogue.registry import Catalogue
    from ingest.storage.local import LocalStore

    cat = Catalogue(f"sqlite:///{tmp_path / 'cat.db'}")
    store = LocalStore(tmp_path / "objects")

    def run(data: str | bytes, name="src.csv", fmt="csv", source="", more=""):
        p = tmp_path / name
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        (spec,) = parse_specs(
            f"""datasets:
  - id: hostile
    title: t
    domain: test
    organization: org-a
    source: {{path: {name}, format: {fmt}{source}}}
{more}""",
            base_dir=tmp_path,
        )
        r = publish_dataset(cat, store, spec, pii_key=b"k", reports_dir=tmp_path / "r")
        import pyarrow.parquet as pq

        table = pa.concat_tables(
            pq.read_table(store.uri(f"{r.prefix}/{f['path']}"))
            for t in r.manifest["tables"]
            for f in t["files"]
        )
        return r, table

    run.cat = cat
    return run


def test_nul_bytes_are_refused_or_stripped_and_reported(publish):
    data = "name,n\nok,1\nbad\x00name,2\n"
    with pytest.raises(SourceError, match=r"NUL character \(U\+0000\) in data row 2") as e:
        publish(data)
    assert e.value.column == "name" and "nul_bytes: strip" in e.value.hint
    r, t = publish(data, source=", nul_bytes: strip")
    assert t.column("name").to_pylist() == ["ok", "badname"]
    assert any("NUL characters removed from column 'name'" in w for w in r.warnings)


@pytest.mark.parametrize("fmt", ["ndjson", "json"])
def test_an_integer_beyond_int64_is_not_published_as_a_float(publish, fmt):
    big = "99999999999999999999999"
    recs = ['{"id": 1, "v": 5}', f'{{"id": 2, "v": {big}}}']
    data = "\n".join(recs) + "\n" if fmt == "ndjson" else "[" + ",".join(recs) + "]"
    with pytest.raises(SourceError, match="beyond the 64-bit integer range") as e:
        publish(data, name=f"a.{fmt}", fmt=fmt)
    assert e.value.line == 2 and e.value.column == "v"
    assert "decimal(38,0)" in e.value.hint
    r, t = publish(
        data, name=f"a.{fmt}", fmt=fmt, more="    schema: [{name: v, type: 'decimal(38,0)'}]"
    )
    assert [str(v) for v in t.column("v").to_pylist()] == ["5", big]


def test_an_empty_source_is_an_error_unless_allowed(publish):
    r, t = publish("n,name\n1,a\n2,b\n")
    assert (r.version, t.num_rows) == (1, 2)
    # a header-only file: every column inferred as text, refused as a schema change first
    with pytest.raises(SourceError, match=r"types change: n int64 -> string") as e:
        publish("n,name\n")
    assert "empty or truncated" in e.value.hint
    typed = "    schema: [{name: n, type: integer}]"
    with pytest.raises(SourceError, match="has no rows") as e:
        publish("n,name\n", more=typed)
    assert "allow_empty: true" in e.value.hint
    assert publish.cat.current("hostile").number == 1
    r, t = publish("n,name\n", more="    allow_empty: true\n    schema: [{name: n, type: integer}]")
    assert (r.version, t.num_rows, t.schema.field("n").type) == (2, 0, pa.int64())


def test_a_schema_change_is_refused_unless_declared(publish):
    publish("n,name\n1,a\n2,b\n")
    with pytest.raises(SourceError, match=r"types change: n int64 -> string") as e:
        publish("n,name\nx1,a\nx2,b\n")
    assert "schema_changes: allow" in e.value.hint
    with pytest.raises(SourceError, match=r"columns removed: name"):
        publish("n\n1\n2\n3\n")
    r, t = publish("n,name\nx1,a\nx2,b\n", more="    schema: [{name: n, type: string}]")
    assert r.status == "published_with_warnings"
    assert any("types changed: n int64 -> string" in w for w in r.warnings)
    r, t = publish("n,extra\nx,1\n", more="    schema_changes: allow")
    assert any("columns removed: name" in w for w in r.warnings)
    assert any("columns added: extra" in w for w in r.warnings)


def test_a_spec_built_elsewhere_cannot_escape_its_storage_folder(tmp_path):
    """An upload job builds its spec from catalogue metadata, not from datasets.yaml: the
    organisation still cannot name another dataset's folder."""
    from dataclasses import replace

    from ingest.pipeline import dataset_prefix

    (spec,) = parse_specs(
        "datasets:\n  - {id: victim-data, title: t, domain: test, organization: org-a,"
        " source: {path: a.csv, format: csv}}\n"
    )
    assert dataset_prefix(spec) == "org-a/victim-data"
    for org in ("red-org/victim/v2", "..", "/abs", "org-a\n"):
        with pytest.raises(ConfigError, match="must match"):
            dataset_prefix(replace(spec, organization=org))
    with pytest.raises(ConfigError, match="must match"):
        dataset_prefix(replace(spec, id="victim-data\n"))
    # nor the store's own folders (ingest.storage.base.reserved_prefix)
    with pytest.raises(ConfigError, match="a name the store keeps for itself"):
        dataset_prefix(replace(spec, organization="iceberg"))


def test_an_unclosed_quote_in_a_feed_member_is_an_error(tmp_path):
    rows = "stop_id,stop_name\n" + "".join(f"{i},stop {i}\n" for i in range(1, 200))
    p = _zip(tmp_path / "feed.zip", {"stops.txt": (rows + '200,"stop 200\n').encode()})
    with pytest.raises(SourceError, match="never closed") as e:
        read_all(p, "gtfs")
    assert e.value.line == 201
