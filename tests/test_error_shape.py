"""One error shape per surface (issue 11, item 3), checked the way datasette checks its
error shape: every surface, every kind of failure — a missing thing, bad input, a bad
token, an unknown route and a bug — answers in that surface's dialect, and a bug is a
logged 5xx with an error id, never a bare 500 and never a 404."""

from __future__ import annotations

import logging
import re

import pytest
from fastapi.testclient import TestClient

ERROR_ID = re.compile(r"\b[0-9a-f]{12}\b")


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    import os

    home = tmp_path_factory.mktemp("errshape")
    old = {k: os.environ.get(k) for k in ("NSDX_HOME", "NSDX_DATABASE_URL", "NSDX_STORAGE_URL")}
    os.environ["NSDX_HOME"] = str(home / "home")
    os.environ.pop("NSDX_DATABASE_URL", None)
    os.environ.pop("NSDX_STORAGE_URL", None)
    try:
        from nsdx.core import Nsdx
        from nsdx.web.app import create_app

        nx = Nsdx()
        nx.accounts.create_user("admin", sysadmin=True)
        token, _ = nx.accounts.create_token("admin")
        with TestClient(create_app(nx, warm=False)) as c:
            yield c, token
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- the dialects -----------------------------------------------------------------------
def ckan(r, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"help", "success", "error"} and body["success"] is False
    err = body["error"]
    assert isinstance(err["__type"], str) and isinstance(err["message"], str) and err["message"]
    if status >= 500:
        assert err["__type"] == "Internal Server Error" and ERROR_ID.search(err["message"])


def plain(r, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"error"}
    err = body["error"]
    assert {"error", "message", "hint", "transient"} <= set(err)
    assert isinstance(err["error"], str) and err["error"] and err["message"]
    assert isinstance(err["transient"], bool)
    if status >= 500:
        assert ERROR_ID.fullmatch(err["error_id"]) and err["error_id"] in err["message"]


def sharing(r, status: int) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"errorCode", "message"}
    assert re.fullmatch(r"[A-Z_]+", body["errorCode"]) and body["message"]
    if status >= 500:
        assert body["errorCode"] == "INTERNAL_ERROR" and ERROR_ID.search(body["message"])


def html(r, status: int) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert "<!doctype html>" in r.text.lower()
    assert f'<p class="status">{status}</p>' in r.text
    if status >= 500:
        assert re.search(r'class="error-id">[0-9a-f]{12}<', r.text)
    else:
        assert 'class="error-id"' not in r.text


# -- failures to cause ------------------------------------------------------------------
def _boom(*a, **kw):
    raise RuntimeError("boom at /srv/secret/path")


def _break_packages(monkeypatch):
    from catalogue.editing import Packages

    monkeypatch.setattr(Packages, "show", _boom)


def _break_index(monkeypatch):
    from catalogue.search import SearchIndex

    monkeypatch.setattr(SearchIndex, "show", _boom)


def _break_sharing(monkeypatch):
    from exchange import sharing as core

    monkeypatch.setattr(core, "list_shares", _boom)


def _break_query(monkeypatch):
    from nsdx.web import query

    monkeypatch.setattr(query, "serve_query", _boom)


def _break_offers(monkeypatch):
    from exchange import trade

    monkeypatch.setattr(trade, "list_offers", _boom)


BAD = {"Authorization": "nsdx_not-a-token"}
PAGE = {"headers": {"Accept": "text/html,application/xhtml+xml"}}  # a browser

CASES = [
    # (id, dialect, method, path, kwargs, status, break)
    ("ckan-missing", ckan, "GET", "/api/3/action/package_show?id=nope", {}, 404, None),
    ("ckan-unknown-action", ckan, "POST", "/api/3/action/no_such", {"json": {}}, 400, None),
    ("ckan-bad-token", ckan, "GET", "/api/3/action/package_list", {"headers": BAD}, 403, None),
    ("ckan-bad-json", ckan, "POST", "/api/3/action/package_show",
     {"content": b"{", "headers": {"content-type": "application/json"}}, 400, None),
    ("ckan-bug", ckan, "GET", "/api/3/action/package_show?id=x", {}, 500, _break_index),
    ("json-missing-order", plain, "GET", "/api/exchange/orders/nope", {}, 404, None),
    ("json-bad-param", plain, "GET", "/api/audit/rewards?year=abc", {}, 422, None),
    # a year out of the programme's range (10**10 once walked every year: a thread for good)
    ("json-year-far", plain, "GET", "/api/audit/rewards?year=10000000000", {}, 422, None),
    ("json-year-before", plain, "GET", "/api/audit/rewards?year=1999", {}, 422, None),
    ("json-year-huge", plain, "GET", "/api/audit/rewards?year=1" + "0" * 30, {}, 422, None),
    ("json-border-year-far", plain, "GET", "/api/audit/cross-border?year=99999", {}, 422, None),
    ("json-bad-body", plain, "POST", "/api/exchange/offers",
     {"content": b"[", "headers": {"content-type": "application/json"}}, 422, None),
    ("json-not-allowed", plain, "GET", "/api/audit/verify", {}, 403, None),
    ("json-unknown-route", plain, "GET", "/api/no/such/route", {}, 404, None),
    ("json-method", plain, "DELETE", "/api/exchange/offers", {}, 405, None),
    ("json-bug", plain, "GET", "/api/exchange/offers", {}, 500, _break_offers),
    ("query-bad", plain, "POST", "/api/query", {"json": {"sql": "drop table x"}}, 400, None),
    ("query-bad-token", plain, "POST", "/api/query",
     {"json": {"sql": "select 1"}, "headers": BAD}, 403, None),
    ("query-bug", plain, "POST", "/api/query", {"json": {"sql": "select 1"}}, 500, _break_query),
    ("jsonld-missing", plain, "GET", "/dataset/nope.jsonld", {}, 404, None),
    ("jsonld-bad-token", plain, "GET", "/dataset/nope.jsonld", {"headers": BAD}, 403, None),
    ("croissant-bug", plain, "GET", "/dataset/x/croissant.json", {}, 500, _break_packages),
    ("catalog-bad-page", plain, "GET", "/catalog.jsonld?page=abc", {}, 422, None),
    ("sharing-no-token", sharing, "GET", "/delta-sharing/shares", {}, 401, None),
    ("sharing-bad-token", sharing, "GET", "/delta-sharing/shares",
     {"headers": {"Authorization": "Bearer x"}}, 401, None),
    ("sharing-bad-param", sharing, "GET", "/delta-sharing/shares?maxResults=abc", {}, 422, None),
    ("sharing-bug", sharing, "GET", "/delta-sharing/shares", {}, 500, _break_sharing),
    ("page-missing", html, "GET", "/dataset/nope", PAGE, 404, None),
    ("page-unknown-route", html, "GET", "/no/such/page", PAGE, 404, None),
    ("page-bad-page", html, "GET", "/?page=abc", PAGE, 400, None),
    ("page-bug", html, "GET", "/dataset/x", PAGE, 500, _break_packages),
    ("page-bug-for-a-client", plain, "GET", "/dataset/x", {}, 500, _break_packages),
    ("page-bad-page-for-a-client", plain, "GET", "/?page=1e3", {}, 400, None),
]  # fmt: skip


@pytest.mark.parametrize(
    "dialect,method,path,kw,status,breaker", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_error_shape(app_client, monkeypatch, caplog, dialect, method, path, kw, status, breaker):
    c, _ = app_client
    if breaker is not None:
        breaker(monkeypatch)
    with caplog.at_level(logging.WARNING):
        r = c.request(method, path, **kw)
    dialect(r, status)
    assert "/srv/secret" not in r.text  # a bug's text never reaches the client
    if status >= 500:  # logged with its traceback, under the id the client was given
        ids = ERROR_ID.findall(r.text)
        logged = [
            rec
            for rec in caplog.records
            if rec.exc_info and any(i in rec.getMessage() for i in ids)
        ]
        assert logged, "the failure was not logged under its error id"


@pytest.mark.parametrize("year", ["10000000000", "1999", "2101", "-5"])
def test_a_reward_year_out_of_range_is_refused_at_once(app_client, year):
    """`/api/audit/rewards?year=10000000000` walked every year from the programme's start
    (a thread busy for good, issue 15): a year outside 2000–2100 is 422 `InvalidRequest` in
    the JSON APIs' one error shape — the status docs/api.md gives a parameter out of its
    range — naming the parameter and its bound, before the caller is even identified."""
    c, _ = app_client
    r = c.get("/api/audit/rewards", params={"year": year})
    plain(r, 422)
    err = r.json()["error"]
    assert err["error"] == "InvalidRequest" and err["transient"] is False
    assert "year" in err["message"]
    assert ("2100" if int(year) > 2100 else "2000") in err["message"]


def test_every_surface_is_covered():
    from nsdx.web.errors import dialect_of

    assert {dialect_of(path.split("?")[0]) for _, _, _, path, *_ in CASES} == {
        "ckan", "json", "sharing", "html"
    }  # fmt: skip


def test_error_fields_live_on_the_base():
    """status, code, hint and transient are the base class's: every error has them."""
    from catalogue.auth import NotAuthorized
    from catalogue.ckan.errors import BadRequest
    from catalogue.errors import DatasetNotFound
    from exchange.errors import LedgerBusy, OrderNotFound
    from exchange.sharing import Unauthenticated
    from ingest.errors import SourceError, StorageUnreachable
    from validation.errors import NsdxError, ValidationFailed

    for cls, status, transient in (
        (NotAuthorized, 403, False), (BadRequest, 400, False), (DatasetNotFound, 404, False),
        (LedgerBusy, 503, True), (OrderNotFound, 404, False), (Unauthenticated, 401, False),
        (SourceError, 400, False), (StorageUnreachable, 503, True), (ValidationFailed, 400, False),
    ):  # fmt: skip
        assert issubclass(cls, NsdxError)
        assert (cls.status, cls.transient) == (status, transient), cls
        assert isinstance(cls.code, str) and cls.code
    assert OrderNotFound.code == "OrderNotFound" and Unauthenticated.code == "UNAUTHENTICATED"
    d = OrderNotFound("order 'x' not found", hint="list orders").to_dict()
    assert d == {"error": "OrderNotFound", "message": "order 'x' not found",
                 "hint": "list orders", "transient": False}  # fmt: skip


def test_cli_dialect(nsdx_env):
    """The CLI's dialect: a message and a hint on stderr, or with --json the JSON APIs'
    ``{"error": {...}}``; exit 1."""
    import json

    from tests.conftest import run_cli

    run_cli("org", "create", "bureau")  # a deployment to look in (reading one creates none)
    p = run_cli("datasets", "show", "nope", check=False)
    assert p.returncode == 1 and p.stderr.startswith("Error: dataset 'nope' not found")
    assert "hint: " in p.stderr
    p = run_cli("datasets", "show", "nope", "--json", check=False)
    assert p.returncode == 1
    err = json.loads(p.stderr)["error"]
    assert err["error"] == "DatasetNotFound" and err["transient"] is False and err["hint"]
