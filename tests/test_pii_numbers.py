"""Personal data read as numbers is found like personal data read as text: a phone column
with gaps exported by pandas (13812345678.0), a sheet whose cells mix whole and decimal
numbers, an ID number kept as a decimal. Such a column was never searched (only text and
integer columns were), so an open dataset published the numbers as they are."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest

from catalogue.publishing import publish_dataset
from catalogue.registry import Catalogue
from ingest.spec import parse_specs
from ingest.storage.local import LocalStore
from validation import UndeclaredPersonalData
from validation.pii import detect

ID = "110105199001011232"  # a valid check digit


@pytest.mark.parametrize(
    "column,kind",
    [
        (pa.array([13812345678.0, None, 13912345678.0]), "phone"),
        (pa.array([Decimal("13812345678.00")] * 2, pa.decimal128(14, 2)), "phone"),
        (pa.array([Decimal(ID)] * 2, pa.decimal128(18, 0)), "id_card"),
    ],
)
def test_numbers_holding_personal_data_are_found(column, kind):
    (found,) = detect(pa.table({"contact": column}))
    assert (found.column, found.kind) == ("contact", kind)


def test_ordinary_numbers_are_not_personal_data():
    t = pa.table({"fare": [12.5, 3.0, 1e300, float("nan"), float("inf"), None]})
    assert detect(t) == []


def test_an_open_upload_with_phones_written_as_floats_is_refused(tmp_path: Path):
    csv = tmp_path / "rides.csv"
    csv.write_text("ride,phone\nr1,13812345678.0\nr2,\nr3,13912345678.0\n", encoding="utf-8")
    (spec,) = parse_specs(
        f"""datasets:
  - id: rides
    title: rides
    domain: transport
    organization: bureau
    source: {{path: {csv}, format: csv}}
""",
        base_dir=tmp_path,
    )
    cat = Catalogue(f"sqlite:///{tmp_path / 'cat.db'}")
    with pytest.raises(UndeclaredPersonalData) as e:
        publish_dataset(cat, LocalStore(tmp_path / "objects"), spec, pii_key=b"k")
    assert "phone" in str(e.value)
    assert cat.current("rides") is None  # nothing published
