"""The licence register: one place that says what a ``license_id`` means — its title, its
URL and whether it is open. CKAN's ``license_list`` and ``package_show`` (``license_title``,
``license_url``, ``isopen``), DCAT-AP, schema.org, Croissant and the Data Package read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Licence:
    id: str
    title: str
    url: str | None  # None: no document to point at
    open: bool  # an open licence (Open Definition conformant)


_REGISTER = (
    Licence("CC-BY-4.0", "Creative Commons Attribution 4.0",
            "https://creativecommons.org/licenses/by/4.0/", True),
    Licence("CC-BY-SA-4.0", "Creative Commons Attribution Share-Alike 4.0",
            "https://creativecommons.org/licenses/by-sa/4.0/", True),
    Licence("CC0-1.0", "Creative Commons CCZero",
            "https://creativecommons.org/publicdomain/zero/1.0/", True),
    Licence("ODC-BY-1.0", "Open Data Commons Attribution License",
            "https://opendatacommons.org/licenses/by/1-0/", True),
    Licence("ODbL-1.0", "Open Data Commons Open Database License",
            "https://opendatacommons.org/licenses/odbl/1-0/", True),
    Licence("PDDL-1.0", "Open Data Commons Public Domain Dedication and License",
            "https://opendatacommons.org/licenses/pddl/1-0/", True),
    Licence("MIT", "MIT License", "https://spdx.org/licenses/MIT.html", True),
    Licence("Apache-2.0", "Apache License 2.0", "https://spdx.org/licenses/Apache-2.0.html", True),
    Licence("notspecified", "License not specified", None, False),
    Licence("other-closed", "Other (not open) — sold through the nsdx exchange", None, False),
    Licence("nsdx-exchange-commercial",
            "nsdx exchange commercial licence (sold through the exchange)", None, False),
)  # fmt: skip
LICENCES: dict[str, Licence] = {lic.id: lic for lic in _REGISTER}


def licence(license_id: str | None, url: str | None = None) -> Licence:
    """What ``license_id`` means. ``url`` is the publisher's own licence URL (declared as
    ``licence_url`` in datasets.yaml or the ``license_url`` extra); it wins for ids the
    register does not know and names the licence document when the register has none."""
    lid = (license_id or "notspecified").strip()
    known = LICENCES.get(lid)
    if known is None:  # a licence the register does not know: the publisher's own words
        return Licence(lid, lid, url or None, False)
    if known.url is None and url:
        return Licence(known.id, known.title, url, known.open)
    return known
