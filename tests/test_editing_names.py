"""Names checked by the catalogue's editing core (the CKAN API, the portal and the Python API
call it): whole names only, and never one of the object store's own folders."""

from __future__ import annotations

import pytest

from catalogue.access import SYSTEM
from catalogue.auth import Accounts, InvalidInput
from catalogue.editing import Packages
from catalogue.registry import Catalogue


@pytest.fixture
def cat(tmp_path):
    c = Catalogue(f"sqlite:///{tmp_path / 'nsdx.db'}")
    Accounts(c).create_org("bureau")
    return c


@pytest.mark.parametrize("org", ["iceberg", "_staging"])
def test_a_ckan_import_cannot_bring_an_organisation_named_like_a_store_folder(cat, org):
    """A sysadmin loading datasets from another portal brings their organisation along —
    not one whose name is a top-level folder the store keeps (ingest.storage.base)."""
    with pytest.raises(InvalidInput) as e:
        Packages(cat).create(SYSTEM, {"name": "bus-stops", "organization": {"name": org}})
    assert e.value.errors["owner_org"] == ["This name is kept by the object store; choose another."]
    with pytest.raises(InvalidInput):
        Accounts(cat).create_org(org)  # the same rule as creating one directly
    # a name the rule allows is brought along
    made = Packages(cat).create(SYSTEM, {"name": "bus-stops", "organization": {"name": "ferry"}})
    assert made["organization"]["name"] == "ferry"


@pytest.mark.parametrize(
    "data, field",
    [
        ({"name": "bus-stops\n", "owner_org": "bureau"}, "name"),
        (
            {
                "name": "bus-stops",
                "owner_org": "bureau",
                "extras": [{"key": "domain", "value": "transport\n"}],
            },
            "domain",
        ),
        ({"name": "bus-stops", "organization": {"name": "ferry\n"}}, "owner_org"),
    ],
    ids=["name", "domain", "imported-org"],
)
def test_a_trailing_newline_is_refused(cat, data, field):
    """``$`` matches before a final newline; every name is checked whole (re.fullmatch)."""
    with pytest.raises(InvalidInput) as e:
        Packages(cat).create(SYSTEM, data)
    assert field in e.value.errors
    with pytest.raises(InvalidInput):
        Accounts(cat).create_org("ferry\n")
