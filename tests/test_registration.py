"""Application scenarios and data-resource registration: the whole flow with its ledger
events, every refusal of an offer (no scenario, not registered, under review, under notice,
objected, rejected, cancelled), change registrations keeping the code, the certificate's
proof checked with the independent verifier of docs/ledger.md, the PDF, and the CLI."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from catalogue.models import Dataset
from catalogue.scenarios import ScenarioError, ScenarioSpec, load_file, save_scenarios
from exchange import certificates, trade
from exchange import registration as reg
from exchange.actors import Actor
from exchange.errors import InvalidRequest, InvalidState, NotAllowed
from exchange.ledger.canonical import canonical_json
from exchange.registration import NotRegistered
from tests.conftest import run_cli
from tests.test_exchange_trade import SELLER, make_world

ROOT = Path(__file__).resolve().parents[1]
REVIEWER = Actor(name="reviewer-wang", reviewer=True)
OP = Actor.operator()  # the operator reads the whole register
PROVIDER = Actor.for_org(SELLER)
STATEMENT = dict(compliance_statement="已脱敏 (masked)", legality_pledge="来源合法 (lawful)")


def _verifier():
    """The standard-library verifier printed in docs/ledger.md, run as written there."""
    text = (ROOT / "docs" / "ledger.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(#!/usr/bin/env python3\n.*?)```", text, re.S).group(1)
    ns: dict = {"__name__": "check_proof"}
    exec(compile(code, "check_proof.py", "exec"), ns)  # noqa: S102 - the documented script
    return ns["verify"]


def _add_ds3(ex) -> None:
    with ex.catalogue.Session.begin() as s:
        org = ex.catalogue.ensure_organization(s, SELLER)
        s.add(Dataset(name="ds3", title="南沙测试数据", title_en="Nansha test data",
                      domain="transport", access="restricted", organization=org, extras={},
                      price_fen=100_00))  # fmt: skip


@pytest.fixture
def world(database_url, tmp_path):
    ex = make_world(database_url, tmp_path)
    _add_ds3(ex)
    return ex


def _refused(ex, missing: str, words: str) -> None:
    with pytest.raises(NotRegistered, match=words) as e:
        trade.create_offer(ex, PROVIDER, "ds3")
    assert e.value.fields["missing"] == missing and e.value.status == 409


def test_whole_flow_every_refusal_and_the_certificate(world):
    ex = world
    today = ex.today()
    _refused(ex, "scenario", "no application scenario uses it and it is not registered")
    save_scenarios(ex.catalogue, [ScenarioSpec(
        name="ns-signal", title="信号优化", title_en="Signal timing", sector="traffic-signal",
        proposer="交通运输局", datasets=[("ds3", None)],
        query="SELECT 1 AS x", evaluation={"metric": "MAE", "split_query": "SELECT 2 AS y"},
    )])  # fmt: skip
    _refused(ex, "registration", "it is not registered")
    with pytest.raises(InvalidRequest, match="needs a compliance statement"):
        reg.apply(ex, PROVIDER, "ds3", scenario="ns-signal", legality_pledge="x")
    with pytest.raises(InvalidRequest, match="does not use dataset 'ds3'"):
        reg.apply(ex, PROVIDER, "ds3", scenario="scenario-ds1", **STATEMENT)
    with pytest.raises(NotAllowed):  # only the holder's admins and editors apply
        reg.apply(ex, Actor.for_org("firm"), "ds3", scenario="ns-signal", **STATEMENT)
    a = reg.apply(ex, PROVIDER, "ds3", scenario="ns-signal", **STATEMENT)
    assert a["status"] == "applied" and a["receipt"]["entry"]["type"] == "registration.applied"
    _refused(ex, "review", "awaits review")
    with pytest.raises(NotAllowed, match="only a registration reviewer"):
        reg.review(ex, PROVIDER, a["id"], approve=True)
    r = reg.review(ex, REVIEWER, a["id"], approve=True)
    # a notice of N days, today included: its last day is today + N - 1
    end = today + timedelta(days=ex.rules.registration_notice_days - 1)
    assert r["status"] == "notice" and r["notice_end"] == end.isoformat()
    _refused(ex, "notice", f"under public notice until {end}")
    with pytest.raises(InvalidState, match=f"under public notice until {end}"):
        reg.issue(ex, REVIEWER, a["id"])  # no code before the notice ends
    with pytest.raises(InvalidState, match=f"under public notice until {end}") as e:
        reg.issue(ex.on_day(end), REVIEWER, a["id"])  # nor on its last day (finding 7)
    assert f"from {end + timedelta(days=1)} on" in (e.value.hint or "")
    o = reg.lodge_objection(ex.on_day(end), Actor.for_org("rival"), a["id"],
                            reason="数据来源存疑")  # on the last day: still in time  # fmt: skip
    assert o["status"] == "objected"
    with pytest.raises(InvalidState, match="already has an open objection") as e:  # finding 9
        reg.lodge_objection(ex, Actor.for_org("rival"), a["id"], reason="再次异议")
    assert e.value.status == 409 and "one open objection per account" in (e.value.hint or "")
    with pytest.raises(NotAllowed, match="needs an account"):
        reg.lodge_objection(ex, Actor("anonymous", anonymous=True), a["id"], reason="匿名")
    _refused(ex, "objection", "objection to its registration .* is open")
    later = ex.on_day(end + timedelta(days=1))
    with pytest.raises(InvalidState, match="has an open objection"):
        reg.issue(later, REVIEWER, a["id"])
    oid = o["objections"][0]["id"]
    d = reg.resolve_objection(ex, REVIEWER, oid, uphold=False, resolution="来源证明已核实")
    assert d["status"] == "notice"
    with pytest.raises(InvalidState, match="ended on"):  # objections only during the notice
        reg.lodge_objection(ex.on_day(end + timedelta(days=1)), Actor.for_org("rival"),
                            a["id"], reason="late")  # fmt: skip
    issued = reg.issue(later, REVIEWER, a["id"])
    code = issued["code"]
    assert re.fullmatch(rf"NSDR-{end.year}-\d{{6}}", code) and issued["status"] == "registered"
    assert issued["registered_on"] == (end + timedelta(days=1)).isoformat()
    offer = trade.create_offer(ex, PROVIDER, "ds3")
    assert offer["status"] == "open"
    # every step is a ledger event
    kinds = [e["type"] for e in ex.ledger.events(ex.ledger.head_size())]
    assert [k for k in kinds if k.startswith("registration.")][-5:] == [
        "registration.applied", "registration.reviewed", "registration.objection",
        "registration.objection_resolved", "registration.issued"]  # fmt: skip
    assert kinds[-1] == "offer.created"
    shown = reg.show(ex, code, actor=OP, full=True)
    assert set(shown["ledger"]) >= {"applied", "reviewed", "issued"}
    assert shown["objections"][0]["lodged_by"] == "rival:admin"

    # the certificate: its proof checks with the independent verifier of docs/ledger.md
    c = certificates.certificate(ex, code, actor=OP, base_url="https://data.nansha.example")
    assert c["verify_url"] == f"https://data.nansha.example/registration/{code}"
    assert c["ledger_index"] == shown["ledger"]["issued"] == issued["ledger_index"]
    entry = json.loads(c["entry"])
    assert entry["type"] == "registration.issued" and entry["code"] == code
    assert c["entry"].encode() == canonical_json(entry)
    _verifier()(c["proof"], c["entry"].encode())
    with pytest.raises(SystemExit, match="do not match the leaf hash"):
        _verifier()(c["proof"], c["entry"].replace(code, "NSDR-0000-000000").encode())
    html = certificates.render_html(c)
    assert code in html and "南沙测试数据" in html and "<svg" in html
    assert c["proof"]["checkpoint"].split("\n")[0] in html


def test_the_pdf_certificate_holds_the_code_the_holder_and_the_url(tmp_path):
    pypdf = pytest.importorskip("pypdf", reason="pypdf reads the PDF back (dev dependency)")
    ex = make_world(f"sqlite:///{tmp_path / 'n.db'}", tmp_path)
    code = reg.list_registrations(ex, actor=OP, dataset="ds1")[0][
        "code"
    ]  # registered by make_world
    c = certificates.certificate(ex, code, actor=OP, base_url="http://127.0.0.1:8000")
    pdf = certificates.render_pdf(c)
    assert pdf.startswith(b"%PDF-")
    text = "".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)
    assert code in text and "数据资源登记证书" in text
    assert f"http://127.0.0.1:8000/registration/{code}" in text
    assert c["proof"]["root"] in text and str(c["ledger_index"]) in text


def test_change_keeps_the_code_and_cancellation_ends_it(tmp_path):
    ex = make_world(f"sqlite:///{tmp_path / 'n.db'}", tmp_path)
    first = reg.list_registrations(ex, actor=OP, dataset="ds1")[0]
    code, days = first["code"], ex.rules.registration_notice_days
    with pytest.raises(InvalidState, match="already registered"):
        reg.apply(ex, PROVIDER, "ds1", scenario="scenario-ds1", **STATEMENT)
    with pytest.raises(InvalidRequest, match="needs a reason"):
        reg.apply(ex, PROVIDER, "ds1", scenario="scenario-ds1", kind="change", **STATEMENT)
    ch = reg.apply(ex, PROVIDER, "ds1", scenario="scenario-ds1", kind="change",
                   reason="新增字段 (a new column)", **STATEMENT)  # fmt: skip
    assert ch["code"] == code and ch["revision"] == 1
    offer = trade.create_offer(ex, PROVIDER, "ds1", price="10")  # registered during the change
    reg.review(ex, REVIEWER, ch["id"], approve=True)
    new = reg.issue(ex.on_day(ex.today() + timedelta(days=days)), REVIEWER, ch["id"])
    assert new["code"] == code and new["revision"] == 1 and new["status"] == "registered"
    assert reg.show(ex, first["id"], actor=OP)["status"] == "superseded"
    assert [h["status"] for h in reg.show(ex, code, actor=OP)["history"]] == [
        "superseded",
        "registered",
    ]
    cx = reg.apply(ex, PROVIDER, "ds1", kind="cancellation", reason="停止供数 (no longer supplied)")
    reg.review(ex, REVIEWER, cx["id"], approve=True)
    reg.issue(ex.on_day(ex.today() + timedelta(days=days)), REVIEWER, cx["id"])
    with pytest.raises(NotRegistered, match=f"its registration {code} was cancelled") as e:
        trade.create_offer(ex, PROVIDER, "ds1", price="10")
    assert e.value.fields["missing"] == "cancelled"
    with pytest.raises(NotRegistered, match="was cancelled"):  # its open offer sells no more
        trade.place_order(ex, Actor.for_org("firm", "member"), offer["id"], buyer="firm")
    c = certificates.certificate(ex, code, actor=OP)
    assert c["status"] == "cancelled" and c["kind"] == "cancellation"


def test_an_upheld_objection_rejects_and_rejection_needs_a_note(tmp_path):
    ex = make_world(f"sqlite:///{tmp_path / 'n.db'}", tmp_path)
    _add_ds3(ex)
    save_scenarios(ex.catalogue, [ScenarioSpec(name="ns-x", title="场景", title_en="X",
                   sector="other", proposer="p", datasets=[("ds3", None)])])  # fmt: skip
    a = reg.apply(ex, PROVIDER, "ds3", scenario="ns-x", **STATEMENT)
    with pytest.raises(InvalidRequest, match="needs a note"):
        reg.review(ex, REVIEWER, a["id"], approve=False)
    with pytest.raises(NotAllowed, match="auditors cannot"):
        reg.review(ex, Actor.auditor_(), a["id"], approve=True)
    reg.review(ex, REVIEWER, a["id"], approve=True, note="材料齐全 (complete)")
    o = reg.lodge_objection(ex, Actor.for_org("rival"), a["id"], reason="侵犯我方数据权益")
    d = reg.resolve_objection(ex, REVIEWER, o["objections"][0]["id"], uphold=True,
                              resolution="异议成立 (upheld)")  # fmt: skip
    assert d["status"] == "rejected"
    # the refusal says why: the upheld objection's resolution, not the approval's note
    _refused(ex, "registration", r"was rejected: an objection was upheld \(异议成立 \(upheld\)\)")
    a2 = reg.apply(ex, PROVIDER, "ds3", scenario="ns-x", **STATEMENT)  # may apply again
    assert a2["status"] == "applied"


def test_a_reviewer_does_not_decide_on_their_own_organisations_application(tmp_path):
    """Review finding 8: a reviewer who is a member of the holder, or who filed the
    application, may not review it, resolve its objections or issue its code."""
    ex = make_world(f"sqlite:///{tmp_path / 'n.db'}", tmp_path)
    _add_ds3(ex)
    save_scenarios(ex.catalogue, [ScenarioSpec(name="ns-y", title="场景", title_en="Y",
                   sector="other", proposer="p", datasets=[("ds3", None)])])  # fmt: skip
    insider = Actor(name="rev-insider", roles={SELLER: "member"}, reviewer=True)
    a = reg.apply(ex, PROVIDER, "ds3", scenario="ns-y", **STATEMENT)
    with pytest.raises(NotAllowed, match=f"member of the holder '{SELLER}'") as e:
        reg.review(ex, insider, a["id"], approve=True)
    assert e.value.status == 403 and "another reviewer" in (e.value.hint or "")
    r = reg.review(ex, REVIEWER, a["id"], approve=True)
    o = reg.lodge_objection(ex, Actor.for_org("rival"), a["id"], reason="异议")
    with pytest.raises(NotAllowed, match="member of the holder"):
        reg.resolve_objection(ex, insider, o["objections"][0]["id"], uphold=False,
                              resolution="驳回")  # fmt: skip
    reg.resolve_objection(ex, REVIEWER, o["objections"][0]["id"], uphold=False, resolution="驳回")
    after = ex.on_day(date.fromisoformat(r["notice_end"]) + timedelta(days=1))
    with pytest.raises(NotAllowed, match="member of the holder"):
        reg.issue(after, insider, a["id"])
    assert reg.issue(after, REVIEWER, a["id"])["status"] == "registered"
    # the operator who filed an application does not approve it either
    op = Actor.operator("op-chen")
    cx = reg.apply(ex, op, "ds3", kind="cancellation", reason="停止供数")
    with pytest.raises(NotAllowed, match="they filed the application"):
        reg.review(ex, op, cx["id"], approve=True)


def test_scenario_file_errors_name_the_line(tmp_path):
    bad = tmp_path / "scenarios.yaml"
    bad.write_text(
        "scenarios:\n"
        "  - {name: ok-one, title: 甲, title_en: A, sector: other, proposer: p, datasets: [x]}\n"
        "  - name: bad-one\n    title: 乙\n    title_en: B\n    sector: weather\n"
        "    proposer: p\n    datasets: [x]\n",
        encoding="utf-8",
    )
    with pytest.raises(ScenarioError, match=r"scenarios.yaml:3 \(bad-one\): unknown sector"):
        load_file(bad)
    bad.write_text("scenarios:\n  - {name: qq, title: 甲, title_en: A, sector: other, "
                   "proposer: p, datasets: [x], query: 'DELETE FROM t'}\n")  # fmt: skip
    with pytest.raises(ScenarioError, match=r"scenarios.yaml:2 \(qq\) query: .*SELECT"):
        load_file(bad)


def test_the_repository_scenarios_load(tmp_path):
    specs = load_file(ROOT / "scenarios.yaml")
    assert len(specs) >= 3
    assert {s.sector for s in specs} >= {"traffic-signal", "bus-arrival", "low-altitude",
                                          "city-management"}  # fmt: skip
    assert all(s.query and s.evaluation.get("split_query") for s in specs)
    assert all(s.title and s.title_en and s.description and s.description_en for s in specs)


def test_cli_flow_with_a_zero_day_notice(nsdx_env, tmp_path):
    """The CLI end to end: scenario load, apply, review, issue (a policy with no notice
    period), the offer, the certificate files, and the proof checked as docs/ledger.md says."""
    env = dict(nsdx_env)
    policy = tmp_path / "trade.yaml"
    policy.write_text("registration_notice_days: 0\n")
    env["NSDX_TRADE_POLICY"] = str(policy)
    run_cli("exchange", "demo", env=env)  # firms, products, scenarios, registrations
    regs = json.loads(run_cli("registration", "list", "--json", env=env).stdout)
    assert len(regs) == 6 and {r["status"] for r in regs} == {"registered"}
    sc = json.loads(run_cli("scenario", "list", "--json", env=env).stdout)
    assert {"nansha-travel-demand", "nansha-low-altitude-safety"} <= {s["name"] for s in sc}
    bad = run_cli("registration", "review", regs[0]["id"], "--approve",
                  "--as", "nansha-drone-operator", env=env, check=False)  # fmt: skip
    assert bad.returncode == 1 and "only a registration reviewer may" in bad.stderr
    run_cli("user", "create", "wang", "--reviewer", env=env)
    code = regs[0]["code"]
    cx = json.loads(run_cli("registration", "apply", regs[0]["dataset"], "--kind",
                            "cancellation", "--reason", "停止供数", "--as", regs[0]["holder"],
                            "--json", env=env).stdout)  # fmt: skip
    run_cli("registration", "review", cx["id"], "--approve", "--user", "wang", env=env)
    out = json.loads(run_cli("registration", "issue", cx["id"], "--user", "wang", "--json",
                             env=env).stdout)  # fmt: skip
    assert out["status"] == "cancelled" and out["code"] == code
    shown = run_cli("registration", "show", cx["id"], env=env).stdout
    assert "no notice period" in shown and "None" not in shown, shown
    assert f"registered {out['registered_on']}" in shown and "issued #" in shown, shown
    refused = run_cli("exchange", "offer", regs[0]["dataset"], "--as", regs[0]["holder"],
                      env=env, check=False)  # fmt: skip
    assert refused.returncode == 1 and f"its registration {code} was cancelled" in refused.stderr
    code2 = regs[1]["code"]
    run_cli("registration", "certificate", code2, "--out", str(tmp_path / "cert"), env=env)
    proof = json.loads((tmp_path / "cert" / f"{code2}.proof.json").read_text())
    entry = (tmp_path / "cert" / f"{code2}.entry.json").read_bytes()
    _verifier()(proof, entry)
    # ... and the proof file as a receipt, signature included, by the verifier run alone
    key = run_cli("audit", "pubkey", env=env).stdout.strip().splitlines()[-1]
    ok = subprocess.run(
        [sys.executable, "-I", "-S", str(ROOT / "nsdx" / "verify_receipt.py"),
         str(tmp_path / "cert" / f"{code2}.proof.json"), "--log-key", key],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0 and "(registration.issued)" in ok.stdout, ok.stderr
    assert (tmp_path / "cert" / f"{code2}.pdf").read_bytes().startswith(b"%PDF-")
    html = (tmp_path / "cert" / f"{code2}.html").read_text()
    assert code2 in html and "无 none" in html  # a zero-day notice has no period, not end < start


def test_scenario_check_refuses_a_pinned_version_the_views_no_longer_serve(nsdx_env, tmp_path):
    """A scenario's datasets carry versions; its query and held-out split run over the
    query views, which serve the current version: `nsdx scenario check` says when a pinned
    version is no longer the one served (the evaluation would run over other data)."""
    src = tmp_path / "counts.csv"
    src.write_text("detector,vehicles\nD1,10\nD2,12\n", encoding="utf-8")
    Path(nsdx_env["NSDX_DATASETS"]).write_text(
        f"""datasets:
  - id: counts
    title: 检测器流量
    domain: transport
    organization: bureau
    source: {{path: {src}, format: csv}}
""",
        encoding="utf-8",
    )
    scen = tmp_path / "scenarios.yaml"
    scen.write_text(
        """scenarios:
  - name: ns-counts
    title: 流量预测
    title_en: Volume forecasting
    sector: traffic-signal
    proposer: 交通运输局
    datasets: [counts@1]
    query: SELECT detector, sum(vehicles) AS v FROM transport.counts GROUP BY detector
""",
        encoding="utf-8",
    )
    run_cli("ingest", "counts", env=nsdx_env)
    run_cli("scenario", "load", str(scen), env=nsdx_env)
    ok = run_cli("scenario", "check", env=nsdx_env).stdout
    assert "✓ ns-counts query: 2 rows" in ok
    shown = json.loads(run_cli("scenario", "show", "ns-counts", "--json", env=nsdx_env).stdout)
    assert shown["datasets"] == [{"name": "counts", "version": 1}]
    src.write_text("detector,vehicles\nD1,10\nD2,12\nD3,7\n", encoding="utf-8")
    run_cli("ingest", "counts", env=nsdx_env)  # v2 is now the one the views serve
    bad = run_cli("scenario", "check", env=nsdx_env, check=False)
    assert bad.returncode == 1
    assert "✗ ns-counts dataset counts: the scenario pins v1, but the query views serve v2" in (
        bad.stderr
    )
