"""The one decision of a cross-border sale: :func:`decide` takes the facts of an order (the
parties' regions, the exporter's CIIO flag, the dataset's grade and personal information,
the individuals counted in the version at ingest, the exporter's cumulative counts this
calendar year) and the policy, and returns the route, the rule that fired and the counts it
used. It is pure (no database, no clock), so every boundary is tested directly; the trade
(:mod:`exchange.crossborder.record`) gathers the facts and records the decision.

Rules, in order (the first that fires decides; sources in docs/exchange.md):

1. both parties on the mainland, or the seller outside it: ``not_cross_border``;
2. the offer was not made for cross-border sale: **refused** (``offer_not_cross_border``);
3. core data: **refused** (``core_data``);
4. important data: **security assessment** (``important_data``);
5. no personal information: **exempt** (``no_personal_information``);
6. exporter in the free-trade zone, data outside its negative list: **exempt**
   (``ftz_outside_negative_list``);
7. personal information whose individuals were not counted: **security assessment**
   (``pi_count_unknown``: when in doubt, the stricter route);
8. any personal information from a CIIO: **security assessment** (``ciio_personal_information``);
9. non-sensitive PI, cumulative individuals below ``exempt_below``: **exempt**
   (``pi_below_threshold``);
10. both parties in the Greater Bay Area (nine cities + Hong Kong / Macao): **GBA standard
    contract** (``gba_hong_kong`` / ``gba_macao``);
11. cumulative individuals ≥ ``assessment_from`` or cumulative sensitive individuals ≥
    ``sensitive_assessment_from``: **security assessment** (``pi_assessment_threshold`` /
    ``sensitive_pi_assessment_threshold``);
12. otherwise **standard contract or certification** (``pi_contract_threshold`` /
    ``sensitive_pi``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from ingest.spec import GRADES
from validation.messages import Msg, Term

from ..errors import InvalidRequest
from .policy import CrossBorderPolicy
from .regions import Region

ROUTES = (
    "not_cross_border",
    "exempt",
    "standard_contract",
    "certification",
    "gba_standard_contract",
    "security_assessment",
    "refused",
)
#: The evidence that unblocks the grant of each route (any one of them).
REQUIRES: dict[str, tuple[str, ...]] = {
    "standard_contract": ("filing", "certification"),
    "gba_standard_contract": ("pia",),
    "security_assessment": ("approval",),
}


def check_grade(grade: object) -> str:
    if grade not in GRADES:
        raise InvalidRequest(
            Msg(
                "grade: %(grade)s is not one of %(grades)s (GB/T 43697-2024)",
                grade=repr(str(grade)[:40]),
                grades=", ".join(GRADES),
            ),
            hint=Msg("grade the dataset general, important or core; when in doubt, the higher"),
            field="grade",
        )
    return str(grade)


@dataclass(frozen=True)
class Transfer:
    """The facts of one order, as the decision needs them."""

    seller: Region
    buyer: Region
    exporter_ciio: bool = False
    offer_cross_border: bool = True
    grade: str = "general"
    domain: str = ""
    category: str | None = None
    has_pi: bool = False
    sensitive_pi: bool = False
    individuals: int | None = 0  # distinct individuals of the version (None: not counted)
    prior_individuals: int = 0  # the exporter's cumulative count this year, before this order
    prior_sensitive: int = 0
    counted_before: bool = False  # this dataset version already went abroad this year


@dataclass(frozen=True)
class Decision:
    route: str
    rule: str
    detail: str
    exemption: str | None = None
    requires: tuple[str, ...] = ()
    counts: dict = field(default_factory=dict)

    @property
    def cross_border(self) -> bool:
        return self.route != "not_cross_border"

    @property
    def refused(self) -> bool:
        return self.route == "refused"

    def to_dict(self) -> dict:
        return {
            "route": self.route,
            "rule": self.rule,
            "exemption": self.exemption,
            "requires": list(self.requires),
            "detail": self.detail,
            "counts": dict(self.counts),
        }


def in_gba(r: Region, p: CrossBorderPolicy) -> bool:
    if r.mainland:
        return r.city in p.gba_cities
    return r.region in p.gba_partners


def not_offered_reason(buyer_region: str) -> Msg:
    """The reason of an ``offer_not_cross_border`` refusal (:mod:`.report` rebuilds it from
    the ledger entry)."""
    return Msg(
        "the offer is not made for cross-border sale and the buyer is in %(region)s",
        region=Term(buyer_region),
    )


def decide(t: Transfer, p: CrossBorderPolicy) -> Decision:
    """The route of ``t`` under ``p`` (see the module's rules)."""
    check_grade(t.grade)
    pi_now = (t.individuals or 0) if t.has_pi and not t.counted_before else 0
    cumulative = t.prior_individuals + pi_now
    sensitive_now = pi_now if t.sensitive_pi else 0
    cumulative_sensitive = t.prior_sensitive + sensitive_now
    counts = {
        "individuals": t.individuals if t.has_pi else 0,
        "counted_before": t.counted_before,
        "prior_individuals": t.prior_individuals,
        "cumulative_individuals": cumulative,
        "prior_sensitive": t.prior_sensitive,
        "cumulative_sensitive": cumulative_sensitive,
        "exempt_below": p.exempt_below,
        "assessment_from": p.assessment_from,
        "sensitive_assessment_from": p.sensitive_assessment_from,
    }

    def out(route: str, rule: str, detail: str, exemption: str | None = None) -> Decision:
        return Decision(route, rule, detail, exemption, REQUIRES.get(route, ()), counts)

    if not t.seller.mainland or t.buyer.mainland:
        return out("not_cross_border", "not_cross_border", Msg("no data leaves the mainland"))
    if not t.offer_cross_border:
        return out(
            "refused",
            "offer_not_cross_border",
            not_offered_reason(t.buyer.region),
        )
    if t.grade == "core":
        return out("refused", "core_data", Msg("core data is never transferred across the border"))
    if t.grade == "important":
        return out(
            "security_assessment",
            "important_data",
            Msg("important data leaves the mainland only after a security assessment"),
        )
    if not t.has_pi:
        return out(
            "exempt",
            "no_personal_information",
            Msg("general data without personal information"),
            "no_personal_information",
        )
    if (
        p.ftz_enabled
        and t.seller.division in p.ftz_divisions
        and not any(e.covers(t.domain, t.category) for e in p.negative_list)
    ):
        return out(
            "exempt",
            "ftz_outside_negative_list",
            Msg(
                "exporter in the free-trade zone; %(domain)s/%(category)s is not on its "
                "negative list",
                domain=Term(t.domain, "domain"),
                category=t.category or "-",
            ),
            "ftz_outside_negative_list",
        )
    if t.individuals is None:
        return out(
            "security_assessment",
            "pi_count_unknown",
            Msg(
                "the version holds personal information whose individuals were not counted "
                "(ingest it with its personal-data columns declared)"
            ),
        )
    if t.exporter_ciio and p.ciio_requires_assessment:
        return out(
            "security_assessment",
            "ciio_personal_information",
            Msg("personal information from a critical-information-infrastructure operator"),
        )
    if not t.sensitive_pi and cumulative < p.exempt_below:
        return out(
            "exempt",
            "pi_below_threshold",
            Msg(
                "%(n)s individuals this year, fewer than %(limit)s (non-sensitive)",
                n=format(cumulative, ","),
                limit=format(p.exempt_below, ","),
            ),
            "pi_below_threshold",
        )
    if p.gba_enabled and in_gba(t.seller, p) and in_gba(t.buyer, p):
        rule = "gba_macao" if t.buyer.region == "macao" else "gba_hong_kong"
        return out(
            "gba_standard_contract",
            rule,
            Msg(
                "both parties in the Greater Bay Area (%(seller)s → %(buyer)s): the GBA "
                "standard contract, after a PI impact assessment",
                seller=t.seller.label(),
                buyer=Term(t.buyer.region),
            ),
        )
    if cumulative >= p.assessment_from:
        return out(
            "security_assessment",
            "pi_assessment_threshold",
            Msg(
                "%(n)s individuals this year, %(limit)s or more",
                n=format(cumulative, ","),
                limit=format(p.assessment_from, ","),
            ),
        )
    if cumulative_sensitive >= p.sensitive_assessment_from:
        return out(
            "security_assessment",
            "sensitive_pi_assessment_threshold",
            Msg(
                "sensitive PI of %(n)s individuals this year, %(limit)s or more",
                n=format(cumulative_sensitive, ","),
                limit=format(p.sensitive_assessment_from, ","),
            ),
        )
    if t.sensitive_pi:
        return out(
            "standard_contract",
            "sensitive_pi",
            Msg(
                "sensitive PI of %(n)s individuals this year, fewer than %(limit)s: a filed "
                "standard contract or a certification",
                n=format(cumulative_sensitive, ","),
                limit=format(p.sensitive_assessment_from, ","),
            ),
        )
    return out(
        "standard_contract",
        "pi_contract_threshold",
        Msg(
            "%(n)s individuals this year, from %(low)s to under %(high)s: a filed standard "
            "contract or a certification",
            n=format(cumulative, ","),
            low=format(p.exempt_below, ","),
            high=format(p.assessment_from, ","),
        ),
    )


def add_working_days(day: date, n: int) -> date:
    """``day`` plus ``n`` working days (Monday to Friday; public holidays are not known)."""
    d = day
    while n > 0:
        d += timedelta(days=1)
        if d.weekday() < 5:
            n -= 1
    return d
