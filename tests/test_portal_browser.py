"""The portal's journeys in a real headless Chromium against a real `nsdx serve`, each
saving screenshots, each page checked with axe-core (no serious or critical violation).

axe-core comes from the npm registry, pinned in tests/axe/package.json and installed by
``scripts/install-axe.sh`` (``make test`` runs it); it is injected into each page through
the DevTools protocol. Without it the axe checks skip saying so (under CI they fail).

``NSDX_SCREENSHOTS=docs/screenshots`` writes the screenshots there (the README's pictures).
"""

from __future__ import annotations

import http.server
import json
import os
import re
import threading
import time
from datetime import date as _date
from pathlib import Path

import httpx
import pytest

from catalogue.auth import Accounts
from catalogue.search import drop_indexes
from catalogue.signin import set_password
from tests.test_browser import DATASETS_YAML, ORGS, _write_sources
from tests.test_ckan_api import make_nsdx
from tests.test_ckan_client import start_server
from validation.money import to_fen, yuan

pytestmark = pytest.mark.xdist_group("browser")

ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / "tests" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
PASSWORD = "correct horse battery"
SELLER, BUYER = "nansha-transport-bureau", "nansha-zhixing-ai"  # demo enterprises
RESTRICTED_YAML = """
  - id: nansha-taxi-trips
    title: 南沙出租车行程
    title_en: Nansha taxi trips
    domain: transport
    organization: nansha-transport-bureau
    access: restricted
    licence: CC-BY-4.0
    notes: 南沙出租车行程（演示用合成样本）。
    source: {path: taxi.csv, format: csv}
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory, chromium_path):
    """`nsdx serve` with three published datasets, the exchange demo's trades in the
    ledger, an official (auditor) and a member of an organisation, both with passwords."""
    root = tmp_path_factory.mktemp("portal-journeys")
    db = f"sqlite:///{root / 'nsdx.db'}"
    (root / "datasets.yaml").write_text(DATASETS_YAML + RESTRICTED_YAML, encoding="utf-8")
    (root / "taxi.csv").write_text(
        "trip_id,pickup,fare_cny\nT1,蕉门,23.5\nT2,黄阁,41.0\nT3,南沙客运港,18.0\n",
        encoding="utf-8",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NSDX_PII_KEY", "test-pii-key")
        nx = make_nsdx(root, db)
        acc = Accounts(nx.catalogue)
        for name, title in ORGS.items():
            acc.create_org(name, title=title)
        from exchange.demo import run_demo

        demo = run_demo(nx.exchange)  # enterprises, offers, orders: the ledger has trades
        _write_sources(root)
        assert {r.status for r in nx.ingest(all_=True)} == {"published"}
        _write_sources(root, second_version=True)
        assert nx.ingest(["nansha-bus-gps"])[0].version == 2
        for name, kw in (("official", {"auditor": True}), ("alice", {}), ("bob", {})):
            acc.create_user(name, **kw)
            set_password(acc, name, PASSWORD)
        acc.add_member("nansha-transport", "alice", "editor")
        acc.add_member(SELLER, "alice", "editor")  # alice also sells for the bureau
        acc.add_member(BUYER, "bob", "member")  # bob buys for an AI firm
        from datetime import date

        from exchange import trade
        from exchange.actors import Actor

        y = date.today().year
        from tests.registered import register

        register(nx.exchange, "nansha-taxi-trips", SELLER)  # no registration, no trade
        trade.create_offer(
            nx.exchange,
            Actor.for_org(SELLER),
            "nansha-taxi-trips",
            price="1200.00",
            licence_terms="仅限内部研发 internal R&D only",
            term_start=date(y - 1, 1, 1),
            term_end=date(y + 1, 12, 31),
            access_days=90,
        )
    srv = start_server(root / "home", db, org=False)
    try:
        srv.demo_year = demo["year"]
        srv.nx = nx
        yield srv
    finally:
        srv.stop()
        drop_indexes()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = os.environ.get("NSDX_SCREENSHOTS")
    return Path(out) if out else tmp_path_factory.mktemp("portal-screenshots")


@pytest.fixture
def tab(page):
    """A tab with no cookies (no session, Chinese), and none left behind for other tests."""
    page.send("Network.clearBrowserCookies")
    yield page
    page.send("Network.clearBrowserCookies")


# -- helpers ------------------------------------------------------------------------------
def axe_violations(page) -> list[str]:
    """Serious and critical axe-core violations on the current page."""
    if not AXE.exists():
        msg = "axe-core is not installed: run scripts/install-axe.sh (needs npm)"
        if os.environ.get("CI") == "true":
            pytest.fail(msg + "; under CI this is a failure", pytrace=False)
        pytest.skip(msg)
    if not page.eval("typeof window.axe !== 'undefined'"):
        page.eval(AXE.read_text(encoding="utf-8") + "\n;true", timeout=60)
    return page.eval(
        "axe.run(document, {resultTypes: ['violations']}).then(r => r.violations"
        ".filter(v => ['serious', 'critical'].includes(v.impact))"
        ".map(v => `${v.id} (${v.impact}): ${v.help} — ` + v.nodes.slice(0, 4)"
        ".map(n => n.target.join(' ')).join(' | ')))",
        timeout=120,
    )


def fill(page, selector: str, text: str) -> None:
    """Focus a field and type into it as a person would (no value assignment)."""
    page.eval(f"document.querySelector({json.dumps(selector)}).focus()")
    page.eval(f"document.querySelector({json.dumps(selector)}).select?.()")
    page.send("Input.insertText", text=text)


def press(page, key: str, code: str, vk: int, *, shift: bool = False, wait: bool = False):
    since = len(page.events)
    mods = 8 if shift else 0
    k = {"key": key, "code": code, "windowsVirtualKeyCode": vk, "modifiers": mods}
    page.send("Input.dispatchKeyEvent", type="keyDown", text="\r" if key == "Enter" else "", **k)
    page.send("Input.dispatchKeyEvent", type="keyUp", **k)
    if wait:
        page.wait_for("Page.loadEventFired", since, 30)
        return page._document_status(since)
    return None


def tab_key(page, *, shift: bool = False) -> dict:
    press(page, "Tab", "Tab", 9, shift=shift)
    return page.eval(
        "(() => { const e = document.activeElement; return {tag: e.tagName, "
        "text: (e.textContent || e.value || '').trim().slice(0, 60), id: e.id, "
        "href: e.getAttribute('href'), inAside: !!e.closest('aside'), "
        "inCard: !!e.closest('.card')}; })()"
    )


def text_of(page, selector: str) -> str:
    return page.eval(
        f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
        " return e ? e.textContent.replace(/\\s+/g, ' ').trim() : null; })()"
    )


def sign_in(page, portal: str, name: str, password: str = PASSWORD, *, next_: str = "/"):
    assert page.goto(f"{portal}/user/login?next={next_}") == 200
    fill(page, "#name", name)
    fill(page, "#password", password)
    return press(page, "Enter", "Enter", 13, wait=True)


# -- journeys -----------------------------------------------------------------------------
def test_official_journey_verify_transactions_entry_rewards_charts(tab, site, shots):
    page, portal = tab, site.url
    ledger = site.nx.exchange.ledger
    size0, cps0 = ledger.head_size(), len(ledger.checkpoints())
    # the audit pages want a signed-in official
    assert page.goto(portal + "/audit") == 200
    assert page.eval("location.pathname") == "/user/login"
    assert sign_in(page, portal, "official", next_="/audit") == 200
    assert page.eval("location.pathname") == "/audit"
    assert text_of(page, "#ledger-size") == f"{size0:,}"
    assert text_of(page, "#kept-size") == "尚无"
    assert axe_violations(page) == []
    page.screenshot(shots / "audit-dashboard.png")
    # verify: the same check as `nsdx audit verify --state`, remembered for next time
    assert page.click("#verify") == 200
    assert "账本验证通过" in text_of(page, "#verify-result")
    assert text_of(page, "#kept-size") == text_of(page, "#cp-size")
    kept_note = page.eval("document.querySelector('#checkpoint-note').textContent")
    assert kept_note.startswith("nsdx") or "\n" in kept_note
    # a kept checkpoint from elsewhere that disagrees with the database fails the check
    forged = kept_note.replace(kept_note.split("\n")[2], "A" * 43 + "=")
    fill(page, "#checkpoint", forged)
    assert page.click("#verify") == 200
    assert "验证失败" in text_of(page, "#verify-result")
    assert axe_violations(page) == []
    # transactions, filtered and paged
    assert page.goto(portal + "/audit/transactions") == 200
    assert text_of(page, ".count") == f"{size0} 条记录"
    assert page.eval("document.querySelectorAll('#entries tr').length") == min(size0, 50) + 1
    page.eval("document.querySelector('#kind').value = 'order.placed'")
    assert page.click("form.filters-form button[type=submit]") == 200
    assert "kind=order.placed" in page.eval("location.search")
    n_orders = int(text_of(page, ".count").split()[0])
    assert n_orders == 11  # exchange.demo.DEMO_ORDERS
    assert set(
        page.eval(
            "[...document.querySelectorAll('#entries td:nth-child(2) code')].map(t => t.textContent)"
        )
    ) == {"order.placed"}
    assert axe_violations(page) == []
    page.screenshot(shots / "audit-transactions.png")
    # one entry with its inclusion proof
    first = page.eval("document.querySelector('#entries td a').getAttribute('href')")
    assert page.click(f'#entries a[href="{first}"]') == 200
    assert "包含证明" in page.eval("document.body.textContent")
    assert page.eval("document.querySelector('#proof-ok')") is not None
    assert json.loads(text_of(page, "#payload"))["type"] == "order.placed"
    assert axe_violations(page) == []
    # rewards of the demo year, every exclusion with its reason, flags, charts
    assert page.goto(f"{portal}/audit/rewards?year={site.demo_year}") == 200
    # computed in the background: the page may say so and refresh itself until ready
    _wait_text(page, "main", "¥", timeout=120)
    deadline = time.monotonic() + 120
    while page.eval("!document.querySelector('#capped-total')") and time.monotonic() < deadline:
        time.sleep(0.3)
    assert page.eval("document.querySelectorAll('figure svg.chart').length") == 3
    excluded = page.eval("document.querySelectorAll('#transactions tr.excluded').length")
    reasons = page.eval("document.querySelectorAll('#transactions tr.excluded .reasons li').length")
    assert excluded > 0 and reasons >= excluded  # every excluded trade says why
    api = httpx.get(
        f"{portal}/api/audit/rewards",
        params={"year": site.demo_year, "at": ledger.latest_checkpoint().tree_size},
        headers={"authorization": Accounts(site.nx.catalogue).create_token("official")[0]},
    ).json()
    # the API's machine figure ("2045000.00"), as people read it: "¥2,045,000.00"
    assert text_of(page, "#capped-total") == yuan(to_fen(api["totals"]["capped_reward_cny"]))
    assert int(text_of(page, "#flag-count")) == len(api["flags"])
    assert axe_violations(page) == []
    page.screenshot(shots / "audit-rewards.png")
    # the yearly report downloads (same session cookie)
    href = page.eval("document.querySelector('a.download[href$=\"transactions.csv\"]').href")
    csv = page.eval(f"fetch({json.dumps(href)}).then(r => r.text())")
    assert csv.startswith("year,checkpoint_size,ledger_index")
    # the cross-border transfers of the demo year: accessible, read-only like the rest
    assert page.goto(f"{portal}/audit/cross-border?year={site.demo_year}") == 200
    assert int(text_of(page, "#xb-refusals")) >= 1  # the overseas buyer refused core data
    assert "hk-harbour-analytics" in text_of(page, "#xb-transfer-list")
    assert axe_violations(page) == []
    # read-only: nothing the official did wrote to the ledger
    assert (ledger.head_size(), len(ledger.checkpoints())) == (size0, cps0)
    assert [p for p in page.problems if "401" not in p and "422" not in p] == []


def test_a_member_who_is_not_an_official_is_refused_the_audit_pages(tab, site):
    assert sign_in(tab, site.url, "alice", next_="/audit") == 403
    assert "仅限监管人员" in text_of(tab, "h1")
    assert axe_violations(tab) == []


def test_sign_in_wrong_password_then_tokens_then_sign_out(tab, site, shots):
    page, portal = tab, site.url
    assert sign_in(page, portal, "alice", "not-the-password") == 401
    assert text_of(page, "[role=alert]") == "用户名或密码错误。"
    assert page.eval("document.querySelector('#name').value") == "alice"  # form kept
    assert page.eval("document.querySelector('#password').value") == ""
    assert axe_violations(page) == []
    page.screenshot(shots / "login-error.png", full_page=False)
    assert sign_in(page, portal, "alice", next_="/user/tokens") == 200
    assert page.eval("location.pathname") == "/user/tokens"
    fill(page, "#tname", "notebook")
    assert press(page, "Enter", "Enter", 13, wait=True) == 200
    secret = page.eval("document.querySelector('#new-token').value")
    assert secret.startswith("nsdx_")
    acc = Accounts(site.nx.catalogue)
    assert acc.authenticate(secret).name == "alice"  # a working token of hers
    assert axe_violations(page) == []
    page.screenshot(shots / "tokens.png")
    assert page.click("table.list button.danger") == 200
    assert "令牌已撤销" in page.eval("document.body.textContent")
    with pytest.raises(Exception, match="revoked"):
        acc.authenticate(secret)
    assert page.click("header form.inline button") == 200  # sign out
    assert page.eval("location.pathname") == "/"
    assert page.eval("document.querySelector('header a[href^=\"/user/login\"]')") is not None


def test_language_switch_persists(tab, site, shots):
    page, portal = tab, site.url
    page.goto(portal + "/dataset/nansha-bus-gps")
    assert page.eval("document.documentElement.lang") == "zh-Hans"
    assert text_of(page, "table.facts tr:first-child th") == "机构"
    assert page.click("header a.lang") == 200
    assert page.eval("location.pathname") == "/dataset/nansha-bus-gps"  # back where it was
    assert page.eval("document.documentElement.lang") == "en"
    assert text_of(page, "table.facts tr:first-child th") == "Organisation"
    assert text_of(page, "table.facts tr:nth-child(2) td") == "transport"
    page.goto(portal + "/")  # the cookie keeps it
    assert text_of(page, ".count").endswith("datasets found")
    assert page.goto(portal + "/no/such/page") == 404
    assert text_of(page, "h1") == "Page not found"
    assert axe_violations(page) == []
    page.screenshot(shots / "error-404-en.png", full_page=False)
    assert page.click("header a.lang") == 404  # back to the same (missing) page, in Chinese
    assert text_of(page, "h1") == "页面不存在"
    assert axe_violations(page) == []


def test_a_form_from_another_origin_is_refused(tab, site):
    """A page on another origin of the same site (another port: the SameSite=Lax cookies
    ride along) posts the token form for a signed-in user: refused, nothing created."""
    page, portal = tab, site.url
    assert sign_in(page, portal, "alice", next_="/user/tokens") == 200
    before = len(Accounts(site.nx.catalogue).tokens("alice"))
    evil = (
        "<!doctype html><html lang=en><title>win a prize</title><body>"
        f'<form id=f method=post action="{portal}/user/tokens">'
        "<input name=name value=stolen></form>"
        "<script>document.getElementById('f').submit()</script></body></html>"
    ).encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(evil)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        page.send("Page.navigate", url=f"http://127.0.0.1:{srv.server_address[1]}/")
        # the attacker's page loads and submits its form to the portal
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            here = page.eval("location.href + ' ' + document.readyState")
            if here.startswith(portal) and here.endswith("complete"):
                break
            time.sleep(0.1)
        assert page.eval("location.href") == f"{portal}/user/tokens"
        assert "此表单已过期，或来自其他网站" in page.eval("document.body.textContent")
        status = [
            e["params"]["response"]["status"]
            for e in page.events
            if e["method"] == "Network.responseReceived"
            and e["params"]["response"]["url"] == f"{portal}/user/tokens"
            and e["params"].get("type") == "Document"
        ]
        assert status[-1] == 403
    finally:
        srv.shutdown()
    assert len(Accounts(site.nx.catalogue).tokens("alice")) == before  # nothing created


def test_keyboard_only_search_facets_before_results(tab, site, shots):
    """Tab from the top of the search page: the skip links, the header, then the facets —
    before any result — and Enter on a facet filters."""
    page, portal = tab, site.url
    assert page.goto(portal + "/") == 200
    stops = [tab_key(page) for _ in range(40)]
    first_facet = next(i for i, s in enumerate(stops) if s["inAside"])
    first_result = next((i for i, s in enumerate(stops) if s["inCard"]), len(stops))
    assert first_facet < first_result
    assert first_facet <= 12, stops[: first_facet + 1]  # skip links + header + search box
    assert stops[0]["href"] == "#main" and stops[1]["href"] == "#results"
    # the skip link to the results works from the keyboard
    page.goto(portal + "/")
    tab_key(page)
    tab_key(page)  # "skip to results"
    press(page, "Enter", "Enter", 13)
    nxt = tab_key(page)
    assert nxt["id"] == "q" or nxt["inCard"]
    # Enter on a facet link filters
    page.goto(portal + "/")
    for _ in range(first_facet + 1):
        s = tab_key(page)
    assert s["inAside"]
    assert press(page, "Enter", "Enter", 13, wait=True) == 200
    assert page.eval("location.search").startswith("?")
    assert page.eval("document.querySelectorAll('.filters .chip').length") == 1
    assert axe_violations(page) == []


@pytest.mark.parametrize(
    "path",
    ["/", "/?q=公交", "/dataset/nansha-bus-gps", "/organization/nansha-transport",
     "/licence/nsdx-exchange-commercial", "/user/login", "/no/such/page",
     # scenarios and the register (the demo's first registration: last year's demo, whose
     # products were registered the year before)
     "/scenarios", "/scenario/nansha-travel-demand", "/registrations",
     f"/registration/NSDR-{_date.today().year - 2}-000001",
     f"/registration/NSDR-{_date.today().year - 2}-000001/certificate.html"],
)  # fmt: skip
def test_axe_finds_nothing_serious_on_public_pages(tab, site, path, shots):
    tab.goto(site.url + path)
    assert axe_violations(tab) == []
    if path == "/organization/nansha-transport":
        tab.screenshot(shots / "organization.png")
    if path == "/scenario/nansha-travel-demand":
        tab.screenshot(shots / "scenario.png")
    if path.endswith("/certificate.html"):
        assert "数据资源登记证书" in tab.eval("document.body.innerText")
        tab.screenshot(shots / "certificate.png")


def test_keyboard_only_sign_in_and_official_navigation(tab, site):
    """Sign in and reach the rewards page with the keyboard alone."""
    page, portal = tab, site.url
    page.goto(portal + "/user/login?next=/audit")
    assert page.eval("document.activeElement.id") == "name"  # autofocus
    page.send("Input.insertText", text="official")
    assert tab_key(page)["id"] == "password"
    page.send("Input.insertText", text=PASSWORD)
    assert press(page, "Enter", "Enter", 13, wait=True) == 200
    assert page.eval("location.pathname") == "/audit"
    for _ in range(60):
        s = tab_key(page)
        if s["href"] == "/audit/rewards":
            break
    assert s["href"] == "/audit/rewards"
    assert press(page, "Enter", "Enter", 13, wait=True) == 200
    assert re.search(r"数据交易奖励", text_of(page, "h1"))


def _submit_via_fetch(page, form_selector: str, extra: dict | None = None) -> dict:
    """Post a form of the page with fetch (a file download the test can read); ``extra``
    stands for the submit button's name and value."""
    return page.eval(
        f"(async () => {{ const f = document.querySelector({json.dumps(form_selector)});"
        " const d = new URLSearchParams(new FormData(f));"
        f" for (const [k, v] of Object.entries({json.dumps(extra or {})})) d.set(k, v);"
        " const r = await fetch(f.action, {method: 'POST', body: d});"
        " return {status: r.status, type: r.headers.get('content-type'),"
        " disposition: r.headers.get('content-disposition'), body: await r.text()}; })()"
    )


def test_buyer_journey_offer_order_payment_grant_profile_console_refund(tab, site, shots):
    page, portal = tab, site.url
    ledger = site.nx.exchange.ledger
    # bob, of an AI firm, finds the restricted dataset and its offer
    assert sign_in(page, portal, "bob", next_="/dataset/nansha-taxi-trips") == 200
    assert text_of(page, "#offers .price") == "¥1,200.00"  # the one price format
    assert "90 天" in text_of(page, "#offers")
    assert axe_violations(page) == []
    page.screenshot(shots / "buyer-offer.png")
    # the console refuses what he has not bought
    page.goto(portal + "/console")
    fill(page, "#sql", "SELECT * FROM transport.nansha_taxi_trips")
    assert page.click("#run") == 403
    assert "为受限数据" in text_of(page, "#console-error")  # the core's message, in Chinese
    assert page.eval("document.querySelector('#sql').value").startswith("SELECT")  # kept
    # he orders
    page.goto(portal + "/dataset/nansha-taxi-trips")
    size0 = ledger.head_size()
    assert page.click("button.order") == 200
    assert page.eval("location.pathname").startswith("/my/orders/")
    order_path = page.eval("location.pathname")
    assert text_of(page, "#order-state") == "已下单"
    assert text_of(page, "#paid-on") == "尚未付款"
    assert ledger.head_size() == size0 + 1  # order.placed, by the trade core
    assert axe_violations(page) == []
    page.screenshot(shots / "buyer-order-placed.png")
    # a buyer cannot confirm his own payment: there is no such button for him
    assert page.eval("document.querySelector('#confirm-payment')") is None
    page.click("header form.inline button")  # sign out
    # alice, for the seller, confirms the payment and grants access
    assert sign_in(page, portal, "alice", next_="/my") == 200
    assert page.eval(f"document.querySelector('a[href=\"{order_path}\"]') !== null")
    page.goto(portal + order_path)
    fill(page, "#reference", "BANK-2026-0001")
    assert page.click("#confirm-payment") == 200
    assert text_of(page, "#order-state") == "已付款"
    assert page.click("#grant") == 200
    assert text_of(page, "#order-state") == "已授权"
    assert text_of(page, "#grant-state").startswith("有效")
    page.screenshot(shots / "seller-order-granted.png")
    page.click("header form.inline button")
    # bob downloads his Delta Sharing profile and queries the bought data
    assert sign_in(page, portal, "bob", next_=order_path) == 200
    assert text_of(page, "#grant-state").startswith("有效")
    prof = _submit_via_fetch(page, f'form[action="{order_path}/profile"]')
    assert prof["status"] == 200 and "attachment" in prof["disposition"]
    profile = json.loads(prof["body"])
    assert profile["endpoint"] == portal + "/delta-sharing/"
    assert profile["bearerToken"] and profile["shareCredentialsVersion"] == 1
    shares = httpx.get(
        portal + "/delta-sharing/shares",
        headers={"authorization": f"Bearer {profile['bearerToken']}"},
    )
    assert shares.status_code == 200 and shares.json()["items"]
    page.goto(portal + order_path)
    assert page.click("#console-link") == 200
    assert "nansha_taxi_trips" in page.eval("document.querySelector('#sql').value")
    fill(page, "#sql", "SELECT pickup, fare_cny FROM transport.nansha_taxi_trips ORDER BY fare_cny")
    assert page.click("#run") == 200
    assert text_of(page, "#console-count").startswith("3 行")
    cells = page.eval(
        "[...document.querySelectorAll('#console-result td')].map(t => t.textContent)"
    )
    assert cells == ["南沙客运港", "18.0", "蕉门", "23.5", "黄阁", "41.0"]
    assert axe_violations(page) == []
    page.screenshot(shots / "buyer-console.png")
    csv = _submit_via_fetch(page, "#console-form", {"format": "csv"})
    assert csv["status"] == 200 and csv["type"].startswith("text/csv")
    assert csv["body"].splitlines()[0] == '"pickup","fare_cny"'
    page.click("header form.inline button")
    # a refund shows as such, and takes the access away
    assert sign_in(page, portal, "alice", next_=order_path) == 200
    fill(page, "#reason", "contract cancelled")
    assert page.click("#refund") == 200
    page.click("header form.inline button")
    assert sign_in(page, portal, "bob", next_="/my") == 200
    assert "已退款" in text_of(page, "table.orders")
    assert "已撤销" in text_of(page, "table.orders")
    page.goto(portal + order_path)
    assert page.eval("document.querySelector('#profile')") is None
    assert axe_violations(page) == []


def test_dataset_page_preview_downloads_snippets_versions(tab, site, shots):
    """For everyone: the first rows as published, per-table downloads that work, snippets
    naming the real download URL, the versions with their dates and row counts."""
    page, portal = tab, site.url
    assert page.goto(portal + "/dataset/nansha-bus-gps") == 200
    head = page.eval("[...document.querySelectorAll('.preview-table th')].map(t => t.textContent)")
    assert head == ["ts", "route_id", "speed_kmh"]
    assert page.eval("document.querySelectorAll('.preview-table tr').length") == 4  # 3 rows
    parquet = page.eval("document.querySelector('a.dl-parquet').href")
    assert parquet == f"{portal}/dataset/nansha-bus-gps/v2/data.parquet" or parquet.endswith(
        ".parquet"
    )
    csv = httpx.get(page.eval("document.querySelector('a.dl-csv').href"))
    assert csv.status_code == 200
    assert csv.text.splitlines()[0].replace('"', "").split(",")[:2] == ["ts", "route_id"]
    assert len(csv.text.strip().splitlines()) == 4
    snippet = page.eval("document.querySelector('.snippets pre code').textContent")
    assert snippet == f"SELECT * FROM read_parquet('{parquet}') LIMIT 10;"
    import duckdb

    con = duckdb.connect()  # the snippet as pasted, over the file it downloads
    data = httpx.get(parquet).content
    p = Path(site.nx.settings.home) / "snippet.parquet"
    p.write_bytes(data)
    assert con.execute(snippet.replace(parquet, str(p))).fetchall()[0][1] in ("南沙1路", "南沙4路")
    versions = page.eval(
        "[...document.querySelectorAll('#versions tr')].slice(1).map(r => r.cells[0].textContent.trim())"
    )
    assert versions == ["v2 当前", "v1"]
    assert re.match(
        r"\d{4}-\d\d-\d\d \d\d:\d\d", text_of(page, "#versions tr:nth-child(2) td:nth-child(2)")
    )
    assert axe_violations(page) == []
    page.screenshot(shots / "dataset-preview.png")
    # restricted data: no preview for a visitor, the reason instead, and the offer
    assert page.goto(portal + "/dataset/nansha-taxi-trips") == 200
    assert page.eval("document.querySelector('.preview-table')") is None
    assert "为受限数据" in text_of(page, ".preview")  # the core's message, in Chinese
    assert text_of(page, "#offers .price") == "¥1,200.00"


def test_seller_creates_and_withdraws_an_offer_with_bad_input_kept(tab, site):
    page, portal = tab, site.url
    assert sign_in(page, portal, "alice", next_="/dataset/nansha-taxi-trips") == 200
    n0 = page.eval("document.querySelectorAll('#offers tr').length")
    page.eval("document.querySelector('details.offer-create').open = true")
    fill(page, "#of-price", "abc")
    fill(page, "#of-licence_terms", "仅限研究 research only")
    fill(page, "#of-access_days", "0")
    assert page.click("#create-offer") == 422
    assert "请检查标出的字段" in text_of(page, "#offer-error")
    assert (
        page.eval("document.querySelector('#of-licence_terms').value") == "仅限研究 research only"
    )
    assert (
        page.eval("document.querySelector('#of-access_days').getAttribute('aria-invalid')")
        == "true"
    )
    assert page.eval("document.querySelectorAll('#offers tr').length") == n0  # nothing created
    fill(page, "#of-access_days", "30")
    assert page.click("#create-offer") in (409, 422)  # the core refuses the price "abc"
    assert "报价未创建" in text_of(page, "#offer-error")
    fill(page, "#of-price", "88.50")
    assert page.click("#create-offer") == 200
    assert "报价已创建" in page.eval("document.body.textContent")
    prices = page.eval("[...document.querySelectorAll('#offers .price')].map(t => t.textContent)")
    assert "¥88.50" in prices
    assert axe_violations(page) == []
    # withdraw the new one
    row = prices.index("¥88.50")
    page.eval(f"document.querySelectorAll('#offers button.withdraw')[{row}].scrollIntoView()")
    since_buttons = page.eval("document.querySelectorAll('#offers button.withdraw').length")
    assert page.click(f"#offers tr:nth-child({row + 2}) button.withdraw") == 200
    assert "报价已撤回" in page.eval("document.body.textContent")
    assert (
        page.eval("document.querySelectorAll('#offers button.withdraw').length")
        == since_buttons - 1
    )


def _set_file(page, selector: str, path: Path) -> None:
    root = page.send("DOM.getDocument")["root"]["nodeId"]
    node = page.send("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
    page.send("DOM.setFileInputFiles", files=[str(path)], nodeId=node)


def _wait_text(page, selector: str, want: str, timeout: float = 90) -> str:
    """Wait (the job page refreshes itself) until ``selector`` holds ``want``."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            last = text_of(page, selector) or ""
        except Exception:  # noqa: BLE001 - the page is being refreshed right now
            last = ""
        if want in last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{selector} never said {want!r}; last: {last!r}")


def test_provider_journey_create_upload_progress_published(tab, site, shots, tmp_path):
    page, portal = tab, site.url
    assert sign_in(page, portal, "alice", next_="/my/datasets") == 200
    assert page.click("#new-dataset") == 200
    # bad input: a name that is not allowed; the form is kept, nothing created
    page.eval("document.querySelector('#nd-name').removeAttribute('pattern')")
    fill(page, "#nd-name", "Bad Name!")
    fill(page, "#nd-title", "南沙渡轮客流")
    fill(page, "#nd-domain", "transport")
    page.eval("document.querySelector('#nd-owner_org').value = 'nansha-transport'")
    assert page.click("#create-dataset") == 422
    assert page.eval("document.querySelector('#nd-title').value") == "南沙渡轮客流"
    assert page.eval("document.querySelector('#nd-name').getAttribute('aria-invalid')") == "true"
    assert axe_violations(page) == []
    fill(page, "#nd-name", "nansha-ferry-riders")
    assert page.click("#create-dataset") == 200
    assert page.eval("location.pathname") == "/dataset/nansha-ferry-riders/upload"
    # an upload the pipeline cannot read: a clear message, nothing left behind
    bad = tmp_path / "riders.bin"
    bad.write_bytes(b"\x00\x01\x02")
    _set_file(page, "#upload", bad)
    assert page.click("#send") in (409, 422)
    assert "riders.bin" in text_of(page, "#upload-error")
    # the real file: streamed up, checked, published; progress shown until then
    good = tmp_path / "riders.csv"
    good.write_text("day,pier,riders\n2024-03-01,南沙客运港,1200\n2024-03-02,南沙客运港,1350\n")
    _set_file(page, "#upload", good)
    assert page.click("#send") == 200
    assert page.eval("location.pathname").startswith("/my/jobs/")
    page.screenshot(shots / "provider-job.png", full_page=False)
    assert "版本 1" in _wait_text(page, "#job-status", "已发布为版本 1")
    assert axe_violations(page) == []
    page.screenshot(shots / "provider-published.png")
    assert page.click("#published-link") == 200
    head = page.eval("[...document.querySelectorAll('.preview-table th')].map(t => t.textContent)")
    assert head == ["day", "pier", "riders"]
    # my datasets lists it with its upload
    page.goto(portal + "/my/datasets")
    assert "南沙渡轮客流南沙区交通运输局开放v1" in text_of(page, "#my-datasets")
    assert "已完成" in text_of(page, "#my-jobs")
    assert axe_violations(page) == []


def test_provider_edits_metadata_bad_field_then_saved_seen_on_page_and_api(tab, site, shots):
    page, portal = tab, site.url
    name = "nansha-taxi-trips"  # alice edits for the bureau that owns it
    assert sign_in(page, portal, "alice", next_=f"/dataset/{name}") == 200
    assert page.click("#edit-link") == 200
    assert page.eval("location.pathname") == f"/dataset/{name}/edit"
    assert page.eval("document.querySelector('#ed-title').value") == "南沙出租车行程"
    # a refused field: marked, in Chinese, the other entries kept, nothing saved
    fill(page, "#ed-notes_en", "Taxi trips in Nansha, one row per trip.")
    fill(page, "#ed-domain", "Not A Domain")
    assert page.click("#save-dataset") == 422
    assert "必须是以“-”连接的小写单词" in text_of(page, "#ed-domain-err")
    assert page.eval("document.querySelector('#ed-domain').getAttribute('aria-invalid')") == "true"
    assert page.eval("document.querySelector('#ed-notes_en').value").startswith("Taxi trips")
    assert axe_violations(page) == []
    page.screenshot(shots / "provider-edit.png")
    fill(page, "#ed-domain", "transport")
    fill(page, "#ed-tags", "出租车, taxi")
    fill(page, "#ed-maintainer_email", "taxi@example.org")
    assert page.click("#save-dataset") == 200
    assert page.eval("location.pathname") == f"/dataset/{name}"
    assert text_of(page, "#edited") == "已保存。"
    assert "Taxi trips in Nansha, one row per trip." in text_of(page, "article")
    tags = page.eval("[...document.querySelectorAll('a.tag')].map(a => a.textContent)")
    assert sorted(tags) == ["taxi", "出租车"]
    pkg = httpx.get(f"{portal}/api/3/action/package_show", params={"id": name}).json()["result"]
    ex = {e["key"]: e["value"] for e in pkg["extras"]}
    assert ex["notes_en"] == "Taxi trips in Nansha, one row per trip."
    assert pkg["maintainer_email"] == "taxi@example.org"
    assert sorted(t["name"] for t in pkg["tags"]) == ["taxi", "出租车"]


def test_provider_declares_a_personal_column_and_a_check_then_the_upload_is_masked_and_reported(
    tab, site, shots, tmp_path
):
    """Create a dataset with its columns and checks in the form (a refused check first:
    marked, the rows kept), upload a file with phone numbers, and see the phone column
    published as tokens and the declared check in the validation report."""
    page, portal = tab, site.url
    assert sign_in(page, portal, "alice", next_="/my/datasets/new") == 200
    assert axe_violations(page) == []
    fill(page, "#nd-name", "nansha-hotline-calls")
    fill(page, "#nd-title", "南沙热线来电")
    fill(page, "#nd-domain", "society")
    page.eval("document.querySelector('#nd-owner_org').value = 'nansha-transport'")
    fill(page, "#col-0-name", "caller")
    page.eval("document.querySelector('#col-0-type').value = 'string'")
    page.eval("document.querySelector('#col-0-pii').value = 'phone'")
    fill(page, "#col-0-description", "来电号码")
    fill(page, "#col-1-name", "minutes")
    page.eval("document.querySelector('#col-1-type').value = 'integer'")
    page.eval("document.querySelector('#exp-0-kind').value = 'between'")
    fill(page, "#exp-0-column", "minutes")
    fill(page, "#exp-0-min", "0")
    fill(page, "#exp-0-max", "60")
    fill(page, "#exp-0-description", "一小时以内")
    page.eval("document.querySelector('#exp-1-kind').value = 'row_count'")
    fill(page, "#exp-1-min", "1.5")  # refused: a row count is a whole number
    assert page.click("#create-dataset") == 422
    assert "行数的上下限须为不小于 0 的整数" in text_of(page, "#exp-1-kind-err")
    assert page.eval("document.querySelector('#exp-1-kind').getAttribute('aria-invalid')") == "true"
    assert page.eval("document.querySelector('#col-0-pii').value") == "phone"  # rows kept
    assert page.eval("document.querySelector('#exp-0-max').value") == "60"
    assert axe_violations(page) == []
    page.screenshot(shots / "provider-declare.png")
    fill(page, "#exp-1-min", "1")
    assert page.click("#create-dataset") == 200
    assert page.eval("location.pathname") == "/dataset/nansha-hotline-calls/upload"
    calls = tmp_path / "calls.csv"
    calls.write_text("caller,minutes\n13800138000,5\n13912345678,12\n13700001111,3\n")
    _set_file(page, "#upload", calls)
    assert page.click("#send") == 200
    assert "版本 1" in _wait_text(page, "#job-status", "已发布为版本 1")
    assert page.click("#job-report") == 200  # the validation report: the declared checks
    report = text_of(page, "main")
    assert "minutes between [0, 60]" in report and "row_count between [1, null]" in report
    assert "13800138000" not in report
    assert axe_violations(page) == []
    page.goto(portal + "/dataset/nansha-hotline-calls")
    cells = page.eval("[...document.querySelectorAll('.preview-table td')].map(t => t.textContent)")
    assert cells and not any(c.startswith(("137", "138", "139")) for c in cells)
    tokens = {c for c in cells if re.fullmatch(r"pii_[0-9a-f]{24}", c)}
    assert len(tokens) == 3  # each caller published as its keyed token (validation.pii)
    assert "脱敏" in text_of(page, "main") or "令牌" in text_of(page, "main")
    # the edit page shows the declaration as rows (and is accessible)
    assert page.click("#edit-link") == 200
    assert page.eval("document.querySelector('#col-0-name').value") == "caller"
    assert page.eval("document.querySelector('#col-0-pii').value") == "phone"
    assert page.eval("document.querySelector('#exp-0-kind').value") == "between"
    assert axe_violations(page) == []
    # Enter in a field saves (the form's first button is a hidden "Save", not "More rows")
    fill(page, "#col-1-description", "通话分钟数")
    assert press(page, "Enter", "Enter", 13, wait=True) == 200
    assert (
        page.eval("location.pathname + location.search") == "/dataset/nansha-hotline-calls?edited=1"
    )
    pkg = httpx.get(
        f"{portal}/api/3/action/package_show", params={"id": "nansha-hotline-calls"}
    ).json()["result"]
    assert pkg["nsdx"]["declared"]["schema"][1] == {
        "name": "minutes",
        "type": "integer",
        "description": "通话分钟数",
    }
    assert pkg["nsdx"]["declared"]["schema"][0]["pii"] == "phone"  # the rest kept
