"""The web portal in a real headless Chromium against a real `nsdx serve`.

Three datasets are published through the real pipeline (one of them twice, so it has two
versions) and 22 more are created through the Action API, so that search, facets and paging
have something to work on. Chromium is driven over the DevTools Protocol
(``tests/fixtures/browser.py``; enable it with ``-p tests.fixtures.browser`` or through
``pytest_plugins``); without Chromium these tests are skipped (under CI they fail) with a
reason that says to run ``scripts/install-browser.sh``.

Screenshots of the search page, a dataset page and the mobile layout are taken on every run
into pytest's temporary folder; ``NSDX_SCREENSHOTS=docs/screenshots`` writes them there
instead (that is how the README's pictures are made).
"""

from __future__ import annotations

import json
import os
import re
import struct
import time
from collections import deque
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from catalogue.auth import Accounts
from catalogue.search import drop_indexes
from tests.test_ckan_api import make_nsdx
from tests.test_ckan_client import start_server

pytestmark = pytest.mark.xdist_group("browser")

BUS_TITLE, BUS_EN = "南沙公交车辆GPS轨迹", "Nansha bus GPS positions"

DATASETS_YAML = """
datasets:
  - id: nansha-bus-gps
    title: 南沙公交车辆GPS轨迹
    title_en: Nansha bus GPS positions
    domain: transport
    organization: nansha-transport
    licence: CC-BY-4.0
    attribution: 南沙公交公司 Nansha Bus Company
    tags: [公交, bus, gps]
    notes: 南沙区公交车辆每30秒上报的位置和速度。演示用合成样本。
    notes_en: Positions and speed of Nansha buses every 30 seconds. Synthetic sample.
    source: {path: bus.csv, format: csv}
    schema:
      - {name: ts, type: timestamp, description: 定位时间 position time}
      - {name: route_id, type: string, description: 线路 route}
      - {name: speed_kmh, type: float, unit: km/h, description: 速度 speed}
    expectations:
      - {column: ts, not_null: true}
      - {column: speed_kmh, between: [0, 80]}
  - id: gz-metro-flow
    title: 广州地铁南沙段客流
    title_en: Guangzhou Metro passenger flow in Nansha
    domain: transport
    organization: gz-metro
    licence: ODbL-1.0
    tags: [地铁, metro]
    notes: 广州地铁4号线南沙段各站每日进站人次。演示用合成样本。
    source: {path: metro.csv, format: csv}
  - id: nansha-air-quality
    title: 南沙空气质量监测
    title_en: Nansha air quality readings
    domain: environment
    organization: nansha-eco
    licence: CC0-1.0
    tags: [空气, air]
    notes: 南沙区空气质量监测站每小时PM2.5读数。演示用合成样本。
    source: {path: air.csv, format: csv}
"""

ORGS = {
    "nansha-transport": "南沙区交通运输局",
    "gz-metro": "广州地铁集团",
    "nansha-eco": "南沙区生态环境局",
    "nansha-stats": "南沙区统计局",
}

# (name, title, English title, domain, tags): created through the Action API
FILLERS = [
    ("nansha-port-throughput", "南沙港货物吞吐量", "Nansha port cargo throughput", "economy", ["港口", "port"]),
    ("nansha-ferry-timetable", "南沙客运港航班时刻", "Nansha ferry timetable", "transport", ["轮渡", "ferry"]),
    ("nansha-parking-lots", "南沙公共停车场", "Nansha public car parks", "transport", ["停车", "parking"]),
    ("nansha-ev-chargers", "南沙充电桩分布", "Nansha EV charging points", "energy", ["充电", "ev"]),
    ("nansha-water-quality", "南沙河涌水质", "Nansha river water quality", "environment", ["水质", "water"]),
    ("nansha-noise", "南沙噪声监测", "Nansha noise monitoring", "environment", ["噪声", "noise"]),
    ("nansha-population", "南沙常住人口", "Nansha resident population", "society", ["人口", "population"]),
    ("nansha-schools", "南沙中小学名录", "Nansha schools", "education", ["学校", "schools"]),
    ("nansha-hospitals", "南沙医疗机构", "Nansha hospitals and clinics", "health", ["医疗", "health"]),
    ("nansha-companies", "南沙新登记企业", "Nansha new company registrations", "economy", ["企业", "companies"]),
    ("nansha-gdp", "南沙地区生产总值", "Nansha GDP by quarter", "economy", ["经济", "gdp"]),
    ("nansha-weather", "南沙气象观测", "Nansha weather observations", "environment", ["气象", "weather"]),
    ("nansha-tide", "南沙潮位", "Nansha tide levels", "environment", ["潮汐", "tide"]),
    ("nansha-311", "南沙12345热线工单", "Nansha 12345 hotline cases", "urban-management", ["热线", "hotline"]),
    ("nansha-streetlights", "南沙路灯", "Nansha street lights", "urban-management", ["路灯", "lighting"]),
    ("nansha-green-space", "南沙公园绿地", "Nansha parks and green space", "urban-management", ["公园", "parks"]),
    ("nansha-building-permits", "南沙建设工程许可", "Nansha building permits", "urban-management", ["建设", "permits"]),
    ("nansha-tourism", "南沙旅游景点", "Nansha tourist sites", "culture", ["旅游", "tourism"]),
    ("nansha-libraries", "南沙图书馆借阅", "Nansha library loans", "culture", ["图书馆", "libraries"]),
    ("nansha-power-use", "南沙用电量", "Nansha electricity use", "energy", ["电力", "electricity"]),
    ("nansha-ai-firms", "南沙人工智能企业", "Nansha AI companies", "economy", ["人工智能", "ai"]),
    ("nansha-bike-share", "南沙共享单车停放点", "Nansha bike-share parking", "transport", ["单车", "bike"]),
]  # fmt: skip
TOTAL = 3 + len(FILLERS)


def _write_sources(folder: Path, *, second_version: bool = False) -> None:
    bus = "ts,route_id,speed_kmh\n2024-03-01 08:00:00,南沙1路,31.5\n2024-03-01 08:00:30,南沙4路,28.0\n"
    if second_version:
        bus += "2024-03-01 08:01:00,南沙1路,12.0\n"
    (folder / "bus.csv").write_text(bus, encoding="utf-8")
    (folder / "metro.csv").write_text(
        "date,station,entries\n2024-03-01,南沙客运港,1200\n2024-03-01,蕉门,900\n", encoding="utf-8"
    )
    (folder / "air.csv").write_text(
        "ts,station,pm25\n2024-03-01 08:00:00,黄阁,31\n2024-03-01 09:00:00,黄阁,28\n",
        encoding="utf-8",
    )


@pytest.fixture(scope="module")
def portal(tmp_path_factory, chromium_path):
    """A running `nsdx serve` (SQLite, local storage) with real published data; its URL."""
    root = tmp_path_factory.mktemp("portal")
    home = root / "home"
    db = f"sqlite:///{root / 'nsdx.db'}"
    (root / "datasets.yaml").write_text(DATASETS_YAML, encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NSDX_PII_KEY", "test-pii-key")
        nx = make_nsdx(root, db)  # home = root/home, datasets.yaml and sources in root
        acc = Accounts(nx.catalogue)
        for name, title in ORGS.items():
            acc.create_org(name, title=title)
        _write_sources(root)
        assert {r.status for r in nx.ingest(all_=True)} == {"published"}
        _write_sources(root, second_version=True)
        [again] = nx.ingest(["nansha-bus-gps"])
        assert again.status == "published" and again.version == 2
    srv = start_server(home, db, org=False)
    try:
        api = httpx.Client(base_url=srv.url, headers={"Authorization": srv.token}, timeout=30)
        for name, title, title_en, domain, tags in FILLERS:
            r = api.post(
                "/api/3/action/package_create",
                json={
                    "name": name,
                    "title": title,
                    "owner_org": "nansha-stats",
                    "license_id": "CC-BY-4.0",
                    "notes": f"{title}（演示数据目录条目）",
                    "tags": [{"name": t} for t in tags],
                    "extras": [
                        {"key": "domain", "value": domain},
                        {"key": "title_en", "value": title_en},
                    ],
                    # a catalogue entry whose data lives elsewhere: a link resource
                    "resources": [
                        {
                            "name": "下载 download",
                            "url": f"https://example.org/{name}.csv",
                            "format": "CSV",
                        }
                    ]
                    if domain == "economy"
                    else [],
                },
            )
            assert r.status_code == 200, r.text
        for _ in range(100):  # the server warms its search index in the background
            n = api.get("/api/3/action/package_search", params={"rows": 0}).json()["result"]
            if n["count"] == TOTAL:
                break
            time.sleep(0.1)
        assert n["count"] == TOTAL
        yield srv.url
    finally:
        srv.stop()
        drop_indexes()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = os.environ.get("NSDX_SCREENSHOTS")
    return Path(out) if out else tmp_path_factory.mktemp("screenshots")


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def texts(page, selector: str) -> list[str]:
    return page.eval(
        f"[...document.querySelectorAll({json.dumps(selector)})].map(e => e.textContent.trim())"
    )


def href_of(page, selector: str, text: str) -> str:
    """The href attribute of the link under ``selector`` whose text is ``text``."""
    href = page.eval(
        f"(() => {{ const a = [...document.querySelectorAll({json.dumps(selector)})]"
        f".find(a => a.textContent.trim() === {json.dumps(text)}); return a && a.getAttribute('href'); }})()"
    )
    assert href, f"no link {text!r} under {selector}"
    return href


# Checks a person with a screen reader or a keyboard depends on.
A11Y_JS = r"""
(() => {
  const out = [];
  if (!document.documentElement.lang) out.push('html has no lang');
  if (!document.title.trim()) out.push('empty <title>');
  const h1 = document.querySelectorAll('h1');
  if (h1.length !== 1) out.push(`${h1.length} <h1> elements`);
  let last = 0;
  for (const h of document.querySelectorAll('h1,h2,h3,h4,h5,h6')) {
    const n = +h.tagName[1];
    if (n > last + 1) out.push(`heading skips a level: <${h.tagName}> ${h.textContent.trim()}`);
    last = n;
  }
  for (const e of document.querySelectorAll('input:not([type=hidden]),select,textarea')) {
    const labelled = (e.id && document.querySelector(`label[for="${e.id}"]`))
      || e.getAttribute('aria-label') || e.getAttribute('aria-labelledby') || e.closest('label');
    if (!labelled) out.push(`unlabelled ${e.tagName} name=${e.name}`);
  }
  for (const a of document.querySelectorAll('a[href]'))
    if (!a.textContent.trim() && !a.getAttribute('aria-label')) out.push(`empty link ${a.href}`);
  for (const b of document.querySelectorAll('button'))
    if (!b.textContent.trim() && !b.getAttribute('aria-label')) out.push('empty button');
  for (const i of document.querySelectorAll('img')) if (!i.hasAttribute('alt')) out.push(`img without alt ${i.src}`);
  const ids = [...document.querySelectorAll('[id]')].map(e => e.id);
  const dup = ids.filter((x, i) => ids.indexOf(x) !== i);
  if (dup.length) out.push(`duplicate ids ${dup}`);
  return out;
})()
"""


# -- search ------------------------------------------------------------------------------
def test_search_for_a_chinese_word_finds_the_bus_dataset(page, portal, shots):
    assert page.goto(portal + "/") == 200
    assert page.eval("document.querySelector('.count').textContent").startswith(
        f"找到 {TOTAL} 个数据集"
    )
    assert page.type_and_enter("#q", "公交") == 200
    assert parse_qs(urlsplit(page.eval("location.href")).query) == {"q": ["公交"]}
    assert texts(page, ".card .title") == [BUS_TITLE]
    assert texts(page, ".card .subtitle") == [BUS_EN]
    assert page.eval("document.querySelector('#q').value") == "公交"
    assert "找到 1 个数据集" in page.eval("document.querySelector('.count').textContent")
    assert page.eval(A11Y_JS) == []
    assert page.problems == []
    # the same search in English words finds it too
    assert page.type_and_enter("#q", "bus") == 200
    assert BUS_TITLE in texts(page, ".card .title")
    # and the screenshot for the README: the whole catalogue
    page.goto(portal + "/")
    w, _ = png_size(page.screenshot(shots / "search.png", full_page=False))
    assert w == 1280


def test_facets_filter_and_the_filter_chip_removes_it(page, portal):
    page.goto(portal + "/")
    facets = texts(page, "aside h3")
    assert facets == ["机构", "领域", "标签", "格式", "许可", "访问"]
    # organisations are listed by their Chinese titles
    assert "南沙区生态环境局" in texts(page, "aside .facet:first-of-type li a")
    href = href_of(page, "aside a", "环境")  # facet values are translated, links are not
    assert "domain=environment" in href
    assert page.click(f'aside a[href="{href}"]') == 200
    titles = texts(page, ".card .title")
    assert "南沙空气质量监测" in titles and BUS_TITLE not in titles
    assert len(titles) == 5  # air quality + 4 environment fillers
    assert texts(page, ".filters .chip") == ["领域: 环境 ✕(移除)"]
    # a second facet narrows further (AND)
    href = href_of(page, "aside a", "CC0-1.0")
    page.click(f'aside a[href="{href}"]')
    assert texts(page, ".card .title") == ["南沙空气质量监测"]
    assert parse_qs(urlsplit(page.eval("location.href")).query) == {
        "domain": ["environment"],
        "license_id": ["CC0-1.0"],
    }
    # searching keeps the filters (hidden inputs) ...
    page.type_and_enter("#q", "空气")
    assert parse_qs(urlsplit(page.eval("location.href")).query)["domain"] == ["environment"]
    assert texts(page, ".card .title") == ["南沙空气质量监测"]
    # ... and the chips remove them one by one
    page.click(".filters .chip:first-child")
    page.click(".filters .chip:first-child")
    assert page.eval("document.querySelectorAll('.filters .chip').length") == 0
    assert texts(page, ".card .title") == ["南沙空气质量监测"]  # q=空气 stays
    # a tag on a result card is a filter link too
    page.goto(portal + "/?q=metro")
    page.click('.card .tags a[href="/?tags=%E5%9C%B0%E9%93%81"]')
    assert texts(page, ".card .title") == ["广州地铁南沙段客流"]
    assert page.problems == []


def test_pagination(page, portal):
    page.goto(portal + "/")
    first = texts(page, ".card .title")
    assert len(first) == 20
    assert "第 1 / 2 页" in page.eval("document.querySelector('.pager').textContent")
    assert page.eval("document.querySelector('.pager a[rel=prev]')") is None
    assert page.click(".pager a[rel=next]") == 200
    second = texts(page, ".card .title")
    assert len(second) == TOTAL - 20
    assert not set(first) & set(second)
    assert "第 2 / 2 页" in page.eval("document.querySelector('.pager').textContent")
    assert page.eval("document.querySelector('.pager a[rel=next]')") is None
    page.click(".pager a[rel=prev]")
    assert texts(page, ".card .title") == first
    # paging keeps the query and the filters
    page.goto(portal + "/?q=南沙&domain=transport")
    assert page.eval("document.querySelector('.pager')") is None  # one page only
    assert page.problems == []


def test_bad_query_shows_the_error_not_a_crash(page, portal):
    assert page.goto(portal + "/?q=tags:(oops") == 200
    assert "搜索语句无效" in page.eval("document.querySelector('[role=alert]').textContent")
    assert "没有找到数据集" in page.eval("document.body.textContent")
    assert page.problems == []


# -- dataset page ------------------------------------------------------------------------
def facts(page) -> dict[str, str]:
    rows = page.eval(
        "[...document.querySelectorAll('table.facts tr')].map(r => "
        "[r.querySelector('th').textContent.trim(), r.querySelector('td').textContent.trim()])"
    )
    return {k: re.sub(r"\s+", " ", v) for k, v in rows}


def test_dataset_page(page, portal, shots):
    assert page.goto(portal + "/dataset/nansha-bus-gps") == 200
    assert page.eval("document.querySelector('h1').textContent") == BUS_TITLE
    assert page.eval("document.querySelector('.subtitle').textContent") == BUS_EN
    assert page.eval("document.querySelector('.subtitle').lang") == "en"
    assert page.eval("document.title").startswith(BUS_TITLE)
    f = facts(page)
    assert f["机构"] == "南沙区交通运输局"
    assert f["许可"] == "CC-BY-4.0"
    assert f["署名"] == "南沙公交公司 Nansha Bus Company"
    assert f["版本"] == "v2 当前 · 历史： v1"
    assert f["行数"].startswith("3")
    assert f["质量"].startswith("100 / 100")
    assert "2/2 项检查通过" in f["质量"]
    assert f["访问"] == "开放"
    assert page.eval("document.querySelector('a[rel=license]').href") == (
        "https://creativecommons.org/licenses/by/4.0/"
    )
    # the published table's schema
    cols = page.eval(
        "[...document.querySelectorAll('table.schema tr')].slice(1).map(r => "
        "[...r.cells].map(c => c.textContent.trim()))"
    )
    assert [c[0] for c in cols] == ["ts", "route_id", "speed_kmh"]
    assert cols[2][1] == "double (km/h)"  # the unit declared in datasets.yaml
    # schema.org Dataset markup for search engines
    raw = page.eval("document.querySelector('script[type=\"application/ld+json\"]').textContent")
    ld = json.loads(raw)
    assert ld["@context"] == "https://schema.org/" and ld["@type"] == "Dataset"
    assert ld["name"] == BUS_TITLE and ld["alternateName"] == BUS_EN
    assert ld["license"] == "https://creativecommons.org/licenses/by/4.0/"
    assert ld["url"] == portal + "/dataset/nansha-bus-gps"
    # the server's own storage paths are for the API, not shown to readers
    assert "file://" not in page.eval("document.body.innerText")
    assert page.eval(A11Y_JS) == []
    assert page.problems == []
    w, _ = png_size(page.screenshot(shots / "dataset.png"))
    assert w == 1280


def test_dcat_links(page, portal):
    page.goto(portal + "/dataset/nansha-bus-gps")
    href = page.eval("document.querySelector('head link[rel=alternate][href^=\"/dataset/\"]').href")
    assert href == portal + "/dataset/nansha-bus-gps.jsonld"
    d = page.eval(f"fetch({json.dumps(href)}).then(r => r.json())")
    assert d["@type"] == "dcat:Dataset"
    assert {"@value": BUS_TITLE, "@language": "zh"} in d["dct:title"]
    # the header's DCAT link is the whole catalogue
    cat_href = href_of(page, "header nav a", "DCAT")
    assert cat_href == "/catalog.jsonld"
    assert page.goto(portal + cat_href) == 200
    cat = json.loads(page.eval("document.body.innerText"))
    assert cat["@type"] == "dcat:Catalog" and len(cat["dcat:dataset"]) == TOTAL
    assert page.problems == []


def test_missing_dataset_page(page, portal):
    assert page.goto(portal + "/dataset/no-such-thing") == 404
    assert page.eval("document.querySelector('h1').textContent") == "数据集不存在"
    assert page.click("main a[href='/']") == 200
    # Chromium logs the 404 of the page itself; nothing else may go wrong
    assert [p for p in page.problems if "404" not in p] == []


# -- the whole portal --------------------------------------------------------------------
NON_HTML = re.compile(
    r"^/(api/|docs|openapi\.json|static/|catalog\.jsonld|dataset/[^/?]+(\.jsonld|/)|lang/|user/|console|favicon\.ico)"
)


def test_crawl_no_broken_links_no_console_errors(page, portal):
    """Every link on the home page and on every dataset page works. The home page, every
    dataset page and one search page of each kind (each facet, page 2) are opened in
    Chromium and must log no errors; the other links are fetched."""
    start = portal + "/"
    todo = deque([start])
    opened: set[str] = {start}
    kinds: set[tuple] = set()
    fetch: set[str] = set()
    external: set[str] = set()
    broken: list[str] = []
    problems: list[str] = []
    while todo:
        url = todo.popleft()
        status = page.goto(url)
        if status != 200:
            broken.append(f"{url} -> {status}")
            continue
        problems += [f"{url}: {p}" for p in page.problems]
        page.problems.clear()
        links = page.eval(
            "[...document.querySelectorAll('a[href], link[href], script[src]')]"
            ".map(e => e.href || e.src)"
        )
        for link in links:
            link = link.split("#", 1)[0]
            parts = urlsplit(link)
            path = link[len(portal) :]
            if parts.scheme not in ("http", "https", "data"):
                broken.append(f"{url}: link with scheme {parts.scheme}: {link}")
            elif parts.scheme == "data" or link in opened:
                continue
            elif not link.startswith(portal):
                external.add(link)
            elif NON_HTML.match(path):
                fetch.add(link)
            elif path.startswith("/dataset/"):
                opened.add(link)
                todo.append(link)
            elif url == start and (kind := frozenset(parse_qs(parts.query))) not in kinds:
                kinds.add(kind)
                opened.add(link)
                todo.append(link)
            else:
                fetch.add(link)
    with httpx.Client(timeout=30, follow_redirects=True) as c:
        for link in sorted(fetch - opened):
            r = c.get(link)
            if r.status_code != 200:
                broken.append(f"{link} -> {r.status_code}")
    assert broken == []
    assert problems == []
    assert sum("/dataset/" in u for u in opened) == TOTAL
    assert len(kinds) == 8  # seven facets (the scenarios' one too) and page 2
    assert portal + "/static/nsdx.css" in fetch
    assert portal + "/catalog.jsonld" in fetch
    assert len(fetch) > 100  # facet, tag, API and DCAT links of every page
    # outside links: licences and link resources (the network is closed: not followed)
    assert {urlsplit(x).netloc for x in external} == {
        "creativecommons.org",
        "opendatacommons.org",
        "example.org",
    }


# -- small screens -----------------------------------------------------------------------
def test_mobile_layout(page, portal, shots):
    page.viewport(390, 844, mobile=True, scale=2)
    for path in ("/", "/dataset/nansha-bus-gps", "/?q=公交&domain=transport"):
        page.goto(portal + path)
        m = page.eval(
            "({sw: document.documentElement.scrollWidth, w: innerWidth,"
            " body: parseFloat(getComputedStyle(document.body).fontSize),"
            " wide: [...document.querySelectorAll('main *')]"
            "   .filter(e => e.getBoundingClientRect().right > innerWidth + 1"
            "     && !e.closest('.scroll')).map(e => e.tagName + '.' + e.className)})"
        )
        assert m["w"] == 390
        assert m["sw"] <= m["w"], f"{path} scrolls sideways: {m}"
        assert m["wide"] == [], f"{path}: wider than the screen: {m['wide']}"
        assert m["body"] >= 16
    page.goto(portal + "/")
    # results come first on a phone, the facets after them
    order = page.eval(
        "document.querySelector('section.results').getBoundingClientRect().top"
        " < document.querySelector('aside').getBoundingClientRect().top"
    )
    assert order
    box = page.eval(
        "(() => { const r = document.querySelector('form.search button').getBoundingClientRect();"
        " return [r.left, r.right, r.height]; })()"
    )
    assert box[0] >= 0 and box[1] <= 390 and box[2] >= 36  # a button a thumb can hit
    assert page.problems == []
    w, _ = png_size(page.screenshot(shots / "mobile.png", full_page=False))
    assert w == 390 * 2


# -- the fixture itself ------------------------------------------------------------------
def test_every_browser_process_ends(chromium_path):
    from tests.fixtures.browser import Chromium

    b = Chromium(chromium_path)
    try:
        p = b.new_page()
        assert p.goto("data:text/html,<h1>hi</h1>") == 200
        assert p.eval("document.querySelector('h1').textContent") == "hi"
        started = b.pids()
        assert b.pid in started and len(started) > 2  # the browser and its helpers
        p.close()
    finally:
        b.stop()
    assert b.proc.returncode is not None
    assert b.pids() == []
    assert not b.profile.exists() and not Path(b.log.name).exists()
