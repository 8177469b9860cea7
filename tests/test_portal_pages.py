"""Portal pages over HTTP (no browser): the officials' pages are read-only and refused to
others, bad input on the provider's and the official's forms, the upload cap."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from catalogue.auth import Accounts
from catalogue.search import drop_indexes
from catalogue.signin import set_password
from exchange.demo import run_demo
from nsdx.web.app import create_app
from tests.test_ckan_api import make_nsdx

HTML = {"accept": "text/html"}
PASSWORD = "correct horse battery"


@pytest.fixture
def site(tmp_path, nsdx_env):
    nx = make_nsdx(tmp_path, f"sqlite:///{tmp_path / 'nsdx.db'}")
    demo = run_demo(nx.exchange)
    acc = Accounts(nx.catalogue)
    for name, kw in (("official", {"auditor": True}), ("alice", {})):
        acc.create_user(name, **kw)
        set_password(acc, name, PASSWORD)
    acc.add_member("nansha-transport-bureau", "alice", "editor")
    with TestClient(create_app(nx, warm=False, worker=False)) as c:
        c.headers.update(HTML)
        c.nx, c.year = nx, demo["year"]
        yield c
    drop_indexes()


def login(c, name):
    tok = re.search(r'name="csrftoken" value="([^"]+)"', c.get("/user/login").text).group(1)
    r = c.post("/user/login", data={"csrftoken": tok, "name": name, "password": PASSWORD})
    assert r.status_code == 200
    return tok


def test_audit_pages_are_for_officials_and_write_nothing(site):
    ledger = site.nx.exchange.ledger
    before = (ledger.head_size(), len(ledger.checkpoints()))
    assert site.get("/audit", follow_redirects=False).status_code == 303  # sign in first
    login(site, "alice")
    for path in ("/audit", "/audit/transactions", f"/audit/rewards?year={site.year}",
                 "/audit/entry/0", f"/audit/report/exchange-{site.year}.html"):  # fmt: skip
        r = site.get(path)
        assert r.status_code == 403 and "仅限监管人员" in r.text, path
    site.cookies.clear()
    tok = login(site, "official")
    for path in ("/audit", "/audit/transactions?kind=order.placed&page=2",
                 f"/audit/rewards?year={site.year}&only=excluded", "/audit/entry/3"):  # fmt: skip
        assert site.get(path).status_code == 200, path
    r = site.get(f"/audit/report/exchange-{site.year}-transactions.parquet")
    assert r.status_code == 200 and r.content[:4] == b"PAR1"
    assert site.get("/audit/report/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert site.get("/audit/report/exchange-1999.html").status_code == 404
    r = site.post("/audit/verify", data={"csrftoken": tok})
    assert r.status_code == 200 and "账本验证通过" in r.text
    assert (ledger.head_size(), len(ledger.checkpoints())) == before  # read-only


def test_official_bad_input_is_explained(site):
    tok = login(site, "official")
    r = site.get("/audit/transactions?since=31-03-2026&kind=no.such")
    assert r.status_code == 422
    assert "请填写日期，例如 2026-03-31。" in r.text and "请从列表中选择类型。" in r.text
    assert site.get("/audit/entry/999999").status_code == 404
    big = b"x" * (64 * 1024 + 1)
    r = site.post(
        "/audit/verify",
        data={"csrftoken": tok},
        files={"checkpoint_file": ("cp.txt", big, "text/plain")},
    )
    assert r.status_code == 422 and "检查点文件过大" in r.text
    # a kept checkpoint that is not a signed note fails the check, named as such
    r = site.post("/audit/verify", data={"csrftoken": tok, "checkpoint": "not a checkpoint"})
    assert r.status_code == 200 and "验证失败" in r.text


def test_upload_over_the_cap_is_refused_and_nothing_is_left(site, monkeypatch):
    monkeypatch.setenv("NSDX_UPLOAD_MAX_BYTES", str(1 << 20))
    tok = login(site, "alice")
    r = site.post(
        "/my/datasets/new",
        data={"csrftoken": tok, "name": "ferry", "title": "渡轮", "owner_org":
              "nansha-transport-bureau", "license_id": "CC0-1.0", "access": "open"},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303
    uploads = site.nx.settings.home / "uploads"
    r = site.post(
        "/dataset/ferry/upload",
        data={"csrftoken": tok},
        files={"upload": ("big.csv", b"a,b\n" + b"1,2\n" * 400_000, "text/csv")},
    )  # 1.6 MB: streamed, refused past the API's cap
    assert r.status_code == 413 and "文件超过 1 MB" in r.text
    assert not uploads.exists() or not any(uploads.rglob("*.csv"))
    # a file the pipeline cannot read: refused with the reason, its copy removed
    r = site.post(
        "/dataset/ferry/upload",
        data={"csrftoken": tok},
        files={"upload": ("x.bin", b"\x00\x01", "application/octet-stream")},
    )
    assert r.status_code in (409, 422) and "x.bin" in r.text
    assert not uploads.exists() or not any(p.is_file() for p in uploads.rglob("*"))
    # someone else's dataset: the API's rule refuses it
    site.cookies.clear()
    tok = login(site, "official")
    r = site.post(
        "/dataset/ferry/upload",
        data={"csrftoken": tok},
        files={"upload": ("a.csv", b"a,b\n1,2\n", "text/csv")},
    )
    assert r.status_code == 403


def test_cross_border_page_for_officials_in_chinese_and_english(site):
    ledger = site.nx.exchange.ledger
    before = (ledger.head_size(), len(ledger.checkpoints()))
    login(site, "alice")
    assert site.get(f"/audit/cross-border?year={site.year}").status_code == 403
    # alice, of the seller, sees the Hong Kong order's route and evidence on its page
    from exchange.crossborder.report import crossborder_report

    (hk,) = [t for t in crossborder_report(site.nx.exchange, site.year)["transfers"]
             if t["destination"] == "hk-harbour-analytics"]  # fmt: skip
    r = site.get(f"/my/orders/{hk['order']}")
    assert r.status_code == 200 and 'id="cross-border"' in r.text
    assert all(ref in r.text for ref in hk["evidence"].values())
    site.cookies.clear()
    login(site, "official")
    r = site.get(f"/audit/cross-border?year={site.year}")
    assert r.status_code == 200
    # the demo: the Hong Kong buyer's transfer, the overseas buyer refused core data
    assert "hk-harbour-analytics" in r.text and "核心数据不得出境" in r.text
    rep = crossborder_report(site.nx.exchange, site.year)
    refs = [v for t in rep["transfers"] for v in t["evidence"].values()]
    assert refs and all(ref in r.text for ref in refs)  # the evidence references are shown
    site.cookies.set("nsdx_lang", "en")
    r = site.get(f"/audit/cross-border?year={site.year}")
    assert "Cross-border data transfers" in r.text and "core_data" in r.text
    r = site.get(f"/audit/cross-border/cross-border-{site.year}-transfers.parquet")
    assert r.status_code == 200 and r.content[:4] == b"PAR1"
    assert site.get("/audit/cross-border/..%2Fetc%2Fpasswd").status_code == 404
    assert (ledger.head_size(), len(ledger.checkpoints())) == before  # read-only
