"""A referential check (``in_dataset``) reads another dataset's data on behalf of the
publishing dataset's organisation: a provider declares the checks of its own uploads (the
portal's form, the Action API) and reads their report, which names the values missing from
the other dataset. Against another organisation's restricted, private or draft data that
was a membership oracle; such a dataset now answers as one that is not published."""

from __future__ import annotations

from pathlib import Path

import pytest

from catalogue.publishing import publish_dataset
from catalogue.registry import Catalogue, find_dataset
from ingest.spec import parse_specs
from ingest.storage.local import LocalStore
from validation import ValidationFailed

KEY = b"k"


def spec_of(tmp_path: Path, name: str, org: str, rows: list[str], extra: str = ""):
    csv = tmp_path / f"{name}.csv"
    csv.write_text("company\n" + "".join(f"{r}\n" for r in rows), encoding="utf-8")
    (spec,) = parse_specs(
        f"""datasets:
  - id: {name}
    title: {name}
    domain: economy
    organization: {org}
    source: {{path: {csv}, format: csv}}
{extra}""",
        base_dir=tmp_path,
    )
    return spec


def probe(tmp_path, cat, store, org: str, target: str):
    """Org ``org`` publishes c1 and x9 with a check that they are in ``target``: the result
    of that check as its report shows it."""
    check = f"    expectations:\n      - {{column: company, in_dataset: {{dataset: {target}, column: company}}}}\n"
    spec = spec_of(tmp_path, f"probe-{org}-{target}", org, ["c1", "x9"], check)
    with pytest.raises(ValidationFailed) as e:
        publish_dataset(cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "r")
    return e.value.report.results[0]


@pytest.fixture
def cat(tmp_path):
    return Catalogue(f"sqlite:///{tmp_path / 'cat.db'}")


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "objects")


@pytest.mark.parametrize("how", ["restricted", "private", "draft"])
def test_another_orgs_unreadable_data_is_not_checked_against(tmp_path, cat, store, how):
    extra = "    access: restricted\n" if how == "restricted" else ""
    spec = spec_of(tmp_path, "secret-companies", "org-a", ["c1", "c2"], extra)
    publish_dataset(cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "r")
    if how != "restricted":
        with cat.Session.begin() as s:
            ds = find_dataset(s, "secret-companies")
            if how == "private":
                ds.private = True
            else:
                ds.state = "draft"
    # the owner's own organisation checks against it: c1 is there, x9 is not
    own = probe(tmp_path, cat, store, "org-a", "secret-companies")
    assert own.exception is None
    assert (own.result["unexpected_count"], own.result["partial_unexpected_list"]) == (1, ["x9"])
    # another organisation learns nothing of its values: the answer of a name never published
    other = probe(tmp_path, cat, store, "org-b", "secret-companies")
    nowhere = probe(tmp_path, cat, store, "org-b", "no-such-dataset")
    assert "unexpected_count" not in other.result
    assert other.exception == nowhere.exception.replace("no-such-dataset", "secret-companies")


def test_open_data_is_checked_against_by_anyone(tmp_path, cat, store):
    spec = spec_of(tmp_path, "open-companies", "org-a", ["c1", "c2"])
    publish_dataset(cat, store, spec, pii_key=KEY, reports_dir=tmp_path / "r")
    other = probe(tmp_path, cat, store, "org-b", "open-companies")
    assert (other.result["unexpected_count"], other.result["partial_unexpected_list"]) == (
        1,
        ["x9"],
    )


@pytest.mark.s3
def test_referential_checks_read_the_other_dataset_on_s3(tmp_path, cat, s3_store):
    """On an S3 store (a real SeaweedFS) the check reads the other dataset's Parquet through
    DuckDB's packaged httpfs with the store's credentials (it tried to download httpfs from
    the network, and never ran there); its report names no storage location."""
    spec = spec_of(tmp_path, "open-companies", "org-a", ["c1", "c2"])
    publish_dataset(cat, s3_store, spec, pii_key=KEY, reports_dir=tmp_path / "r")
    for org in ("org-a", "org-b"):
        r = probe(tmp_path, cat, s3_store, org, "open-companies")
        assert r.exception is None, r.exception
        assert (r.result["unexpected_count"], r.result["partial_unexpected_list"]) == (1, ["x9"])
    # and a dataset all of whose values are there publishes
    check = "    expectations:\n      - {column: company, in_dataset: {dataset: open-companies, column: company}}\n"
    ok = spec_of(tmp_path, "all-known", "org-b", ["c2", "c1"], check)
    assert publish_dataset(cat, s3_store, ok, pii_key=KEY, reports_dir=tmp_path / "r").status == (
        "published"
    )
