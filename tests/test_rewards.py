"""Reward scenarios with hand-computed amounts: every exclusion rule, the caps, the
policy switches, and recomputation from a checkpoint."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from exchange.ledger.store import Checkpoint
from exchange.rewards import compute_rewards, load_policy
from exchange.rewards.policy import parse_policy

P = load_policy()
CP = Checkpoint(10_000, b"\x00" * 32, "test checkpoint\n")


class Book:
    """A synthetic ledger: the events the trade functions append, in order."""

    def __init__(self):
        self.events: list[dict] = []
        self.n = 0

    def _add(self, kind, **data):
        self.events.append(
            {"type": kind, "at": "2025-01-01T00:00:00Z", "index": len(self.events), **data}
        )

    def ent(self, org, *, group=None, rep=None, addr=None, phone=None, bank=None,
            shareholders=(), controllers=(), nansha=True):  # fmt: skip
        self._add(
            "enterprise.registered", org=org, credit_code=f"code-{org}", legal_name=org.upper(),
            corporate_group=group, legal_representative=rep, registered_address=addr,
            phone_fp=phone, bank_account_fp=bank, shareholders=sorted(shareholders),
            controllers=sorted(controllers), in_nansha=nansha,
        )  # fmt: skip
        return self

    def trade(self, buyer, seller, yuan, paid_on, *, refund=False, other_support=False,
              channel="exchange", dataset="ds", paid=True):  # fmt: skip
        self.n += 1
        oid = f"o{self.n}"
        self._add("order.placed", order=oid, buyer=buyer, seller=seller, dataset=dataset,
                  domain="transport", amount_fen=yuan * 100, channel=channel,
                  other_support=other_support, ordered_on=paid_on)  # fmt: skip
        if paid:
            self._add("payment.confirmed", order=oid, amount_fen=yuan * 100, paid_on=paid_on)
        if refund:
            self._add("refund.issued", order=oid, amount_fen=yuan * 100, refunded_on=paid_on)
        return oid

    def report(self, year=2025, policy=P):
        return compute_rewards(self.events, CP, policy, year)


def base() -> Book:
    return Book().ent("seller").ent("a").ent("b")


def ent_row(rep, org):
    return next(e for e in rep["enterprises"] if e["org"] == org)


def tx(rep, order):
    return next(t for t in rep["transactions"] if t["order"] == order)


def codes(rep, order):
    return [r["code"] for r in tx(rep, order)["excluded_because"]]


def test_thirty_percent_of_contract_value():
    bk = base()
    o = bk.trade("a", "seller", 100_000, "2025-03-01")
    bk.trade("a", "seller", 33_333, "2025-04-01")  # 9,999.90
    rep = bk.report()
    a = ent_row(rep, "a")
    assert (a["eligible_cny"], a["reward_cny"], a["capped_reward_cny"]) == (
        "133333.00",
        "39999.90",
        "39999.90",
    )
    assert tx(rep, o)["contribution_cny"] == "30000.00" and tx(rep, o)["eligible"]
    assert rep["checkpoint"]["tree_size"] == 10_000 and rep["policy"]["rate"] == "0.30"


def test_annual_cap_per_group_shared_by_members():
    bk = Book().ent("seller").ent("a1", group="G").ent("a2", group="G")
    bk.trade("a1", "seller", 5_000_000, "2025-02-01")
    bk.trade("a2", "seller", 3_000_000, "2025-05-01")
    rep = bk.report()
    (g,) = rep["groups"]
    assert (g["reward_cny"], g["capped_reward_cny"], g["cap_applied"]) == (
        "2400000.00",
        "2000000.00",
        "annual",
    )
    # 2,000,000 shared 1.5M : 0.9M
    assert ent_row(rep, "a1")["capped_reward_cny"] == "1250000.00"
    assert ent_row(rep, "a2")["capped_reward_cny"] == "750000.00"


def test_splitting_a_contract_does_not_beat_the_cap():
    one, many = base(), base()
    one.trade("a", "seller", 7_000_000, "2025-06-01")
    for m in range(1, 11):  # ten ¥700,000 contracts in ten months (not a split flag)
        many.trade("a", "seller", 700_000, f"2025-{m:02d}-15")
    r1, r2 = one.report(), many.report()
    assert (
        ent_row(r1, "a")["capped_reward_cny"]
        == ent_row(r2, "a")["capped_reward_cny"]
        == "2000000.00"
    )
    assert r2["flags"] == []


def test_programme_cap_over_years():
    bk = base()
    for y in range(2024, 2030):
        bk.trade("a", "seller", 7_000_000, f"{y}-06-01")
    caps = {y: bk.report(y)["groups"][0] for y in range(2024, 2030)}
    assert [caps[y]["capped_reward_cny"] for y in range(2024, 2030)] == ["2000000.00"] * 5 + [
        "0.00"
    ]
    assert caps[2028]["prior_years_cny"] == "8000000.00"
    assert caps[2029]["programme_left_cny"] == "0.00" and caps[2029]["cap_applied"] == "programme"
    bk2 = base()
    bk2.trade("a", "seller", 3_000_000, "2025-01-10")  # 900,000 in 2025
    for y in range(2026, 2031):
        bk2.trade("a", "seller", 7_000_000, f"{y}-06-01")
    # 0.9M + 4 x 2M (2026-2029) = 8.9M before 2030; 2030 gets 1.1M (programme cap 10M)
    assert bk2.report(2030)["groups"][0]["capped_reward_cny"] == "1100000.00"


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        ({"refund": True}, "refunded"),
        ({"other_support": True}, "stacking"),
        ({"channel": "declared"}, "not_exchange_trade"),
        ({"paid_on": "2024-12-31"}, "outside_year"),
        ({"paid": False}, "unpaid"),
    ],
)
def test_trade_exclusions(setup, code):
    bk = base()
    paid_on = setup.pop("paid_on", "2025-03-01")
    o = bk.trade("a", "seller", 100_000, paid_on, **setup)
    rep = bk.report()
    assert codes(rep, o) == [code]
    assert tx(rep, o)["contribution_cny"] == "0.00"
    assert rep["enterprises"] == []


def test_buyer_outside_district_and_configurable_district_party():
    bk = Book().ent("seller", nansha=False).ent("a", nansha=False).ent("b")
    o1 = bk.trade("a", "seller", 100_000, "2025-03-01")
    o2 = bk.trade("b", "seller", 100_000, "2025-03-02")
    rep = bk.report()
    assert codes(rep, o1) == ["not_in_district"] and codes(rep, o2) == []
    both = replace(P, district_party="both")
    rep = bk.report(policy=both)
    assert codes(rep, o2) == ["not_in_district"]  # the seller is outside
    seller_pays = replace(P, beneficiary="seller", district_party="buyer")
    rep = bk.report(policy=seller_pays)
    assert codes(rep, o2) == [] and ent_row(rep, "seller")["reward_cny"] == "30000.00"


@pytest.mark.parametrize(
    ("a", "s", "rule"),
    [
        ({"group": "G"}, {"group": "G"}, "same_group"),
        ({"controllers": ["王五"]}, {"controllers": ["王五"]}, "shared_controller"),
        ({"shareholders": ["投资公司"]}, {"shareholders": ["投资公司"]}, "shareholder_overlap"),
        ({"shareholders": ["seller"]}, {}, "shareholder_overlap"),  # seller holds shares in a
        ({"rep": "张三"}, {"rep": "张三"}, "same_legal_representative"),
        ({"addr": "南沙区海滨路1号"}, {"addr": "南沙区海滨路1号"}, "same_address"),
        ({"phone": "fp1"}, {"phone": "fp1"}, "same_phone"),
        ({"bank": "fp2"}, {"bank": "fp2"}, "same_bank_account"),
    ],
)
def test_related_parties(a, s, rule):
    bk = Book().ent("seller", **s).ent("a", **a)
    o = bk.trade("a", "seller", 100_000, "2025-03-01")
    rep = bk.report()
    assert codes(rep, o) == [f"related_party:{rule}"]
    # the rule can be switched off in the policy
    off = replace(P, related_party=tuple(r for r in P.related_party if r != rule))
    assert codes(bk.report(policy=off), o) == []


def test_mirrored_trades():
    bk = base()
    o1 = bk.trade("a", "b", 500_000, "2025-05-01")
    o2 = bk.trade("b", "a", 480_000, "2025-05-20")  # within 30 days, 4% apart
    o3 = bk.trade("a", "b", 500_000, "2025-09-01")  # back again, but 104 days later
    rep = bk.report()
    assert codes(rep, o1) == codes(rep, o2) == ["wash_trade:mirrored"]
    assert codes(rep, o3) == []
    assert [f["kind"] for f in rep["flags"]] == ["mirrored"]


def test_amounts_too_different_are_not_mirrored():
    bk = base()
    o1 = bk.trade("a", "b", 500_000, "2025-05-01")
    bk.trade("b", "a", 100_000, "2025-05-02")
    assert codes(bk.report(), o1) == []


def test_cycle_and_cycle_through_related_party():
    bk = base().ent("c").ent("c2", group="CG").ent("c3", group="CG")
    o = [bk.trade("a", "b", 300_000, "2025-05-01"), bk.trade("c", "a", 310_000, "2025-05-10"),
         bk.trade("b", "c", 295_000, "2025-05-20")]  # fmt: skip
    # b -> c2, c3 -> b: a ring that closes through c2's sister company c3
    r = [bk.trade("c2", "b", 200_000, "2025-07-01"), bk.trade("b", "c3", 200_000, "2025-07-05")]
    rep = bk.report()
    for x in o + r:
        assert codes(rep, x) == ["wash_trade:cycle"], x
    assert sorted(f["kind"] for f in rep["flags"]) == ["cycle", "cycle"]


def test_split_trades():
    bk = base()
    orders = [bk.trade("a", "seller", 90_000, f"2025-03-0{d}") for d in (1, 3, 6)]
    later = bk.trade("a", "seller", 90_000, "2025-04-20")
    rep = bk.report()
    assert all(codes(rep, x) == ["wash_trade:split"] for x in orders)
    assert codes(rep, later) == []
    keep = replace(P, wash_trade=replace(P.wash_trade, exclude=("cycle", "mirrored")))
    rep = bk.report(policy=keep)
    assert codes(rep, orders[0]) == [] and rep["flags"][0]["kind"] == "split"


def test_report_is_identical_for_the_same_checkpoint():
    bk = base()
    bk.trade("a", "seller", 100_000, "2025-03-01")
    cp = Checkpoint(len(bk.events), b"\x01" * 32, "n\n")
    r1 = json.dumps(compute_rewards(bk.events, cp, P, 2025), sort_keys=True)
    bk.trade("b", "seller", 100_000, "2025-03-02")  # later activity, beyond the checkpoint
    r2 = json.dumps(compute_rewards(bk.events, cp, P, 2025), sort_keys=True)
    assert r1 == r2


def test_policy_file_errors(tmp_path):
    from exchange.errors import PolicyError

    with pytest.raises(PolicyError, match="unknown key"):
        parse_policy({"rates": "0.3"})
    with pytest.raises(PolicyError, match="as strings"):
        parse_policy({"rate": 0.3})
    p = tmp_path / "p.yaml"
    p.write_text('rate: "0.20"\nannual_cap_per_group: "1000000"\n')
    pol = load_policy(p)
    assert pol.rate == "0.20" and pol.annual_cap_fen == 100_000_000 and pol.sha256 != P.sha256


def test_recompute_from_checkpoint_on_real_ledger(nsdx_env):
    """Through the CLI: a report at the demo's checkpoint stays identical after more trades."""
    from tests.conftest import run_cli

    from .test_exchange_trade import _demo_year

    y = str(_demo_year())
    run_cli("exchange", "demo", env=nsdx_env)
    r1 = run_cli("audit", "rewards", "--year", y, "--json", env=nsdx_env).stdout
    size = json.loads(r1)["checkpoint"]["tree_size"]
    offers = json.loads(run_cli("exchange", "offers", "--json", env=nsdx_env).stdout)
    run_cli("exchange", "order", offers[0]["id"], "--buyer", "lingang-insight", env=nsdx_env)
    r2 = run_cli("audit", "rewards", "--year", y, "--json", "--at", str(size), env=nsdx_env).stdout
    assert r1 == r2
    rep = json.loads(r1)
    by = {e["org"]: e for e in rep["enterprises"]}
    # demo: 智行 group buys 280,000 + 7,000,000 + 150,000 -> 2,229,000 capped to 2,000,000
    assert by["nansha-zhixing-ai"]["reward_cny"] == "2184000.00"
    assert rep["groups"][1]["capped_reward_cny"] == "2000000.00"
    reasons = {c["code"].split(":")[0] for t in rep["transactions"] for c in t["excluded_because"]}
    assert reasons == {"not_in_district", "related_party", "refunded", "wash_trade"}
    csv_out = run_cli("audit", "rewards", "--year", y, "--csv", env=nsdx_env).stdout
    assert csv_out.splitlines()[0].startswith("record,year,checkpoint_size")
