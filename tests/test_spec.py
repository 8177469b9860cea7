"""datasets.yaml parsing: what a provider writes, and the errors they see."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.errors import ConfigError
from ingest.spec import load_specs, parse_specs

ROOT = Path(__file__).resolve().parent.parent

GOOD = """\
datasets:
  - id: nansha-bus-gps
    title: 南沙公交车辆GPS轨迹
    title_en: Nansha bus GPS positions
    domain: transport
    organization: nansha-transport-bureau
    licence: CC-BY-4.0
    access: open
    tags: [公交, bus]
    source:
      path: data/samples/bus_gps.csv
      format: csv
      encoding: auto
      delimiter: ","
    schema:
      - {name: ts, type: timestamp}
      - {name: plate, type: string, pii: plate}
    expectations:
      - {column: speed_kmh, between: [0, 150]}
    on_invalid: fail
"""


def test_parses_the_design_brief_example():
    (spec,) = parse_specs(GOOD)
    assert spec.id == "nansha-bus-gps"
    assert spec.title == "南沙公交车辆GPS轨迹"
    assert spec.sql_schema == "transport" and spec.sql_name == "nansha_bus_gps"
    assert spec.source.format == "csv" and spec.source.delimiter == ","
    assert spec.field("plate").pii == "plate" and spec.field("plate").pii_treatment == "hmac"
    assert spec.expectations == ({"column": "speed_kmh", "between": [0, 150]},)
    assert spec.tags == ("公交", "bus")
    assert spec.line == 2


def test_repository_datasets_yaml_is_valid():
    specs = load_specs(ROOT / "datasets.yaml")
    assert len(specs) >= 11
    domains = {s.domain for s in specs}
    assert {"transport", "urban-management"} <= domains


@pytest.mark.parametrize(
    "patch, message",
    [
        (("id: nansha-bus-gps", "id: Nansha_Bus"), "datasets.yaml:2:9: id 'Nansha_Bus' must match"),
        (("id: nansha-bus-gps", "id: bus--v1"), "datasets.yaml:2:9: id 'bus--v1' must not contain"),
        (("format: csv", "format: docx"), "datasets.yaml:12:15: format: 'docx' is not one of"),
        (("access: open", "access: secret"), "datasets.yaml:8:13: access: 'secret' is not one of"),
        (
            ("type: timestamp", "type: datetime"),
            "datasets.yaml:16:26: type 'datetime' of column 'ts' is not one of",
        ),
        (
            ("    licence:", "    colour: red\n    licence:"),
            "datasets.yaml:7:5: unknown key 'colour'",
        ),
        (('delimiter: ","', 'delimiter: ",,"'), "delimiter must be one character"),
    ],
)
def test_errors_name_line_and_column(patch, message):
    text = GOOD.replace(*patch)
    with pytest.raises(ConfigError) as e:
        parse_specs(text)
    assert message in str(e.value)


def test_missing_required_key_and_duplicate_ids():
    with pytest.raises(ConfigError, match="is missing its 'organization:'"):
        parse_specs(GOOD.replace("    organization: nansha-transport-bureau\n", ""))
    dup = GOOD + GOOD.split("datasets:\n", 1)[1]
    with pytest.raises(ConfigError, match=r"declared twice \(first at line 2\)"):
        parse_specs(dup)


def test_invalid_yaml_points_at_the_problem():
    with pytest.raises(ConfigError) as e:
        parse_specs("datasets:\n  - id: [unclosed\n")
    assert e.value.line == 3
    assert "not valid YAML" in str(e.value)


def test_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_specs(tmp_path / "nope.yaml")
    assert "file not found" in str(e.value) and "NSDX_DATASETS" in e.value.hint


def test_organisation_titles_from_the_top_level_list():
    text = "organizations:\n  - {name: nansha-transport-bureau, title: 南沙区交通运输局}\n" + GOOD
    (spec,) = parse_specs(text)
    assert spec.organization_title == "南沙区交通运输局"
    with pytest.raises(ConfigError, match="organisation needs a name"):
        parse_specs("organizations:\n  - {title: x}\n" + GOOD)


@pytest.mark.parametrize(
    ("value", "fen"),
    [("2800", 280_000), ("280000", 28_000_000), ("2800.10", 280_010), ('"2800.5"', 280_050),
     ("0.01", 1), ("1_000", 100_000), ("0", 0)],
)  # fmt: skip
def test_list_price_is_read_exactly_in_fen(value, fen):
    (spec,) = parse_specs(GOOD.replace("    access: open\n", f"    price_cny: {value}\n"))
    assert spec.price_fen == fen


@pytest.mark.parametrize(
    ("value", "message"),
    [("2800.001", "fraction of a fen"), ("-5", "is negative"), (".nan", "is not an amount"),
     (".inf", "is not an amount"), ("1e400", "more than the largest amount"),
     ("NaN", "is not a finite amount"), ("abc", "is not an amount in CNY"),
     ("[1]", "write the list price as a number"), ("true", "write the list price")],
)  # fmt: skip
def test_bad_list_prices_name_line_and_column(value, message):
    with pytest.raises(ConfigError) as e:
        parse_specs(GOOD.replace("    access: open\n", f"    price_cny: {value}\n"))
    assert message in str(e.value)
    assert (e.value.line, e.value.column) == (8, 16), str(e.value)


@pytest.mark.parametrize("org", ["iceberg", "_staging"])
def test_an_organisation_cannot_take_a_folder_the_store_keeps(org):
    """A dataset's objects live under <organisation>/<dataset>/; the store's own top-level
    folders (Iceberg metadata, publish staging) are not organisations' to take."""
    text = GOOD.replace("organization: nansha-transport-bureau", f"organization: {org}")
    with pytest.raises(ConfigError) as e:
        parse_specs(text)
    if org == "iceberg":  # "_staging" is already refused by the name's form
        assert str(e.value).startswith("datasets.yaml:6:19: organization 'iceberg' is a name the")


@pytest.mark.parametrize(
    "field, old",
    [
        ("domain", "domain: transport"),
        ("id", "id: nansha-bus-gps"),
        ("organization", "organization: nansha-transport-bureau"),
    ],
)
def test_a_name_with_a_trailing_newline_is_refused(field, old):
    """``$`` matches before a final newline: names are checked whole (re.fullmatch), so a
    "\\n" never reaches a storage folder or an Iceberg namespace."""
    value = old.split(": ", 1)[1]
    with pytest.raises(ConfigError):
        parse_specs(GOOD.replace(old, f'{field}: "{value}\\n"'))
