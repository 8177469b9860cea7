"""Hostile HTTP input (issue 11, holes 9 and 13): each request that used to answer a 500,
or to write a file for a caller who may not, now gets a clear 4xx and leaves nothing
behind."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

CSV = "stop_id,name\n1,南沙客运港\n2,蕉门\n"


@pytest.fixture
def site(nsdx_env):
    from nsdx.core import Nsdx
    from nsdx.web.app import create_app
    from tests.test_ckan_api import BUS

    nx = Nsdx()
    acc = nx.accounts
    acc.create_user("admin", sysadmin=True)
    acc.create_org("bureau", title="南沙区交通运输局")
    acc.create_org("rival", title="别家")
    acc.create_user("ed")
    acc.add_member("bureau", "ed", "editor")
    acc.create_user("mallory")
    acc.add_member("rival", "mallory", "admin")
    tokens = {u: acc.create_token(u)[0] for u in ("admin", "ed", "mallory")}
    app = create_app(nx, warm=False, worker=False)
    with TestClient(app) as c:
        r = c.post(
            "/api/3/action/package_create", json=BUS, headers={"Authorization": tokens["admin"]}
        )
        assert r.status_code == 200, r.text
        c.nx, c.tokens = nx, tokens
        yield c


def _leftovers(nx) -> list:
    root = nx.uploads_dir
    return sorted(p for p in root.rglob("*")) if root.exists() else []


def _upload(c, action="resource_create", *, who=None, fields=None, name="stops.csv",
            content=CSV.encode(), fields_after=None):  # fmt: skip
    """A multipart request built by hand, so that the order of the parts is the test's."""
    boundary = uuid.uuid4().hex
    parts = []

    def field(k, v):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        )

    for k, v in (fields if fields is not None else {"package_id": "nansha-bus-gps"}).items():
        field(k, v)
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="upload"; filename="{name}"\r\n'
        f"Content-Type: text/csv\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    for k, v in (fields_after or {}).items():
        field(k, v)
    parts.append(f"--{boundary}--\r\n".encode())
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    if who:
        headers["Authorization"] = c.tokens[who]
    return c.post(f"/api/3/action/{action}", content=b"".join(parts), headers=headers)


# -- hole 9: uploads stored before authorisation -------------------------------------------
@pytest.mark.parametrize(
    "action,who,fields,fields_after,name,status",
    [
        ("status_show", None, {}, None, "x.csv", 400),  # an action that takes no file
        ("package_search", "ed", {}, None, "x.csv", 400),
        ("resource_create", None, None, None, "x.csv", 403),  # anonymous
        ("resource_create", "mallory", None, None, "x.csv", 403),  # another organisation
        ("resource_create", "ed", {"package_id": "nope"}, None, "x.csv", 404),
        ("resource_create", "ed", {}, {"package_id": "nansha-bus-gps"}, "x.csv", 409),
        ("resource_create", "ed", None, None, "..", 400),  # a name that is no file name
        ("resource_create", "ed", None, None, "../../etc/passwd", 409),  # kept: 'passwd', no format
        ("resource_create", "ed", None, None, "data.unknown-format", 409),  # the action refuses
        ("resource_update", "mallory", {"id": "nope"}, None, "x.csv", 404),
    ],
)
def test_refused_uploads_leave_nothing(site, action, who, fields, fields_after, name, status):
    r = _upload(site, action, who=who, fields=fields, fields_after=fields_after, name=name)
    assert r.status_code == status, r.text
    assert r.json()["success"] is False
    assert _leftovers(site.nx) == []


def test_an_upload_over_the_cap_is_refused_and_removed(site, monkeypatch):
    monkeypatch.setenv("NSDX_UPLOAD_MAX_BYTES", "1000")
    r = _upload(site, who="ed", content=CSV.encode() * 200)
    assert r.status_code == 413, r.text
    assert "NSDX_UPLOAD_MAX_BYTES" in r.json()["error"]["message"]
    assert _leftovers(site.nx) == []


def test_an_upload_that_is_allowed_is_published_then_removed(site):
    r = _upload(site, who="ed")
    assert r.status_code == 200, r.text
    job = r.json()["result"]["nsdx_job"]["id"]
    for _ in range(600):
        status = site.get(
            "/api/3/action/nsdx_job_show", params={"id": job},
            headers={"Authorization": site.tokens["ed"]},
        ).json()["result"]["status"]  # fmt: skip
        if status in ("finished", "failed"):
            break
        time.sleep(0.1)
    assert status == "finished"
    assert _leftovers(site.nx) == []  # published: the upload itself is not kept


def test_the_caller_is_checked_before_the_body_is_read(site):
    """An anonymous upload is refused from its headers: the body is never read."""
    app = site.app
    read = []

    async def receive():
        read.append(True)
        return {"type": "http.request", "body": b"--b\r\n", "more_body": False}

    sent = []

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/3/action/resource_create",
        "raw_path": b"/api/3/action/resource_create", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"multipart/form-data; boundary=b"),
                    (b"content-length", b"500000000"), (b"host", b"testserver")],
        "client": ("127.0.0.1", 1), "server": ("testserver", 80),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] in (403, 413) and not read
    scope["headers"][1] = (b"content-length", b"5")
    sent.clear()
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 403 and not read


# -- hole 13: the 5xx found by hand ---------------------------------------------------------
def _deep(n: int) -> str:
    return "[" * n + "]" * n


CASES = [
    # (id, method, path, kwargs, expected status)
    ("page-abc", "GET", "/?page=abc", {}, 400),
    ("q-5000-parens", "GET", "/api/3/action/package_search", {"params": {"q": "(" * 5000}}, 400),
    ("q-deep-parens", "GET", "/api/3/action/package_search", {"params": {"q": "(" * 200 + "a" + ")" * 200}}, 400),
    ("q-deep-not", "GET", "/api/3/action/package_search", {"params": {"q": "NOT " * 500 + "a"}}, 400),
    ("fq-far-past", "GET", "/api/3/action/package_search",
     {"params": {"fq": "metadata_created:[NOW-99999999999DAYS TO *]"}}, 400),
    ("fq-far-future", "GET", "/api/3/action/package_search",
     {"params": {"fq": "metadata_created:[* TO NOW+99999999999999999999DAYS]"}}, 400),
    ("fq-number", "POST", "/api/3/action/package_search", {"json": {"fq": 123}}, 409),
    ("q-list", "POST", "/api/3/action/package_search", {"json": {"q": ["a"]}}, 409),
    ("tag-list-query-list", "POST", "/api/3/action/tag_list", {"json": {"query": [1]}}, 409),
    ("offset-1e30", "GET", "/api/3/action/package_list", {"params": {"offset": "1e30"}}, 409),
    ("offset-huge", "GET", "/api/3/action/package_list", {"params": {"offset": "9" * 30}}, 409),
    ("facet-limit-list", "POST", "/api/3/action/package_search", {"json": {"facet.limit": [1]}}, 409),
    ("tags-5", "POST", "/api/3/action/package_create",
     {"json": {"name": "x-tags", "owner_org": "bureau", "tags": 5}, "admin": True}, 409),
    ("owner-org-list", "POST", "/api/3/action/package_create",
     {"json": {"name": "x-org", "owner_org": [1]}, "admin": True}, 409),
    ("organization-string", "POST", "/api/3/action/package_create",
     {"json": {"name": "x-org2", "organization": "bureau"}, "admin": True}, 409),
    ("extras-list-key", "POST", "/api/3/action/package_create",
     {"json": {"name": "x-ex", "owner_org": "bureau", "extras": [{"key": [1], "value": 1}]},
      "admin": True}, 200),
    ("price-nan", "POST", "/api/3/action/package_create",
     {"json": {"name": "x-nan", "owner_org": "bureau", "price_cny": "NaN"}, "admin": True}, 409),
    ("revise-match-x", "POST", "/api/3/action/package_revise", {"json": {"match": "x"}, "admin": True}, 409),
    ("revise-update-list", "POST", "/api/3/action/package_revise",
     {"json": {"match": {"name": "nansha-bus-gps"}, "update": "[1]"}, "admin": True}, 409),
    ("json-1000-deep-ckan", "POST", "/api/3/action/package_search",
     {"content": '{"q":' + _deep(1000) + "}", "headers": {"content-type": "application/json"}}, 400),
    ("json-100-deep-ckan", "POST", "/api/3/action/package_search",
     {"content": '{"q":' + _deep(100) + "}", "headers": {"content-type": "application/json"}}, 400),
    ("json-1000-deep-query", "POST", "/api/query",
     {"content": '{"sql":' + _deep(1000) + "}", "headers": {"content-type": "application/json"}}, 400),
    ("json-1000-deep-exchange", "POST", "/api/exchange/offers",
     {"content": '{"dataset":' + _deep(1000) + "}", "headers": {"content-type": "application/json"}}, 400),
    ("json-1000-deep-sharing", "POST", "/delta-sharing/shares/s/schemas/s/tables/t/query",
     {"content": _deep(1000), "headers": {"content-type": "application/json"}}, 400),
    ("infinity-date", "POST", "/api/query", {"json": {"sql": "select 'infinity'::date AS d"}}, 200),
    ("query-string-too-long", "GET", "/api/3/action/package_list", {"params": {"x": "y" * 20000}}, 414),
    ("body-too-large", "POST", "/api/3/action/package_search",
     {"content": b'{"q": "' + b"a" * (5 * 1024 * 1024) + b'"}',
      "headers": {"content-type": "application/json"}}, 413),
]  # fmt: skip


@pytest.mark.parametrize("method,path,kw,status", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_hostile_requests_get_a_clear_answer(site, method, path, kw, status):
    kw = dict(kw)
    if kw.pop("admin", False):
        kw["headers"] = {**kw.get("headers", {}), "Authorization": site.tokens["admin"]}
    r = site.request(method, path, **kw)
    assert r.status_code == status, r.text[:500]
    if status >= 400:
        body = r.text
        if path.startswith("/api/"):
            err = r.json()["error"]
            assert err["message"] if isinstance(err, dict) else err
        assert len(body) < 5000  # the answer does not echo a hostile input back whole
    if status == 200 and path == "/api/query":
        assert r.json()["rows"] == [[None]] or r.json()["rows"][0][0] in ("infinity", None)


@pytest.mark.parametrize(
    "method,path,kw",
    [
        ("GET", "/api/exchange/orders/" + "x" * 15000, {}),
        ("GET", "/api/3/action/package_show", {"params": {"id": "x" * 15000}}),
        ("POST", "/api/3/action/package_show", {"json": {"id": "x" * 3_000_000}}),
        (
            "POST",
            "/api/3/action/package_create",
            {"json": {"name": "x" * 3_000_000}, "admin": True},
        ),
        ("POST", "/api/exchange/orders", {"json": {"offer": "x" * 200_000}, "admin": True}),
    ],
    ids=["exchange-404", "ckan-404-get", "ckan-404-post", "ckan-409", "exchange-post"],
)
def test_an_error_never_echoes_a_hostile_value_whole(site, method, path, kw):
    """Issue 15: a 404 for a 15 KB id answered 30 KB, quoting it whole; every dialect now
    cuts what it quotes (message 500 characters, each field 200)."""
    kw = dict(kw)
    if kw.pop("admin", False):
        kw["headers"] = {**kw.get("headers", {}), "Authorization": site.tokens["admin"]}
    r = site.request(method, path, **kw)
    assert 400 <= r.status_code < 500, r.text[:300]
    assert len(r.content) < 8000, (r.status_code, r.text[:300])


def test_a_body_without_content_length_is_counted(site, monkeypatch):
    """A chunked body (no Content-Length) is refused once it passes the bound."""
    monkeypatch.setenv("NSDX_MAX_BODY_BYTES", "1000")

    def chunks():
        for _ in range(100):
            yield b" " * 100

    r = site.post("/api/query", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["error"] == "BodyTooLarge"


def test_small_routes_have_smaller_body_bounds(site, monkeypatch):
    """Issue 15: a 200 MB body to /api/exchange/orders cost 1.8 GB. Each route has its own
    bound, refused from Content-Length before anything is read; NSDX_BODY_LIMITS moves it."""
    body = b'{"offer": "' + b"x" * 300_000 + b'"}'
    h = {"content-type": "application/json", "Authorization": site.tokens["admin"]}
    for path in ("/api/exchange/orders", "/api/query"):
        big = body if path != "/api/query" else body * 2
        r = site.post(path, content=big, headers=h)
        assert r.status_code == 413, (path, r.text[:200])
        assert "NSDX_BODY_LIMITS" in r.json()["error"]["hint"]
    r = site.post("/api/3/action/package_search", content=body, headers=h)
    assert r.status_code != 413  # the Action API keeps NSDX_MAX_BODY_BYTES (4 MiB)
    monkeypatch.setenv("NSDX_BODY_LIMITS", "/api/3/action=1000")
    r = site.post("/api/3/action/package_search", content=body, headers=h)
    assert r.status_code == 413 and "NSDX_BODY_LIMITS" in r.json()["error"]["message"] + str(
        r.json()["error"]
    )
    from nsdx.web.limits import SettingError, route_body_limits

    monkeypatch.setenv("NSDX_BODY_LIMITS", "api/query=x")
    with pytest.raises(SettingError):
        route_body_limits()


def test_json_depth_helper_is_iterative():
    from nsdx.web.limits import BadJson, parse_json

    assert parse_json(json.dumps({"a": [[1]]})) == {"a": [[1]]}
    for text in (_deep(65), "{" * 10 + "}", _deep(100_000)):
        with pytest.raises(BadJson):
            parse_json(text)
