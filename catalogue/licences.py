"""The licence register: one place that says what a ``license_id`` means — its title, its
URL and whether it is open. CKAN's ``license_list`` and ``package_show`` (``license_title``,
``license_url``, ``isopen``), DCAT-AP, schema.org, Croissant and the Data Package read it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


def N_(message: str) -> str:  # noqa: N802 - marked for the portal's catalogue (babel.cfg)
    return message


@dataclass(frozen=True)
class Licence:
    id: str
    title: str
    url: str | None  # None: no document elsewhere; the portal's licence page holds the terms
    open: bool  # an open licence (Open Definition conformant)
    terms: tuple[str, ...] = ()  # what the portal's page says (English msgids, translated)


# The terms of the licences that have no document elsewhere, shown on /licence/<id>.
_EXCHANGE_TERMS = (
    N_(
        "The data is not open data: it is sold through the nsdx exchange of the Nansha AI "
        "industry zone."
    ),
    N_(
        "An organisation that buys it gets an access grant once the seller has confirmed its "
        "payment, for the number of days the offer states; a refund revokes the grant."
    ),
    N_(
        "The offer says which version is covered (a fixed version, or the latest during the "
        "offer's term), the price, whether cross-border use is allowed and any further licence "
        "terms; the signed contract between buyer and seller governs the use."
    ),
    N_(
        "Without a live access grant no right to use the data is given. To buy access, order "
        "one of the offers on the dataset's page or contact the publishing organisation."
    ),
    N_(
        "Every step of a trade (offer, order, payment, access grant, delivery, refund) is "
        "recorded in the exchange's tamper-evident ledger."
    ),
)


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
    Licence("notspecified", N_("License not specified"), None, False, (
        N_("The publisher has not said under which licence the data may be used."),
        N_("Ask the publishing organisation before you reuse the data."),
    )),
    Licence("other-closed", N_("Other (not open) — sold through the nsdx exchange"), None, False,
            _EXCHANGE_TERMS),
    Licence("nsdx-exchange-commercial",
            N_("nsdx exchange commercial licence (sold through the exchange)"), None, False,
            _EXCHANGE_TERMS),
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


def licence_page(license_id: str) -> str:
    """The path of the portal's page for a licence (its terms, and the datasets under it)."""
    return "/licence/" + quote(license_id, safe="")


def document_url(lic: Licence, site: str) -> str:
    """Where ``lic``'s terms are: its own document, else the portal's licence page (absolute
    against ``site``, the public base URL) — what DCAT, schema.org, Croissant and Data
    Package metadata give as the licence."""
    return lic.url or site.rstrip("/") + licence_page(lic.id)
