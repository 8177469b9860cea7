"""Encoding detection and decode errors, on the real files and generated ones."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from ingest.errors import SourceError
from ingest.readers import open_source
from ingest.readers.encoding import (
    detect_encoding,
    guess_from_bytes,
    locate_decode_error,
    normalise_encoding,
)
from ingest.spec import SourceSpec

REAL = Path(__file__).resolve().parent.parent / "data" / "real"
CHINESE = "站点名称,所属区域,备注\n南沙客运港,广州市南沙区,码头\n蕉门公园,南沙区黄阁镇,公园与绿地\n"


@pytest.mark.parametrize(
    "path, expected",
    [
        ("montreal_bikes_latin1/bikes.csv", "latin-1"),
        ("hk_mtr/barrier_free_facilities.csv", "utf-8-sig"),
        ("hk_mtr/mtr_lines_and_stations.csv", "utf-8-sig"),
        ("hk_mtr/mtr_lines_fares.csv", "utf-8"),
        ("nyc_311_animals/311_Animals_short.csv", "utf-8"),
    ],
)
def test_real_files(path, expected):
    assert detect_encoding(REAL / path) == expected


def test_gb18030_file(tmp_path):
    p = tmp_path / "gb.csv"
    p.write_bytes(CHINESE.encode("gb18030"))
    assert detect_encoding(p) == "gb18030"


def test_gbk_is_not_taken_for_latin1_and_back():
    zh = (CHINESE * 50).encode("gbk")
    fr = ("Brébeuf (données non disponibles);Côte-Sainte-Catherine;été\n" * 50).encode("latin-1")
    assert guess_from_bytes(zh) == "gb18030"
    assert guess_from_bytes(fr) == "latin-1"
    assert guess_from_bytes("“Montréal” – café €\n".encode("cp1252")) == "cp1252"


def test_utf8_sample_cut_inside_a_character(tmp_path):
    # the 1 MiB window ends in the middle of a 3-byte character: still UTF-8
    text = "a," + "南" * 400_000 + "\n"
    p = tmp_path / "cut.csv"
    p.write_bytes(text.encode("utf-8"))
    assert detect_encoding(p) == "utf-8"


def test_non_ascii_far_into_the_file(tmp_path):
    p = tmp_path / "late.csv"
    p.write_bytes(b"a,b\n" + b"1,x\n" * 1_500_000 + "2,南沙\n".encode("gb18030"))
    assert detect_encoding(p) == "gb18030"


def test_bom_and_utf16(tmp_path):
    p = tmp_path / "bom.csv"
    p.write_bytes(codecs.BOM_UTF8 + "名称\n南沙\n".encode())
    assert detect_encoding(p) == "utf-8-sig"
    p16 = tmp_path / "u16.csv"
    p16.write_bytes("a\n1\n".encode("utf-16"))
    with pytest.raises(SourceError, match="UTF-16 text is not supported"):
        detect_encoding(p16)


def test_normalise_declared_names():
    assert normalise_encoding("GBK") == "gb18030"
    assert normalise_encoding("latin1") == "latin-1"
    assert normalise_encoding("UTF8") == "utf-8"
    with pytest.raises(SourceError, match="unknown encoding 'klingon'"):
        normalise_encoding("klingon")


def test_locate_decode_error_counts_bytes_and_lines(tmp_path):
    data = b"abc\n" * 300_000 + "万\n".encode() + b"\xff\xfe\n"
    p = tmp_path / "bad.csv"
    p.write_bytes(data)
    offset, line, bad = locate_decode_error(lambda: open(p, "rb"), "utf-8")
    assert (offset, line) == (len(data) - 3, 300_002)
    assert bad.startswith(b"\xff")


def test_declared_encoding_overrides_detection(tmp_path):
    p = tmp_path / "fr.csv"
    p.write_bytes("nom\nMontréal\n".encode("latin-1"))
    [t] = open_source(SourceSpec(path=str(p), format="csv", encoding="cp1252"))
    assert t.encoding == "cp1252"
    assert [r["nom"] for b in t.batches for r in b.to_pylist()] == ["Montréal"]


def test_decode_failure_names_file_offset_line_and_hint(tmp_path):
    p = tmp_path / "mixed.csv"
    p.write_bytes(b"a,b\n" + b"1,x\n" * 10 + b"2,\xff\xfe\n")
    with pytest.raises(SourceError) as e:  # small file: found while sampling, at open time
        [t] = open_source(SourceSpec(path=str(p), format="csv", encoding="utf-8"))
        list(t.batches)
    assert str(e.value) == (
        f"{p}:12: cannot decode byte(s) ff fe 0a at byte offset 46 as utf-8\n"
        "  hint: declare `encoding: gb18030` (or latin-1) in datasets.yaml"
    )


def test_gb18030_decode_failure_in_a_declared_file(tmp_path):
    p = tmp_path / "gb.csv"
    p.write_bytes(CHINESE.encode("gb18030") + b"x,\x81\x20,y\n")
    with pytest.raises(SourceError) as e:
        [t] = open_source(SourceSpec(path=str(p), format="csv", encoding="gb18030"))
        list(t.batches)
    assert e.value.line == 4
    assert "as gb18030" in e.value.message and "declare `encoding:" in e.value.hint
