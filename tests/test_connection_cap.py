"""The connection cap of a real `nsdx serve` (issue 15): past `NSDX_MAX_CONNECTIONS`, a
request is answered 503 at once in the project's one error shape with `Retry-After` — the
JSON APIs' `{"error": {...}}`, the CKAN envelope, the branded page for a browser — not
uvicorn's plain-text `Service Unavailable`; and once a connection closes, requests are
served again.

The server (a subprocess on SQLite) is capped at 3 connections; three kept-alive
connections that each had an answer hold the cap. No assertion is about time: each wait is
for a state, up to a bound whose only purpose is not to hang the suite.
"""

from __future__ import annotations

import os
import time

import httpx
import pytest

from tests.servers import serve

pytestmark = pytest.mark.xdist_group("connection_cap")

CAP = 3
BROWSER = {"Accept": "text/html,application/xhtml+xml", "Accept-Language": "zh-CN"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("cap")
    home = root / "home"
    (root / "datasets.yaml").write_text("datasets: []\n", encoding="utf-8")
    env = {
        **os.environ,
        "NSDX_HOME": str(home),
        "NSDX_DATABASE_URL": f"sqlite:///{home / 'nsdx.db'}",
        "NSDX_STORAGE_URL": f"file://{home / 'objects'}",
        "NSDX_DATASETS": str(root / "datasets.yaml"),
        "NSDX_MAX_CONNECTIONS": str(CAP),
        # the held connections stay open for the whole module
        "NSDX_HEADER_TIMEOUT": "300",
        "NSDX_KEEP_ALIVE": "300",
        "NSDX_VALIDATION_LINGER": "0",
    }
    proc, base = serve(env, root)
    yield type("Server", (), {"proc": proc, "base": base})()
    proc.kill()
    proc.wait()


def _hold(base: str, n: int) -> list[httpx.Client]:
    """``n`` connections the server has accepted and keeps open (each had one answer)."""
    held = []
    for _ in range(n):
        c = httpx.Client(base_url=base, timeout=60)
        assert c.get("/api/3/action/status_show").status_code == 200
        held.append(c)
    return held


def test_past_the_cap_the_answer_is_the_error_shape(server):
    held = _hold(server.base, CAP)
    try:
        # the JSON APIs: {"error": {...}}, Retry-After, the connection closed after it
        r = httpx.get(server.base + "/api/exchange/offers", timeout=60)
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/json")
        assert r.headers["retry-after"] == "1"
        assert r.headers["connection"] == "close"
        err = r.json()["error"]
        assert set(r.json()) == {"error"}
        assert err["error"] == "ServerBusy" and err["transient"] is True
        assert str(CAP) in err["message"] and err["hint"]

        # the CKAN Action API: its envelope
        r = httpx.get(server.base + "/api/3/action/package_list", timeout=60)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        body = r.json()
        assert body["success"] is False and body["error"]["message"]

        # a POST is refused before its body is read or its CSRF token checked
        r = httpx.post(server.base + "/api/exchange/offers", json={"x": 1}, timeout=60)
        assert r.status_code == 503 and r.json()["error"]["error"] == "ServerBusy"

        # a browser: the branded page, in its language; a client asking no HTML: JSON
        r = httpx.get(server.base + "/", headers=BROWSER, timeout=60)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.headers["content-type"].startswith("text/html")
        assert "<html" in r.text and 'lang="zh' in r.text and "503" in r.text
        assert "/static/" in r.text  # the portal's own page (its style sheet), not plain text
        r = httpx.get(server.base + "/", timeout=60)
        assert r.status_code == 503 and r.json()["error"]["error"] == "ServerBusy"
        assert "Service Unavailable" not in r.text  # uvicorn's plain-text answer
    finally:
        for c in held[1:]:
            c.close()
    # the cap is per open connection: with two of the three closed, requests are served
    bound = time.monotonic() + 60
    while True:
        r = httpx.get(server.base + "/api/3/action/status_show", timeout=60)
        if r.status_code == 200 or time.monotonic() > bound:
            break
        time.sleep(0.05)  # until the server has seen the connections close
    assert r.status_code == 200, r.text
    assert held[0].get("/api/3/action/status_show").status_code == 200  # still open, served
    held[0].close()
