"""The cross-border rules in the trade, end to end on a real database and ledger: the
individuals counted at ingest, the decision and refusal events, a grant blocked until its
evidence, cumulative counts across orders and their reset on 1 January, the audit."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

from exchange import credit_code, trade
from exchange.actors import Actor
from exchange.errors import CrossBorderBlocked, CrossBorderRefused, InvalidRequest
from tests.conftest import pg_database
from tests.registered import register

SELLER = "bureau"
BUYERS = {"hk-firm": "hong-kong", "macao-firm": "macao", "paris-firm": "abroad"}
OPERATOR = Actor.operator()  # records regions abroad and the authorities' numbers
Y = 2025


def _world(tmp_path: Path, url: str | None = None):
    from catalogue.models import Dataset, Version
    from catalogue.registry import Catalogue
    from exchange.context import Exchange
    from exchange.ledger.keys import load_signer

    cat = Catalogue(url or f"sqlite:///{tmp_path / 'nsdx.db'}")
    with cat.Session.begin() as s:
        org = cat.ensure_organization(s, SELLER)
        for b in BUYERS:
            cat.ensure_organization(s, b)
        # individuals as ingest counts them (test_individuals_are_counted_at_ingest)
        for name, n, grade in (("ds60", 60_000, "general"), ("ds40", 40_000, "general"),
                               ("core", 10, "core"), ("ds150", 150_000, "general"),
                               ("imp", 0, "important")):  # fmt: skip
            ds = Dataset(name=name, domain="transport", access="restricted", organization=org,
                         extras={}, current_version=1, grade=grade, has_pi=n > 0,
                         price_fen=100_000)  # fmt: skip
            s.add(ds)
            s.flush()
            s.add(Version(dataset_id=ds.id, number=1, prefix=f"bureau/{name}/v1",
                          storage_url="file://", fingerprint=name, manifest={}, validation={},
                          individuals=n))  # fmt: skip
    ex = Exchange(cat, None, home=tmp_path, pii_key=b"k", signer=load_signer(tmp_path, {}))
    trade.register_enterprise(
        ex, Actor.for_org(SELLER), SELLER, credit_code_=credit_code.make("440115", "MA5ATKT1"),
        legal_name="南沙局", in_nansha=True,
    )  # fmt: skip
    for i, (b, region) in enumerate(BUYERS.items()):  # a region abroad: the operator's
        trade.register_enterprise(
            ex, OPERATOR, b, credit_code_=credit_code.make("440115", f"MA5{i}XKT1"),
            legal_name=b, region=region,
        )  # fmt: skip
    for name in ("ds60", "ds40", "core", "ds150", "imp"):  # no registration, no trade
        register(ex, name, SELLER, scenario="xb")
    return ex


# the tests below tell one year's story in order on one exchange per database: under xdist
# they must all run on one worker (else a worker builds its own exchange and skips a chapter)
pytestmark = pytest.mark.xdist_group("crossborder_trade")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world(request, tmp_path_factory, pg_available):
    """One exchange per database; the tests below run in order on it (a year's story)."""
    d = tmp_path_factory.mktemp("xb")
    if request.param == "sqlite":
        yield _world(d)
        return
    if not pg_available:
        pytest.skip("PostgreSQL not reachable")
    with pg_database() as url:
        yield _world(d, url)


def _offer(ex, ds: str, *, cross_border=True, day=date(Y, 1, 1)) -> str:
    return trade.create_offer(
        ex.on_day(day), Actor.for_org(SELLER), ds, cross_border=cross_border,
        term_start=day, term_end=date(Y + 1, 12, 31),
    )["id"]  # fmt: skip


def _order(ex, offer: str, buyer: str, day: date) -> dict:
    return trade.place_order(ex.on_day(day), Actor.for_org(buyer, "member"), offer, buyer=buyer)


def _events(ex, kind: str) -> list[dict]:
    return [e for e in ex.ledger.events(ex.ledger.head_size()) if e["type"] == kind]


def test_gba_route_for_a_hong_kong_buyer_is_blocked_until_its_pia(world):
    ex = world
    seller = Actor.for_org(SELLER)
    o = _order(ex, _offer(ex, "ds150"), "hk-firm", date(Y, 3, 2))
    xb = o["cross_border"]
    assert (xb["route"], xb["rule"], xb["missing_evidence"]) == (
        "gba_standard_contract", "gba_hong_kong", ["pia"],
    )  # fmt: skip
    assert xb["filing_due"] == "2025-03-14"  # 10 working days from Sunday 2 March
    decided = _events(ex, "crossborder.decided")[-1]
    assert decided["order"] == o["id"] and decided["policy_sha256"] == ex.crossborder_policy.sha256
    assert decided["counts"]["cumulative_individuals"] == 150_000
    assert decided["buyer_region"] == {"region": "hong-kong"}
    trade.confirm_payment(ex.on_day(date(Y, 3, 2)), seller, o["id"])
    refused_before = len(_events(ex, "crossborder.refused"))
    with pytest.raises(CrossBorderBlocked) as e:
        trade.grant_access(ex, seller, o["id"])
    assert e.value.status == 409 and e.value.fields["requires"] == ["pia"]
    assert len(_events(ex, "crossborder.refused")) == refused_before + 1
    with pytest.raises(InvalidRequest) as bad:
        trade.record_crossborder_evidence(ex, seller, o["id"], kind="pia", reference="PIA 7")
    assert bad.value.fields["field"] == "reference" and "PIA-2025-NS-0007" in bad.value.hint
    with pytest.raises(InvalidRequest) as bad:
        trade.record_crossborder_evidence(ex, seller, o["id"], kind="approval", reference="x")
    assert bad.value.fields["field"] == "reference"  # the form is checked first
    r = trade.record_crossborder_evidence(
        ex, seller, o["id"], kind="pia", reference="PIA-2025-NS-0007"
    )
    assert r["receipt"]["entry"]["type"] == "crossborder.evidence"
    assert trade.grant_access(ex, seller, o["id"])["status"] == "granted"


def test_macao_buyer_gets_the_macao_gba_contract(world):
    ex = world
    # ds150 already went abroad this year: the same version adds nobody, the count stays
    o = _order(ex, _offer(ex, "ds150"), "macao-firm", date(Y, 3, 3))
    assert (o["cross_border"]["route"], o["cross_border"]["rule"]) == (
        "gba_standard_contract", "gba_macao",
    )  # fmt: skip
    assert o["cross_border"]["individuals_added"] == 0


def test_overseas_buyer_refused_and_core_data_refused_with_ledger_events(world):
    ex = world
    from exchange.models import Order

    with ex.catalogue.Session() as s:
        before = s.query(Order).count()
    with pytest.raises(CrossBorderRefused) as e:
        _order(ex, _offer(ex, "ds60", cross_border=False), "paris-firm", date(Y, 4, 1))
    assert e.value.status == 403 and e.value.fields["rule"] == "offer_not_cross_border"
    ev = ex.ledger.entry(e.value.fields["ledger_index"])
    assert ev["payload"]["type"] == "crossborder.refused"
    with pytest.raises(CrossBorderRefused) as e:
        _order(ex, _offer(ex, "core"), "hk-firm", date(Y, 4, 1))
    assert e.value.fields["rule"] == "core_data"
    with ex.catalogue.Session() as s:
        assert s.query(Order).count() == before  # no order was kept


def test_cumulative_count_split_transfer_and_new_year_reset(world):
    ex = world
    seller = Actor.for_org(SELLER)
    # 150,000 went to Hong Kong in March; 60,000 more abroad: 210,000 this year
    o1 = _order(ex, _offer(ex, "ds60"), "paris-firm", date(Y, 5, 1))
    assert o1["cross_border"]["route"] == "standard_contract"
    with pytest.raises(CrossBorderBlocked):
        trade.confirm_payment(ex.on_day(date(Y, 5, 1)), seller, o1["id"])
        trade.grant_access(ex, seller, o1["id"])
    trade.record_crossborder_evidence(ex, OPERATOR, o1["id"], kind="certification",
                                      reference="PIC-2025-001122")  # fmt: skip
    assert trade.get_order(ex, seller, o1["id"])["cross_border"]["route"] == "certification"
    # 1 January: the count starts again, so 40,000 individuals are exempt
    o2 = _order(ex, _offer(ex, "ds40", day=date(Y + 1, 1, 1)), "paris-firm", date(Y + 1, 1, 1))
    assert (o2["cross_border"]["route"], o2["cross_border"]["rule"]) == (
        "exempt", "pi_below_threshold",
    )  # fmt: skip
    # ... and a second part of the same year's export is counted with the first
    o3 = _order(ex, _offer(ex, "ds60", day=date(Y + 1, 1, 2)), "paris-firm", date(Y + 1, 1, 2))
    assert (o3["cross_border"]["route"], o3["cross_border"]["rule"]) == (
        "standard_contract", "pi_contract_threshold",
    )  # fmt: skip
    decided = _events(ex, "crossborder.decided")[-1]
    assert decided["counts"]["prior_individuals"] == 40_000
    assert decided["counts"]["cumulative_individuals"] == 100_000


def test_important_data_without_approval_is_refused_its_grant(world):
    ex = world
    seller = Actor.for_org(SELLER)
    o = _order(ex, _offer(ex, "imp"), "hk-firm", date(Y, 6, 2))
    assert (o["cross_border"]["route"], o["cross_border"]["rule"]) == (
        "security_assessment", "important_data",
    )  # fmt: skip
    trade.confirm_payment(ex.on_day(date(Y, 6, 2)), seller, o["id"])
    with pytest.raises(CrossBorderBlocked) as e:
        trade.grant_access(ex, seller, o["id"])
    assert e.value.fields["requires"] == ["approval"]
    with pytest.raises(InvalidRequest):  # a PIA is not what this route needs
        trade.record_crossborder_evidence(ex, seller, o["id"], kind="pia",
                                          reference="PIA-2025-NS-0009")  # fmt: skip
    with pytest.raises(InvalidRequest) as bad:
        trade.record_crossborder_evidence(ex, seller, o["id"], kind="approval",
                                          reference="SA-25-1")  # fmt: skip
    assert bad.value.fields["field"] == "reference"
    trade.record_crossborder_evidence(ex, OPERATOR, o["id"], kind="approval",
                                      reference="SA-2025-000311")  # fmt: skip
    assert trade.grant_access(ex, seller, o["id"])["status"] == "granted"


def test_the_audit_of_a_year(world, tmp_path):
    from exchange.crossborder.report import crossborder_report, write_crossborder_report

    ex = world
    ex.ledger.checkpoint()
    rep = crossborder_report(ex, Y)
    assert rep["totals"]["transfers"] == 4 and rep["totals"]["refusals"] >= 4
    (x,) = rep["exporters"]
    assert (x["exporter"], x["cumulative_individuals"], x["band"]) == (SELLER, 210_000, "contract")
    by_order = {t["dataset"]: t for t in rep["transfers"] if t["destination"] != "macao-firm"}
    assert by_order["ds150"]["evidence"] == {"pia": "PIA-2025-NS-0007"}
    assert by_order["imp"]["evidence"] == {"approval": "SA-2025-000311"}
    assert by_order["imp"]["individuals_added"] == 0
    assert by_order["ds60"]["route"] == "certification"
    assert {r["rule"] for r in rep["refusals"]} >= {"offer_not_cross_border", "core_data"}
    # each refusal is dated by the exchange's day of the step (the orders of 1 April)
    assert {r["decided_on"] for r in rep["refusals"] if r["stage"] == "order"} == {f"{Y}-04-01"}
    assert rep["policies"] == [ex.crossborder_policy.sha256]
    files = write_crossborder_report(ex, Y, tmp_path / "out")
    names = {f.name for f in files}
    assert {"cross-border-2025.html", "cross-border-2025-transfers.parquet",
            "cross-border-2025-transfers.csv"} <= names  # fmt: skip
    from exchange.crossborder.report import crossborder_csv

    refused = [r for r in crossborder_csv(rep).splitlines() if r.startswith("refusal,")]
    assert any(f",{Y}-04-01,," in r and "offer_not_cross_border" in r for r in refused)
    html = (tmp_path / "out" / "cross-border-2025.html").read_text(encoding="utf-8")
    assert "PIA-2025-NS-0007" in html and "offer_not_cross_border" in html
    assert crossborder_report(ex, Y + 1)["exporters"][0]["cumulative_individuals"] == 100_000


def test_a_ciio_exporter_needs_an_assessment(tmp_path):
    ex = _world(tmp_path)
    trade.register_enterprise(
        ex, Actor.for_org(SELLER), SELLER, credit_code_=credit_code.make("440115", "MA5ATKT1"),
        legal_name="南沙局", in_nansha=True, ciio=True,
    )  # fmt: skip
    o = _order(ex, _offer(ex, "ds40"), "hk-firm", date(Y, 2, 2))
    assert (o["cross_border"]["route"], o["cross_border"]["rule"]) == (
        "security_assessment", "ciio_personal_information",
    )  # fmt: skip
    with pytest.raises(InvalidRequest) as e:
        trade.register_enterprise(
            ex, Actor.for_org("hk-firm"), "hk-firm",
            credit_code_=credit_code.make("440115", "MA50XKT1"), legal_name="x", region="mars",
        )  # fmt: skip
    assert e.value.fields["field"] == "region"


def test_individuals_are_counted_at_ingest(tmp_path):
    from catalogue.publishing import publish_dataset
    from catalogue.registry import Catalogue
    from ingest.spec import parse_specs
    from ingest.storage.local import LocalStore

    csv = tmp_path / "rides.csv"
    rows = ["粤A12345,13812345678", "粤A12345,13812345679", "粤B99999,13812345678",
            "粤 A12345,138-1234-5680", ",13812345678"]  # fmt: skip
    csv.write_text("plate,phone\n" + "\n".join(rows) + "\n", encoding="utf-8")
    (spec,) = parse_specs(
        f"""datasets:
  - id: rides
    title: 网约车
    domain: transport
    organization: bureau
    access: restricted
    grade: general
    sensitive_pi: true
    source: {{path: {csv}, format: csv}}
    schema:
      - {{name: plate, type: string, pii: plate}}
      - {{name: phone, type: string, pii: phone, pii_treatment: keep}}
""",
        base_dir=tmp_path,
    )
    cat, store = Catalogue(f"sqlite:///{tmp_path / 'c.db'}"), LocalStore(tmp_path / "o")
    r = publish_dataset(cat, store, spec, pii_key=b"k", reports_dir=tmp_path / "reports")
    # plates: 粤A12345 (written twice alike, once with a space) and 粤B99999 -> 2;
    # phones: 13812345678, ...679, ...680 -> 3; a table's count is the sum of its columns
    assert r.manifest["tables"][0]["individuals"] == {"plate": 2, "phone": 3}
    assert r.manifest["personal_information"] == {"has_pi": True, "sensitive": True,
                                                  "individuals": 5}  # fmt: skip
    assert cat.current("rides").individuals == 5
    from sqlalchemy import select

    from catalogue.models import Dataset

    with cat.Session() as s:
        ds = s.scalar(select(Dataset).where(Dataset.name == "rides"))
        assert (ds.grade, ds.has_pi, ds.sensitive_pi) == ("general", True, True)


def test_a_grade_outside_the_scale_names_its_line(tmp_path):
    from ingest.errors import ConfigError
    from ingest.spec import parse_specs

    with pytest.raises(ConfigError) as e:
        parse_specs(
            """datasets:
  - id: rides
    title: t
    domain: transport
    organization: bureau
    grade: secret
    source: {path: x.csv, format: csv}
""",
            base_dir=tmp_path,
        )
    assert "grade: 'secret' is not one of general, important, core" in str(e.value)
    assert "line 6" in str(e.value) or e.value.fields.get("line") == 6


def test_individual_counter_matches_distinct_tokens_across_chunks():
    import numpy as np
    import pyarrow as pa

    from validation.pii import IndividualCounter, mask_batch

    rng = np.random.default_rng(7)
    cols = {"phone": ("phone", "hmac"), "plate": ("plate", "keep"), "addr": ("address", "hmac")}
    counter = IndividualCounter(cols, b"k")
    phones, plates = set(), set()
    for _ in range(40):  # more chunks than the compaction interval
        p = [f"138{x:08d}" if x % 11 else None for x in rng.integers(0, 5000, 300)]
        q = [f"粤A{x:05d}" for x in rng.integers(0, 800, 300)]
        phones |= {x for x in p if x}
        plates |= set(q)
        t = pa.table({"phone": p, "plate": q, "addr": ["南沙"] * 300})
        counter.add(mask_batch(t, cols, b"k"))
    # addresses do not single a person out: not counted
    assert counter.counts() == {"phone": len(phones), "plate": len(plates)}
    assert counter.total() == len(phones) + len(plates)


def test_the_cli_shows_regions_grades_and_each_orders_route(nsdx_env):
    """What a person reads in the CLI: where each enterprise is registered and whether it is
    a CIIO, a dataset's grade and personal information, and the route an order took with
    the evidence its grant needs (the facts are the same as the --json ones)."""
    from tests.conftest import run_cli

    run_cli("exchange", "demo", env=nsdx_env)  # not ingested: no individuals counted yet
    ents = run_cli("exchange", "enterprise", "list", env=nsdx_env).stdout
    row = next(line for line in ents.splitlines() if "hk-harbour-analytics" in line)
    assert "hong-kong" in row and row.rstrip("│ ").endswith("no")  # region, not a CIIO
    assert "mainland 440115" in next(x for x in ents.splitlines() if "lingang-insight" in x)
    shown = run_cli("datasets", "show", "nansha-ride-hailing-orders", env=nsdx_env).stdout
    assert "grade: general   personal information: yes, sensitive (individuals not counted" in shown
    offers = json.loads(run_cli("exchange", "offers", "--json", env=nsdx_env).stdout)
    (offer,) = [o["id"] for o in offers
                if o["cross_border"] and o["dataset"] == "nansha-ride-hailing-orders"]  # fmt: skip
    out = run_cli("exchange", "order", offer, "--buyer", "hk-harbour-analytics",
                  "--as", "hk-harbour-analytics", env=nsdx_env).stdout  # fmt: skip
    oid = re.search(r"order ([0-9a-f-]{36}):", out).group(1)
    assert "cross-border: security_assessment (rule pi_count_unknown, policy " in out
    assert f"record its approval reference: `nsdx exchange evidence {oid} --kind approval" in out


def test_the_dataset_page_shows_its_grade_and_counted_individuals(tmp_path, nsdx_env):
    """The portal's dataset page: the GB/T 43697 grade and the personal information, with
    the individuals nsdx counted at ingest (Chinese by default, English one click away)."""
    from fastapi.testclient import TestClient

    from catalogue.search import drop_indexes
    from nsdx.web.app import create_app
    from tests.test_ckan_api import make_nsdx

    (tmp_path / "rides.csv").write_text(
        "plate,phone\n粤A12345,13812345678\n粤A12345,13812345679\n粤B99999,13812345678\n",
        encoding="utf-8",
    )
    (tmp_path / "datasets.yaml").write_text(
        """datasets:
  - id: rides
    title: 网约车订单
    domain: transport
    organization: bureau
    grade: important
    sensitive_pi: true
    source: {path: rides.csv, format: csv}
    schema:
      - {name: plate, type: string, pii: plate}
      - {name: phone, type: string, pii: phone}
""",
        encoding="utf-8",
    )
    nx = make_nsdx(tmp_path, f"sqlite:///{tmp_path / 'nsdx.db'}")
    assert nx.ingest(["rides"])[0].status == "published"
    try:
        with TestClient(create_app(nx, warm=False, worker=False)) as c:
            page = c.get("/dataset/rides", headers={"accept": "text/html"}).text
            grade = re.search(r'<tr id="grade">.*?</tr>', page, re.S).group(0)
            pi = re.search(r'<tr id="personal-information">.*?</tr>', page, re.S).group(0)
            assert "重要数据" in grade and "GB/T 43697-2024" in grade
            # two plates and two phone numbers: 4 individuals, from the masked tokens
            assert "含敏感个人信息" in pi and "入库时统计涉及 4 人" in pi
            c.get("/lang/en?next=/")
            page = c.get("/dataset/rides", headers={"accept": "text/html"}).text
            assert "important" in re.search(r'<tr id="grade">.*?</tr>', page, re.S).group(0)
            assert "4 individuals, counted at ingest" in page
    finally:
        drop_indexes()
