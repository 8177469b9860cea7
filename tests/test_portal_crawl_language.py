"""No English on the Chinese portal's messages (issue 12, item 2 and "Bad input"): the
portal is crawled in zh-CN as each kind of user — a visitor, a provider (an organisation's
admin), a buyer, an official, the operator and a registration reviewer — from the pages
each one starts at, following every same-site link; every form met on the way is sent
back empty and with junk in every field. Every error, notice, hint and alert on every page
answered, and the error page's text, must hold no English sentence.

Left out of the check, as data rather than language: what a message quotes ('names',
"titles", `commands`, <code>), and the text the SQL engine gives after the console's
translated "语法错误：" / "查询失败：" (DuckDB's own words, e.g. "Parser Error: syntax
error at or near ...")."""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin

import pytest
from fastapi.testclient import TestClient

from catalogue.auth import Accounts
from catalogue.search import drop_indexes
from catalogue.signin import set_password
from exchange.demo import run_demo
from nsdx.web.app import create_app
from tests.test_ckan_api import make_nsdx
from tests.test_portal_edit import PASSWORD, login

ROLES = {  # user -> (account flags, organisation and role)
    "alice": ({}, ("nansha-transport-bureau", "admin")),
    "bob": ({}, ("hk-harbour-analytics", "member")),
    "official": ({"auditor": True}, None),
    "root": ({"sysadmin": True}, None),
    "rev": ({"reviewer": True}, None),
}
ENGLISH = re.compile(r"[A-Za-z]{2,}(?: [A-Za-z]{2,}){2,}")  # three English words in a row
MESSAGE = re.compile(
    r'<(p|span|div|li|strong)[^>]*class="[^"]*\b(error|notice|field-error|hint|alert|bad|warn)'
    r'\b[^"]*"[^>]*>(.*?)</\1>',
    re.S,
)
QUOTED = re.compile(r"<code>.*?</code>|`[^`]*`|'[^']*'|\"[^\"]*\"|“[^”]*”", re.S)
ENGINE = re.compile(r"(语法错误：|查询失败：).*")  # DuckDB's words follow our translated lead
SKIP = ("//", "/api/", "/static/", "/user/logout", "/lang/", "/audit/report/", "/delta-sharing")
DATA_FILE = re.compile(r"\.(csv|parquet|json|jsonld|ttl|txt|share|svg|png)$")
PAGES_PER_USER = 60


@pytest.fixture
def site(tmp_path, nsdx_env):
    nx = make_nsdx(tmp_path, f"sqlite:///{tmp_path / 'nsdx.db'}")
    demo = run_demo(nx.exchange)
    acc = Accounts(nx.catalogue)
    for name, (flags, member) in ROLES.items():
        acc.create_user(name, **flags)
        set_password(acc, name, PASSWORD)
        if member:
            acc.add_member(member[0], name, member[1])
    with TestClient(create_app(nx, warm=False, worker=False)) as c:
        c.headers.update({"accept": "text/html"})
        c.year = demo["year"]
        yield c
    drop_indexes()


def english_in(page: str) -> list[str]:
    """The English sentences in the page's messages (and its error page's text)."""
    texts = [m.group(3) for m in MESSAGE.finditer(page)]
    err = re.search(r'<section class="errorpage">(.*?)</section>', page, re.S)
    if err:
        texts.append(err.group(1))
    out = []
    for raw in texts:
        text = html.unescape(re.sub(r"<(?!/?code)[^>]+>", " ", raw))
        text = " ".join(ENGINE.sub("", QUOTED.sub("", text)).split())
        out += [text[:200]] if ENGLISH.search(text) else []
    return out


def forms_of(page: str, path: str) -> list[tuple[str, dict[str, str]]]:
    """The page's POST forms: their address and fields (hidden values kept)."""
    out = []
    for attrs, body in re.findall(r"<form([^>]*)>(.*?)</form>", page, re.S):
        if 'method="post"' not in attrs:
            continue
        m = re.search(r'action="([^"]*)"', attrs)
        action = urljoin(path, html.unescape(m.group(1))) if m else path
        fields = {}
        for tag in re.findall(r"<(?:input|textarea|select)[^>]*>", body):
            name = re.search(r'name="([^"]+)"', tag)
            value = re.search(r'value="([^"]*)"', tag)
            if name:
                fields[name.group(1)] = html.unescape(value.group(1)) if value else ""
        out.append((action, fields))
    return out


def visit(c, start: list[str], leaks: dict[str, list[str]]) -> None:
    seen: set[str] = set()
    forms: dict[str, tuple[str, dict[str, str]]] = {}
    todo = list(start)
    while todo and len(seen) < PAGES_PER_USER:
        path = todo.pop(0)
        if path in seen:
            continue
        seen.add(path)
        r = c.get(path)
        assert r.status_code < 500, path
        if not r.headers.get("content-type", "").startswith("text/html"):
            continue
        for sentence in english_in(r.text):
            leaks.setdefault(sentence, []).append(f"GET {path}")
        for href in re.findall(r'href="([^"]+)"', r.text):
            target = urljoin(path, html.unescape(href).split("#")[0])
            if (target.startswith("/") and not target.startswith(SKIP)
                    and not DATA_FILE.search(target.split("?")[0])):  # fmt: skip
                todo.append(target)
        for action, fields in forms_of(r.text, path):
            key = re.sub(r"[0-9a-f]{32}|[0-9a-f-]{36}|/\d+(?=/|$)", "/ID", action)
            if "logout" not in action and "/lang/" not in action:
                forms.setdefault(key, (action, fields))
    assert len(seen) > 10
    for action, fields in forms.values():
        for junk in ("", "xxx"):  # every field left empty, then nonsense in every field
            data = {k: (v if k in ("csrftoken", "dataset", "offer", "buyer", "next") else junk)
                    for k, v in fields.items()}  # fmt: skip
            r = c.post(action, data=data)
            assert r.status_code < 500, (action, junk, r.status_code)
            for sentence in english_in(r.text):
                leaks.setdefault(sentence, []).append(f"POST {action} {junk!r}")


def test_no_english_in_the_chinese_portals_messages_for_any_user(site):
    leaks: dict[str, list[str]] = {}
    start = ["/", "/my", "/my/datasets", "/my/datasets/new", "/console", "/user/tokens",
             "/registrations", "/audit", f"/audit/rewards?year={site.year}",
             f"/audit/cross-border?year={site.year}", "/dataset/nansha-ride-hailing-orders",
             "/no/such/page", "/dataset/no-such", "/organization/no-such", "/registration/NO-SUCH",
             "/my/orders/no-such", "/audit/entry/999999", "/dataset/no-such/quality",
             "/dataset/nansha-ride-hailing-orders/quality?v=99"]  # fmt: skip
    site.cookies.clear()
    visit(site, start, leaks)  # an anonymous visitor
    for user in ROLES:
        login(site, user)
        visit(site, start, leaks)
    assert leaks == {}


def test_the_leaks_the_crawl_found_are_chinese_now(site):
    """What the crawl found in English before: a new dataset's refused fields, the SQL
    console's refusals, the reason a kept checkpoint fails."""
    tok = login(site, "alice")
    r = site.post("/my/datasets/new", data={"csrftoken": tok, "name": "", "owner_org": ""})
    assert r.status_code == 422
    assert "必须指定机构" in r.text and "必填" in r.text
    assert "An organization must be provided" not in r.text and "invalid input" not in r.text
    r = site.post("/my/datasets/new", data={"csrftoken": tok, "name": "ferry-x", "title": "渡轮",
                                             "owner_org": "no-such-org", "access": "xxx"})  # fmt: skip
    page = html.unescape(r.text)
    assert "机构不存在" in page and "必须是以下之一：open, restricted" in page
    assert "Organization does not exist" not in page and "Must be one of" not in page
    for sql, chinese, english in (
        ("SELECT * FROM transport.no_such_view", "没有已发布的视图 'transport.no_such_view'",
         "no published view"),
        ("DROP TABLE transport.x", "只允许 SELECT 语句，不允许 DROP", "only SELECT statements"),
        ("SELECT 1; SELECT 2", "只允许一条语句，实际有 2 条", "exactly one statement"),
        ("SELECT * FROM read_csv('/etc/passwd')", "不允许使用表函数 'read_csv'",
         "is not allowed"),
        ("SELEC 1", "语法错误：Parser Error", "syntax error: Parser"),  # DuckDB's words kept
    ):  # fmt: skip
        r = site.post("/console", data={"csrftoken": tok, "sql": sql})
        page = html.unescape(r.text)
        assert r.status_code == 400 and chinese in page, sql
        assert english not in page, sql
    tok = login(site, "official")
    r = site.post("/audit/verify", data={"csrftoken": tok, "checkpoint": "not a checkpoint"})
    assert "外部检查点：该文本在签名之前缺少空行" in r.text
    assert "note has no blank line" not in r.text
    site.cookies.set("nsdx_lang", "en")  # English one click away
    r = site.post("/audit/verify", data={"csrftoken": tok, "checkpoint": "not a checkpoint"})
    assert "external checkpoint: note has no blank line before its signatures" in r.text
