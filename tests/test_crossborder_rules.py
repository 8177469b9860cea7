"""The cross-border decision (exchange.crossborder.decide) at every boundary the 2024
provisions name, and the policy file's bad inputs. Pure functions: no database."""

from __future__ import annotations

import copy
from datetime import date

import pytest
import yaml

from exchange.crossborder import Region, Transfer, decide, load_policy, parse_policy, parse_region
from exchange.crossborder.decide import add_working_days
from exchange.crossborder.policy import DEFAULT_POLICY
from exchange.errors import InvalidRequest, PolicyError

P = load_policy(DEFAULT_POLICY)
NANSHA = Region("mainland", "440115")  # in the FTZ and the GBA
SHENZHEN = Region("mainland", "440305")  # GBA, not the FTZ
BEIJING = Region("mainland", "110105")  # neither
HK, MO, ABROAD = Region("hong-kong"), Region("macao"), Region("abroad")


def pi(n: int, *, seller=SHENZHEN, buyer=ABROAD, prior=0, **kw) -> Transfer:
    base = dict(seller=seller, buyer=buyer, has_pi=True, individuals=n, prior_individuals=prior,
                domain="transport")  # fmt: skip
    return Transfer(**{**base, **kw})


def route(t: Transfer, p=P) -> tuple[str, str]:
    d = decide(t, p)
    return d.route, d.rule


@pytest.mark.parametrize(
    ("n", "want"),
    [
        (99_999, ("exempt", "pi_below_threshold")),
        (100_000, ("standard_contract", "pi_contract_threshold")),
        (999_999, ("standard_contract", "pi_contract_threshold")),
        (1_000_000, ("security_assessment", "pi_assessment_threshold")),
    ],
)
def test_pi_thresholds_for_an_overseas_buyer(n, want):
    assert route(pi(n)) == want
    d = decide(pi(n), P)
    assert d.counts["cumulative_individuals"] == n and d.counts["exempt_below"] == 100_000


@pytest.mark.parametrize(
    ("n", "want"),
    [
        (1, ("standard_contract", "sensitive_pi")),
        (9_999, ("standard_contract", "sensitive_pi")),
        (10_000, ("security_assessment", "sensitive_pi_assessment_threshold")),
    ],
)
def test_sensitive_pi_thresholds(n, want):
    assert route(pi(n, sensitive_pi=True)) == want


def test_standard_contract_route_needs_a_filing_or_a_certification():
    d = decide(pi(150_000), P)
    assert d.requires == ("filing", "certification") and d.exemption is None


def test_cumulative_count_over_the_year_catches_a_split_transfer():
    # 60,000 then 40,000 more individuals to the same destination: the second order is
    # decided on 100,000, not on its own 40,000
    assert route(pi(60_000)) == ("exempt", "pi_below_threshold")
    assert route(pi(40_000, prior=60_000)) == ("standard_contract", "pi_contract_threshold")
    assert route(pi(1, prior=999_999)) == ("security_assessment", "pi_assessment_threshold")
    # the same version sold abroad again adds nobody: its count was taken the first time
    d = decide(pi(60_000, prior=60_000, counted_before=True), P)
    assert d.counts["cumulative_individuals"] == 60_000 and d.route == "exempt"


def test_core_data_is_refused_and_important_data_needs_an_assessment():
    assert route(pi(10, grade="core")) == ("refused", "core_data")
    assert route(pi(0, has_pi=False, grade="core", buyer=HK)) == ("refused", "core_data")
    d = decide(pi(0, has_pi=False, grade="important"), P)
    assert (d.route, d.rule, d.requires) == ("security_assessment", "important_data", ("approval",))
    # important data is not PI the GBA contract covers
    assert route(pi(10, grade="important", buyer=HK))[0] == "security_assessment"


def test_ciio_exporter_needs_an_assessment_for_any_pi():
    assert route(pi(1, exporter_ciio=True)) == ("security_assessment", "ciio_personal_information")
    assert route(pi(0, has_pi=False, exporter_ciio=True))[0] == "exempt"


def test_data_without_pi_is_exempt():
    d = decide(pi(0, has_pi=False, domain="manufacturing"), P)
    assert (d.route, d.exemption) == ("exempt", "no_personal_information")


def test_gba_route_for_nansha_to_hong_kong_and_macao():
    assert route(pi(150_000, seller=NANSHA, buyer=HK)) == ("gba_standard_contract", "gba_hong_kong")
    assert route(pi(150_000, seller=NANSHA, buyer=MO)) == ("gba_standard_contract", "gba_macao")
    assert decide(pi(150_000, seller=NANSHA, buyer=HK), P).requires == ("pia",)
    # below the exemption the GBA contract is not needed
    assert route(pi(99_999, seller=NANSHA, buyer=HK))[0] == "exempt"
    # a seller outside the nine cities, or a buyer abroad: the national rules
    assert route(pi(150_000, seller=BEIJING, buyer=HK))[0] == "standard_contract"
    assert route(pi(150_000, seller=NANSHA, buyer=ABROAD))[0] == "standard_contract"


def test_overseas_buyer_of_an_offer_not_made_for_export_is_refused():
    assert route(pi(5, offer_cross_border=False)) == ("refused", "offer_not_cross_border")


def test_domestic_and_inbound_sales_are_not_cross_border():
    assert route(pi(5_000_000, buyer=BEIJING)) == ("not_cross_border", "not_cross_border")
    assert route(pi(5_000_000, seller=HK, buyer=BEIJING))[0] == "not_cross_border"


def test_free_trade_zone_negative_list():
    # transport is on the default list: the PI rules apply; a domain off the list is exempt
    assert route(pi(150_000, seller=NANSHA, domain="transport"))[0] == "standard_contract"
    d = decide(pi(150_000, seller=NANSHA, domain="manufacturing"), P)
    assert (d.route, d.exemption) == ("exempt", "ftz_outside_negative_list")
    # ... only for exporters registered in the zone
    assert route(pi(150_000, seller=SHENZHEN, domain="manufacturing"))[0] == "standard_contract"


def test_uncounted_pi_takes_the_strict_route():
    assert route(pi(0, individuals=None)) == ("security_assessment", "pi_count_unknown")


def test_changing_a_threshold_changes_the_decision_and_the_hash():
    raw = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    raw2 = copy.deepcopy(raw)
    raw2["personal_information"]["exempt_below"] = 50_000
    p2 = parse_policy(raw2)
    assert route(pi(60_000)) == ("exempt", "pi_below_threshold")
    assert route(pi(60_000), p2) == ("standard_contract", "pi_contract_threshold")
    assert p2.sha256 != P.sha256 and parse_policy(copy.deepcopy(raw)).sha256 == P.sha256


def _bad(mutate) -> str:
    raw = yaml.safe_load(DEFAULT_POLICY.read_text(encoding="utf-8"))
    mutate(raw)
    with pytest.raises(PolicyError) as e:
        parse_policy(raw, source="policy.yaml")
    return e.value.message


def test_policy_with_a_missing_or_contradictory_rule_is_refused():
    assert "personal_information.assessment_from: missing" in _bad(
        lambda r: r["personal_information"].pop("assessment_from")
    )
    assert "gba: missing" in _bad(lambda r: r.pop("gba"))
    assert "exempt_below: 2000000 is above assessment_from" in _bad(
        lambda r: r["personal_information"].update(exempt_below=2_000_000)
    )
    assert "sensitive_assessment_from" in _bad(
        lambda r: r["personal_information"].update(sensitive_assessment_from=5_000_000)
    )
    assert "must be a whole number" in _bad(
        lambda r: r["personal_information"].update(exempt_below="many")
    )
    assert "unknown key" in _bad(lambda r: r.update(extra=1))
    assert "does not match its own pattern" in _bad(
        lambda r: r["evidence"]["filing"].update(example="nope")
    )
    assert "partners" in _bad(lambda r: r["gba"].update(partners=["taiwan"]))


def test_bad_regions_and_grades_name_their_field():
    with pytest.raises(InvalidRequest) as e:
        parse_region("atlantis", None, credit_division="440115")
    assert e.value.fields["field"] == "region"
    with pytest.raises(InvalidRequest) as e:
        parse_region("mainland", "990101", credit_division="440115")
    assert e.value.fields["field"] == "division"
    with pytest.raises(InvalidRequest) as e:
        decide(pi(1, grade="secret"), P)
    assert e.value.fields["field"] == "grade"
    assert parse_region(None, None, credit_division="440115") == NANSHA
    assert parse_region("Hong-Kong", None, credit_division="440115") == HK


def test_gba_filing_deadline_counts_working_days():
    assert add_working_days(date(2025, 6, 6), 10) == date(2025, 6, 20)  # a Friday
