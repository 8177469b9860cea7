"""Personal data through the whole pipeline (found in review): late in a file, inside free
text written with separators, and in validation reports."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from catalogue.publishing import publish_dataset
from catalogue.registry import Catalogue
from ingest.spec import parse_specs
from ingest.storage.local import LocalStore
from validation import UndeclaredPersonalData

KEY = b"k"


def spec_for(tmp_path: Path, csv: Path, extra: str = ""):
    (spec,) = parse_specs(
        f"""datasets:
  - id: notes
    title: 工单备注
    domain: urban-management
    organization: nansha-12345-hotline
    source: {{path: {csv}, format: csv}}
{extra}""",
        base_dir=tmp_path,
    )
    return spec


def test_phone_numbers_late_in_a_file_block_the_publish(tmp_path):
    csv = tmp_path / "notes.csv"
    rows = [f"{i},路灯不亮" for i in range(25_000)] + [
        f"{i},请回电13812345{i % 1000:03d}" for i in range(25_000, 30_000)
    ]
    csv.write_text("case_id,note\n" + "\n".join(rows) + "\n", encoding="utf-8")
    cat, store = Catalogue(f"sqlite:///{tmp_path / 'c.db'}"), LocalStore(tmp_path / "o")
    with pytest.raises(UndeclaredPersonalData) as e:
        publish_dataset(cat, store, spec_for(tmp_path, csv), pii_key=KEY, reports_dir=tmp_path)
    assert "note" in str(e.value) and "phone" in str(e.value)
    assert cat.current("notes") is None
    assert not list((tmp_path / "o").glob("nansha-12345-hotline/notes/v*"))


def test_published_report_has_no_sample_values_and_private_copies_are_600(tmp_path):
    csv = tmp_path / "plates.csv"
    csv.write_text("plate,speed\n粤A12345,30\n粤B99999,40\n", encoding="utf-8")
    spec = spec_for(
        tmp_path,
        csv,
        """    schema:
      - {name: plate, type: string, pii: plate}
    expectations:
      - {column: plate, regex: '^粤A'}
    on_invalid: warn
""",
    )
    cat, store = Catalogue(f"sqlite:///{tmp_path / 'c.db'}"), LocalStore(tmp_path / "o")
    r = publish_dataset(cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "reports")
    assert r.status == "published_with_warnings"
    published = list((tmp_path / "o").rglob("*.validation.json"))
    assert published
    text = published[0].read_text(encoding="utf-8")
    assert "粤B99999" not in text and "partial_unexpected_list" not in text
    assert json.loads(text)["results"][0]["result"]["unexpected_count"] == 1
    kept = sorted((tmp_path / "reports" / "notes").glob("*.json"))
    assert "粤B99999" in kept[0].read_text(encoding="utf-8")  # the provider sees its rows
    assert os.stat(kept[0]).st_mode & 0o777 == 0o600


def test_restricted_entries_show_no_storage_locations(tmp_path):
    """Found in review: CKAN, DCAT and Croissant showed the files of sold data."""
    from catalogue.dcat import croissant, dataset_jsonld, schema_org

    csv = tmp_path / "orders.csv"
    csv.write_text("order_id,fare_cny\nA1,32.5\nA2,18.0\n", encoding="utf-8")
    spec = spec_for(tmp_path, csv, "    access: restricted\n    price_cny: 2800\n")
    cat, store = Catalogue(f"sqlite:///{tmp_path / 'c.db'}"), LocalStore(tmp_path / "o")
    publish_dataset(cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "reports")
    pkg = cat.package("notes")
    site = "https://data.nansha.example"
    for doc in (pkg, dataset_jsonld(pkg, site), schema_org(pkg, site), croissant(pkg, site)):
        text = json.dumps(doc, ensure_ascii=False)
        assert "file://" not in text and str(tmp_path) not in text, text[:500]
    # the URL is the portal's download route, which answers only those allowed to read it
    assert pkg["resources"][0]["url"] == "/dataset/notes/v1/notes.parquet"
    assert croissant(pkg, site)["distribution"][0]["contentUrl"] == (
        f"{site}/dataset/notes/v1/notes/part-00000.parquet"
    )
    assert pkg["nsdx"]["row_count"] == 2  # the facts stay: size, rows, schema, checksums
    assert pkg["resources"][0]["nsdx_files"][0]["sha256"]
