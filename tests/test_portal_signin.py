"""Portal sign-in, sessions, CSRF, the throttle, one's own API tokens, languages and error
pages — over HTTP against the real app (SQLite and PostgreSQL), no browser.

The browser journeys are in tests/test_portal_browser.py.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from catalogue.auth import Accounts
from catalogue.models import WebSession, utcnow
from catalogue.search import drop_indexes
from catalogue.signin import MAX_PER_ACCOUNT, SignInThrottled, WrongPassword, set_password, sign_in
from nsdx.web.app import create_app
from tests.conftest import run_cli
from tests.test_ckan_api import BUS, make_nsdx

HTML = {"accept": "text/html,application/xhtml+xml"}
PASSWORD = "correct horse battery"


@pytest.fixture
def portal(tmp_path, database_url, nsdx_env):
    nx = make_nsdx(tmp_path, database_url)
    acc = Accounts(nx.catalogue)
    acc.create_user("admin", sysadmin=True)
    admin_token, _ = acc.create_token("admin")
    acc.create_org("bureau", title="南沙区交通运输局")
    acc.create_org("other-org")
    for name, org, role in (("alice", "bureau", "member"), ("eve", "other-org", "admin")):
        acc.create_user(name)
        acc.add_member(org, name, role)
        set_password(acc, name, PASSWORD)
    app = create_app(nx, warm=False, worker=False)
    with TestClient(app) as c:
        c.headers.update(HTML)
        c.nx, c.acc, c.admin_token, c.app = nx, acc, admin_token, app
        yield c
    drop_indexes()


def csrf(c: TestClient, path: str = "/user/login") -> str:
    r = c.get(path)
    m = re.search(r'name="csrftoken" value="([^"]+)"', r.text)
    assert m, f"no CSRF field on {path}"
    return m.group(1)


def login(c: TestClient, name: str = "alice", password: str = PASSWORD, **extra):
    return c.post(
        "/user/login",
        data={"csrftoken": csrf(c), "name": name, "password": password, **extra},
        follow_redirects=False,
    )


def text(r) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", r.text))


# -- sign-in and sessions ----------------------------------------------------------------
def test_sign_in_sets_an_httponly_samesite_session_and_sign_out_ends_it(portal):
    r = login(portal, next="/user/tokens")
    assert r.status_code == 303 and r.headers["location"] == "/user/tokens"
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("nsdx_session="))
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    assert "Secure" not in cookie  # plain HTTP here; over HTTPS the cookie is Secure
    page = portal.get("/")
    assert "退出登录（alice）" in page.text
    with portal.acc.cat.Session() as s:
        assert s.query(WebSession).count() == 1
    r = portal.post("/user/logout", data={"csrftoken": csrf(portal, "/")}, follow_redirects=False)
    assert r.status_code == 303
    with portal.acc.cat.Session() as s:
        assert s.query(WebSession).count() == 0
    assert "登录" in portal.get("/").text and "alice" not in portal.get("/").text


def test_secure_cookie_over_https(portal):
    https = TestClient(portal.app, base_url="https://portal.example")
    https.headers.update(HTML)
    r = login(https)
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith("nsdx_session="))
    assert "Secure" in cookie


def test_wrong_password_keeps_the_name_and_says_so_in_the_users_language(portal):
    r = login(portal, password="not the password")
    assert r.status_code == 401
    assert "用户名或密码错误" in r.text
    assert 'value="alice"' in r.text  # the form is kept
    assert "not the password" not in r.text  # but never the password
    portal.cookies.set("nsdx_lang", "en")
    r = login(portal, password="not the password")
    assert "Wrong user name or password." in r.text
    r = login(portal, name="", password="")
    assert r.status_code == 422
    assert "Enter your user name." in r.text and "Enter your password." in r.text


def test_unknown_user_gets_the_same_answer_as_a_wrong_password(portal):
    a, b = login(portal, name="nobody"), login(portal, password="wrong-password")
    assert a.status_code == b.status_code == 401
    assert text(a).count("用户名或密码错误") == text(b).count("用户名或密码错误") == 1


def test_throttle_per_account_survives_a_restart(portal, tmp_path):
    for _ in range(MAX_PER_ACCOUNT):
        assert login(portal, password="wrong-password").status_code == 401
    r = login(portal)  # even the right password is refused while locked
    assert r.status_code == 429 and "登录失败次数过多" in r.text
    assert "nsdx_session" not in r.headers.get("set-cookie", "")
    # another account from the same address still signs in (per-IP limit is higher)
    assert login(portal, name="eve").status_code == 303
    # a new process on the same database: still locked (the counters are in the database)
    fresh = Accounts(make_nsdx(tmp_path, portal.nx.settings.database_url).catalogue)
    with pytest.raises(SignInThrottled):
        sign_in(fresh, "alice", PASSWORD, client="10.0.0.9")
    # a password reset does not unlock it, but the lock expires
    from catalogue.models import SignInFailure

    with fresh.cat.Session.begin() as s:
        s.execute(
            update(SignInFailure)
            .where(SignInFailure.key == "user:alice")
            .values(locked_until=utcnow() - timedelta(seconds=1))
        )
    assert sign_in(fresh, "alice", PASSWORD, client="10.0.0.9").principal.name == "alice"


def test_parallel_attempts_cannot_outrun_the_throttle(portal, monkeypatch):
    """20 parallel wrong passwords for one account: at most the limit of password checks
    run (each attempt is counted before the check), the rest are throttled, none fails."""
    import threading

    from catalogue import signin

    checks, real = [], signin._hasher

    class Counted:
        def verify(self, *a, **kw):
            checks.append(1)
            return real.verify(*a, **kw)

        def __getattr__(self, name):
            return getattr(real, name)

    monkeypatch.setattr(signin, "_hasher", Counted())
    outcomes, start = [], threading.Barrier(20)

    def attempt(i):
        start.wait()
        try:
            signin.sign_in(portal.acc, "alice", "wrong-password-x", client=f"10.9.0.{i}")
            outcomes.append("ok")
        except signin.SignInThrottled:
            outcomes.append("throttled")
        except signin.WrongPassword:
            outcomes.append("wrong")
        except Exception as e:  # noqa: BLE001 - any other failure is the bug
            outcomes.append(repr(e))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(outcomes)) == ["throttled", "wrong"], outcomes
    assert len(checks) <= signin.MAX_PER_ACCOUNT
    assert outcomes.count("wrong") == len(checks)
    with pytest.raises(signin.SignInThrottled):  # even the right password, for now
        signin.sign_in(portal.acc, "alice", PASSWORD, client="10.9.1.1")


def test_throttle_per_address(portal):
    from catalogue import signin

    acc = portal.acc
    for i in range(signin.MAX_PER_IP):
        with pytest.raises(WrongPassword):
            sign_in(acc, f"user{i}", "wrong-password", client="203.0.113.7")
    with pytest.raises(SignInThrottled):
        sign_in(acc, "alice", PASSWORD, client="203.0.113.7")
    assert sign_in(acc, "alice", PASSWORD, client="203.0.113.8").principal.name == "alice"


def test_expired_session_sends_back_to_sign_in_with_a_message(portal):
    assert login(portal).status_code == 303
    with portal.acc.cat.Session.begin() as s:
        s.execute(update(WebSession).values(expires=utcnow() - timedelta(minutes=1)))
    r = portal.get("/user/tokens", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/user/login?next=%2Fuser%2Ftokens&expired=1"
    r = portal.get(r.headers["location"])
    assert "登录已过期，请重新登录。" in r.text


def test_next_is_never_an_open_redirect(portal):
    for bad in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        r = login(portal, next=bad)
        assert r.status_code == 303 and r.headers["location"] == "/"


def test_password_reset_signs_out_existing_sessions(portal):
    assert login(portal).status_code == 303
    set_password(portal.acc, "alice", "a brand new password")
    assert portal.get("/user/tokens", follow_redirects=False).status_code == 303
    assert login(portal).status_code == 401
    assert login(portal, password="a brand new password").status_code == 303


def test_password_rules(portal):
    from catalogue.auth import InvalidInput

    for bad in ("short", "x" * 1025):
        with pytest.raises(InvalidInput):
            set_password(portal.acc, "alice", bad)


# -- CSRF ----------------------------------------------------------------------------------
def test_a_form_from_another_origin_is_refused(portal):
    assert login(portal).status_code == 303
    # what a page elsewhere can send: the victim's cookies ride along, the token does not
    r = portal.post(
        "/user/tokens",
        data={"name": "stolen"},
        headers={"origin": "http://evil.example"},
        follow_redirects=False,
    )
    assert r.status_code == 403
    assert "此表单已过期，或来自其他网站" in r.text
    assert portal.acc.tokens("alice") == []  # nothing was created
    # a wrong token is refused the same way
    r = portal.post("/user/tokens", data={"csrftoken": "forged", "name": "x"})
    assert r.status_code == 403 and portal.acc.tokens("alice") == []


def test_login_csrf_is_refused_even_without_cookies(portal):
    bare = TestClient(portal.app)
    r = bare.post("/user/login", data={"name": "alice", "password": PASSWORD}, headers=HTML)
    assert r.status_code == 403 and "nsdx_session" not in r.headers.get("set-cookie", "")


def test_the_api_is_not_a_csrf_target_and_keeps_working(portal):
    r = portal.post(
        "/api/3/action/package_create",
        json={**BUS, "name": "api-made"},
        headers={"authorization": portal.admin_token, "accept": "application/json"},
    )
    assert r.status_code == 200, r.text


def test_an_oversized_form_is_refused_before_it_is_buffered(portal):
    tok = csrf(portal)
    r = portal.post(
        "/user/login",
        content=b"name=" + b"a" * (2 << 20) + b"&csrftoken=" + tok.encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code in (400, 413) and "nsdx_session" not in r.headers.get("set-cookie", "")


def test_a_malformed_multipart_form_is_a_400_not_a_500(portal):
    """A broken multipart body met by the CSRF check gets the one error answer (400)."""
    bare = TestClient(portal.app, raise_server_exceptions=False)
    bare.cookies.set("a", "b")
    for path in ("/console", "/user/login", "/user/tokens"):
        for accept in ("text/html", "application/json"):
            r = bare.post(
                path,
                content=b"x",
                headers={"content-type": "multipart/form-data; boundary=xx", "accept": accept},
            )
            assert r.status_code == 400, (path, accept, r.status_code, r.text[:300])
            if accept == "application/json":
                assert r.json()["error"]["hint"]
            else:
                assert "<html" in r.text.lower()


def test_the_csrf_check_reads_a_bounded_prefix_of_a_streamed_body():
    """A body sent in 64 KiB chunks (as a server hands it over) whose token is not in its
    first megabyte: refused with 413 after about 1 MiB, not read (or buffered) to its end."""
    import asyncio

    from nsdx.web.csrf import CHECK_BYTES, CSRFMiddleware

    reached = []

    async def app(scope, receive, send):  # never reached
        reached.append(scope["path"])

    mw = CSRFMiddleware(app, secret="s" * 32)
    chunk, total = 64 * 1024, 64 << 20  # a 64 MiB form
    sent = {"n": 0}

    async def receive():
        sent["n"] += 1
        more = sent["n"] * chunk < total
        return {"type": "http.request", "body": b"a" * chunk, "more_body": more}

    out = []

    async def send(msg):
        out.append(msg)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/user/login",
        "raw_path": b"/user/login",
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"cookie", b"csrftoken=x"),
            (b"accept", b"application/json"),
        ],
        "scheme": "http",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 1),
        "root_path": "",
        "app": portal_app_stub(),
    }
    asyncio.run(mw(scope, receive, send))
    assert out[0]["status"] == 413 and reached == []
    assert sent["n"] * chunk <= CHECK_BYTES + 2 * chunk  # a bounded prefix was read


def portal_app_stub():
    class _S:
        pass

    class _App:
        state = _S()

    return _App()


# -- what a signed-in member sees --------------------------------------------------------
def test_member_sees_private_datasets_exactly_as_the_api_shows_them(portal):
    auth = {"authorization": portal.admin_token, "accept": "application/json"}
    for name, private in (("open-one", False), ("secret", True)):
        r = portal.post(
            "/api/3/action/package_create",
            json={**BUS, "name": name, "title": f"南沙{name}", "private": private},
            headers=auth,
        )
        assert r.status_code == 200, r.text
    # anonymous: the private one is neither listed nor shown
    assert "secret" not in portal.get("/").text
    r = portal.get("/dataset/secret")
    assert r.status_code == 404 and "请以该机构成员身份登录" in r.text
    assert login(portal).status_code == 303  # alice, a member of bureau
    home = portal.get("/")
    assert "/dataset/secret" in home.text and "私有" in home.text
    assert portal.get("/dataset/secret").status_code == 200
    api = portal.get(
        "/api/3/action/package_search",
        params={"include_private": "true", "include_drafts": "true"},
        headers={"authorization": portal.acc.create_token("alice")[0], "accept": "*/*"},
    ).json()["result"]
    assert sorted(re.findall(r'href="/dataset/([^"]+)"', home.text)) == sorted(
        p["name"] for p in api["results"]
    )
    # eve belongs to another organisation: not found for her, as for the API
    portal.cookies.clear()
    assert login(portal, name="eve").status_code == 303
    assert "/dataset/secret" not in portal.get("/").text
    assert portal.get("/dataset/secret").status_code == 404


def test_organisation_page_shows_members_to_its_admins_only(portal):
    r = portal.get("/organization/bureau")
    assert r.status_code == 200 and "南沙区交通运输局" in r.text and "成员" not in text(r)
    login(portal)  # a member, not an admin
    assert "alice" not in text(portal.get("/organization/bureau")).replace("alice）", "")
    portal.cookies.clear()
    portal.acc.add_member("bureau", "eve", "admin")
    login(portal, name="eve")
    page = text(portal.get("/organization/bureau"))
    assert "成员" in page and "alice" in page and "管理员" in page
    assert portal.get("/organization/nope").status_code == 404


# -- own API tokens ------------------------------------------------------------------------
def test_create_use_and_revoke_own_tokens(portal):
    login(portal)
    tok = csrf(portal, "/user/tokens")
    r = portal.post("/user/tokens", data={"csrftoken": tok, "name": "laptop", "expires": "30"})
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"  # the secret is on this page
    for page in ("/user/tokens", "/"):  # every page for a signed-in viewer
        assert portal.get(page).headers["cache-control"] == "no-store", page
    secret = re.search(r'value="(nsdx_[^"]+)"', r.text).group(1)
    assert portal.acc.authenticate(secret).name == "alice"
    [t] = portal.acc.tokens("alice")
    assert t["name"] == "laptop" and t["expires"] is not None
    # bad input: the form is kept with a message, nothing created
    r = portal.post("/user/tokens", data={"csrftoken": tok, "name": "x", "expires": "-3"})
    assert r.status_code == 422 and "1 到 3650" in r.text and 'value="-3"' in r.text
    assert len(portal.acc.tokens("alice")) == 1
    # someone else's token cannot be revoked from here
    other, info = portal.acc.create_token("eve")
    r = portal.post(f"/user/tokens/{info['id']}/revoke", data={"csrftoken": tok})
    assert r.status_code == 404
    assert portal.acc.authenticate(other).name == "eve"
    r = portal.post(
        f"/user/tokens/{t['id']}/revoke", data={"csrftoken": tok}, follow_redirects=False
    )
    assert r.status_code == 303
    assert portal.acc.tokens("alice")[0]["status"] == "revoked"
    assert "已撤销" in portal.get("/user/tokens").text


# -- languages and error pages -------------------------------------------------------------
def test_chinese_by_default_english_one_click_away(portal):
    r = portal.get("/")
    assert '<html lang="zh-Hans">' in r.text and "找到 0 个数据集" in r.text
    assert 'href="/lang/en?next=%2F"' in r.text
    r = portal.get("/lang/en", params={"next": "/organization/bureau"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/organization/bureau"
    assert "nsdx_lang=en" in r.headers["set-cookie"]
    r = portal.get("/")
    assert '<html lang="en">' in r.text and "0 datasets found" in r.text
    assert "找到" not in r.text
    portal.get("/lang/zh_CN")
    assert "找到 0 个数据集" in portal.get("/").text


def test_unknown_routes_answer_a_branded_page_to_browsers_and_json_to_programs(portal):
    r = portal.get("/no/such/page")
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert "页面不存在" in r.text and "南沙开放数据目录" in r.text
    portal.cookies.set("nsdx_lang", "en")
    assert "Page not found" in portal.get("/no/such/page").text
    r = portal.get("/no/such/page", headers={"accept": "application/json"})
    assert r.status_code == 404 and r.json()["error"]["error"] == "NotFound"


def test_a_crash_shows_the_branded_500_page(portal):
    from nsdx.web import pages

    def boom(*a, **k):
        raise RuntimeError("kaboom")

    portal.app.state.nsdx.accounts.org_show = boom  # a failure the test cannot cause otherwise
    c = TestClient(portal.app, raise_server_exceptions=False)
    r = c.get("/organization/bureau", headers=HTML)
    assert r.status_code == 500 and "服务器出错了" in r.text and "kaboom" not in r.text
    r = c.get("/organization/bureau", headers={"accept": "application/json"})
    assert r.status_code == 500 and r.json()["error"]["error"] == "InternalError"
    assert "kaboom" not in r.text and r.json()["error"]["error_id"]
    assert pages  # the module whose handler failed


# -- the CLI --------------------------------------------------------------------------------
def test_cli_sets_passwords_from_stdin_never_from_argv(nsdx_env):
    import subprocess

    from tests.conftest import NSDX

    def cli(*args, stdin=""):
        import os

        return subprocess.run(
            [NSDX, *args], input=stdin, capture_output=True, text=True,
            env={**os.environ, **nsdx_env}, timeout=120,
        )  # fmt: skip

    run_cli("org", "create", "bureau", env=nsdx_env)  # a deployment (listing one creates none)
    r = cli("user", "create", "root", "--sysadmin", "--password-stdin", stdin="too short\n")
    assert r.returncode != 0 and "10 to 1024" in r.stderr
    assert "root" not in run_cli("user", "list", "--json", env=nsdx_env).stdout  # nothing half-done
    r = cli("user", "create", "root", "--sysadmin", "--password-stdin", stdin=PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    from nsdx.core import Nsdx

    acc = Accounts(Nsdx().catalogue)
    assert sign_in(acc, "root", PASSWORD).principal.sysadmin
    r = cli("user", "password", "root", "--password-stdin", stdin="another long password\n")
    assert r.returncode == 0, r.stderr
    with pytest.raises(WrongPassword):
        sign_in(acc, "root", PASSWORD)
    assert sign_in(acc, "root", "another long password").principal.name == "root"
