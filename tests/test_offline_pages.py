"""Every page nsdx serves works on a machine without internet: no script, style, font or
image comes from another host. `/docs` and `/redoc` were blank offline (FastAPI's pages load
Swagger UI, ReDoc and Google Fonts from CDNs); they now use the files the fastapi-offline
package installs.

The test crawls the portal from `/` through every same-site link (plus the API pages),
collects each resource a page would load — `<script src>`, `<link href>` (stylesheets,
icons, preloads, fonts), `<img src/srcset>`, `<source>`, `<iframe>`, `url(...)` and
`@import` in `style` attributes, `<style>` blocks and the stylesheets themselves — and
requires every one to be on this site (or a `data:` URL) and to answer 200."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

from tests.test_ckan_api import BUS, deployment  # noqa: F401 - shared fixture

API_PAGES = ["/docs", "/redoc", "/docs/oauth2-redirect"]
CSS_URL = re.compile(r"""url\(\s*['"]?([^'")\s]+)|@import\s+['"]([^'"]+)""")
LOADING_RELS = {"stylesheet", "icon", "shortcut", "preload", "prefetch", "modulepreload",
                "manifest", "apple-touch-icon", "mask-icon"}  # fmt: skip


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []  # pages to visit (same site)
        self.assets: list[tuple[str, str]] = []  # (what, url) the browser would load
        self._style = False
        self.styles: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("style"):
            self.styles.append(a["style"])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        elif tag == "script" and a.get("src"):
            self.assets.append(("script", a["src"]))
        elif tag == "link" and a.get("href"):
            rels = set((a.get("rel") or "").lower().split())
            if rels & LOADING_RELS:
                self.assets.append((f"link rel={a.get('rel')}", a["href"]))
        elif tag in ("img", "source", "iframe", "embed", "video", "audio", "track", "input"):
            for key in ("src", "poster", "data"):
                if a.get(key):
                    self.assets.append((f"{tag} {key}", a[key]))
            for part in (a.get("srcset") or "").split(","):
                if part.strip():
                    self.assets.append((f"{tag} srcset", part.split()[0]))
        elif tag == "object" and a.get("data"):
            self.assets.append(("object", a["data"]))
        elif tag == "style":
            self._style = True

    def handle_endtag(self, tag):
        if tag == "style":
            self._style = False

    def handle_data(self, data):
        if self._style:
            self.styles.append(data)


def css_urls(text: str) -> list[str]:
    return [m.group(1) or m.group(2) for m in CSS_URL.finditer(text)]


def external(url: str) -> bool:
    if url.startswith("data:"):
        return False
    parts = urlsplit(url)
    return bool(parts.scheme and parts.scheme not in ("data",)) or url.startswith("//")


def crawl(client, start: list[str], limit: int = 80) -> dict[str, list[tuple[str, str]]]:
    """page -> the resources it would load (absolute paths on this site or full URLs)."""
    seen: dict[str, list[tuple[str, str]]] = {}
    todo = list(start)
    while todo and len(seen) < limit:
        path = todo.pop(0)
        if path in seen:
            continue
        r = client.get(path)
        assert r.status_code == 200, (path, r.status_code)
        if not r.headers["content-type"].startswith("text/html"):
            seen[path] = []
            continue
        page = Page()
        page.feed(r.text)
        assets = [(what, urljoin(path, u)) for what, u in page.assets]
        assets += [("inline css", urljoin(path, u)) for s in page.styles for u in css_urls(s)]
        seen[path] = assets
        for href in page.links:
            target = urljoin(path, href.split("#")[0])
            if target.startswith("/") and not target.startswith(("//", "/api/", "/static/")):
                todo.append(target)
    return seen


def test_no_page_loads_anything_from_another_host(deployment):  # noqa: F811
    deployment.ok("package_create", BUS)
    pages = crawl(deployment.client, ["/", "/dataset/nansha-bus-gps", *API_PAGES])
    assert set(API_PAGES) <= set(pages) and "/dataset/nansha-bus-gps" in pages
    assert len(pages) >= 5
    outside = [(p, what, u) for p, assets in pages.items() for what, u in assets if external(u)]
    assert outside == []
    # every resource is really served here, and the stylesheets load nothing from elsewhere
    for page, assets in pages.items():
        for what, url in assets:
            if url.startswith("data:"):
                continue
            r = deployment.client.get(url)
            assert r.status_code == 200, (page, what, url)
            if url.endswith(".css"):
                assert [u for u in css_urls(r.text) if external(u)] == [], url


def test_api_docs_use_the_installed_swagger_ui_and_redoc(deployment):  # noqa: F811
    docs = deployment.client.get("/docs").text
    assert "/static/api-docs/swagger-ui-bundle.js" in docs and "'/openapi.json'" in docs
    assert '"validatorUrl": null' in docs  # no badge image from the public validator
    bundle = deployment.client.get("/static/api-docs/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and "SwaggerUIBundle" in bundle.text
    redoc = deployment.client.get("/redoc").text
    assert "/static/api-docs/redoc.standalone.js" in redoc and "fonts.googleapis" not in redoc
    js = deployment.client.get("/static/api-docs/redoc.standalone.js")
    assert js.status_code == 200 and len(js.content) > 100_000
    spec = deployment.client.get("/openapi.json").json()
    assert "/api/query" in spec["paths"]


def test_the_crawler_sees_what_a_browser_would_load():
    page = Page()
    page.feed(
        '<link rel="stylesheet" href="https://cdn.example/x.css"><script src="//cdn.example/a.js">'
        '</script><img srcset="/a.png 1x, https://img.example/b.png 2x">'
        "<style>@font-face{src:url(https://fonts.example/f.woff2)}</style>"
        '<div style="background:url(\'/bg.png\')"></div><a href="https://example.org/">x</a>'
    )
    assets = [u for _, u in page.assets] + [u for s in page.styles for u in css_urls(s)]
    assert [u for u in assets if external(u)] == [
        "https://cdn.example/x.css",
        "//cdn.example/a.js",
        "https://img.example/b.png",
        "https://fonts.example/f.woff2",
    ]
    assert page.links == ["https://example.org/"]  # a link is not loaded
