"""The rewards page's cached figures are re-checked against the ledger rows on every view:
rows edited after the summary was cached are reported on the next view (in the official's
language), never hidden behind the cache."""

from __future__ import annotations

import threading
import time

import pytest
from fastapi.testclient import TestClient

from catalogue.auth import Accounts
from catalogue.search import drop_indexes
from catalogue.signin import set_password
from exchange.demo import run_demo
from nsdx.web import audit
from nsdx.web.app import create_app
from tests.test_audit_state import _tamper
from tests.test_ckan_api import make_nsdx
from tests.test_portal_pages import HTML, PASSWORD, login


@pytest.fixture
def site(tmp_path, nsdx_env):
    (tmp_path / "home").mkdir(exist_ok=True)
    nx = make_nsdx(tmp_path, f"sqlite:///{tmp_path / 'home' / 'nsdx.db'}")
    demo = run_demo(nx.exchange)
    acc = Accounts(nx.catalogue)
    acc.create_user("official", auditor=True)
    set_password(acc, "official", PASSWORD)
    with TestClient(create_app(nx, warm=False, worker=False)) as c:
        c.headers.update(HTML)
        c.home, c.year = tmp_path / "home", demo["year"]
        yield c
    drop_indexes()


def ready(site, url: str, timeout: float = 120):
    """The rewards page once its figures are computed (it says so meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        r = site.get(url)
        if 'id="computing"' not in r.text or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def test_a_new_checkpoint_is_computed_in_the_background_not_on_the_request(site):
    login(site, "official")
    release = threading.Event()
    audit._pool.submit(release.wait, 60)  # the summary job waits behind this one
    try:
        url = f"/audit/rewards?year={site.year}"
        r = site.get(url)
        assert r.status_code == 200 and 'id="computing"' in r.text
        assert '<meta http-equiv="refresh" content="2">' in r.text and "正在" in r.text
        assert 'id="capped-total"' not in r.text
    finally:
        release.set()
    r = ready(site, url)
    assert r.status_code == 200 and 'id="capped-total"' in r.text


def test_rows_tampered_after_caching_are_reported_on_the_next_view(site):
    login(site, "official")
    url = f"/audit/rewards?year={site.year}"
    first = ready(site, url)
    assert first.status_code == 200 and 'id="capped-total"' in first.text
    cached = [k for k in audit._cache if k[0] == "summary" and k[4] == site.year]
    assert cached  # the figures are cached for this checkpoint
    assert site.get(url).text.count('id="capped-total"') == 1  # served from the cache
    _tamper(site.home, rehash=True)  # a careful forger: leaf hashes rewritten too
    r = site.get(url)  # the very next view, however large the ledger
    assert r.status_code == 500 and 'id="capped-total"' not in r.text
    assert "在这些数字计算完成后被改动" in r.text
    r = ready(site, url)  # then the fresh computation, checked against the signed root
    assert r.status_code == 500 and 'id="capped-total"' not in r.text
    assert "账本在签名后被修改：不显示任何数字。" in r.text
    assert "的哈希与检查点" in r.text and "由其计算出的任何数字都不可信" in r.text
    site.cookies.set("nsdx_lang", "en")
    r = ready(site, url)
    assert r.status_code == 500 and "do not hash to the root signed in checkpoint" in r.text


@pytest.mark.parametrize("rehash", [False, True])
def test_a_verification_after_a_verified_entry_was_edited_fails(site, rehash):
    """The portal's verification resumes from the last one (only new entries are hashed)
    but re-checks the verified rows: an edit after a successful verification is caught."""
    tok = login(site, "official")
    for _ in range(2):  # the second resumes from the first
        r = site.post("/audit/verify", data={"csrftoken": tok})
        assert r.status_code == 200 and "账本验证通过" in r.text
    _tamper(site.home, rehash=rehash)
    r = site.post("/audit/verify", data={"csrftoken": tok})
    assert r.status_code == 200 and "验证失败" in r.text and "账本验证通过" not in r.text


def test_the_dashboard_verifies_in_the_background_and_the_officials_check_resumes(
    site, monkeypatch
):
    """The first verification of a process (every entry hashed) starts when an official
    opens the dashboard; it keeps nothing on disk, and the official's own check resumes from
    it (rows edited since are still refused: the test above)."""
    from exchange.ledger import verify as V

    ex = site.app.state.nsdx.exchange
    key = ex.signer.verifier_key
    tok = login(site, "official")
    assert not V.remembered(ex.ledger, key)
    assert site.get("/audit").status_code == 200
    audit._pool.submit(lambda: None).result(timeout=120)  # the queued jobs are done
    assert V.remembered(ex.ledger, key)
    kept = site.home / "audit" / "portal"
    assert not kept.exists() or not any(kept.iterdir())  # nothing kept for the official
    starts: list = []
    real = V.verify_ledger
    monkeypatch.setattr(V, "verify_ledger", lambda *a, **kw: starts.append(kw) or real(*a, **kw))
    r = site.post("/audit/verify", data={"csrftoken": tok})
    assert r.status_code == 200 and "账本验证通过" in r.text
    assert starts[0]["resume"] is not None  # resumed from the background verification
    assert any(kept.iterdir())  # the official's own check keeps the checkpoint
