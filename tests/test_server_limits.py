"""The limits of a real `nsdx serve` process (issue 15): idle and half-sent connections are
closed, a query's memory is held by its own process, slow queries cannot starve the
catalogue, and SIGTERM stops the server with queries running.

One server (a subprocess, SQLite, one dataset) serves the module; the last test stops it.
No assertion is about time: each waits for a state (a socket closed, a process gone) up to
a generous bound whose only purpose is not to hang the suite.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time

import httpx
import pytest

from tests.servers import serve

pytestmark = pytest.mark.xdist_group("server_limits")

MEMORY_LIMIT_MB = 256  # DuckDB's; the query process may hold it + 384 MiB


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc: every thread's children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(x) for x in f.read().split())
        except OSError:
            continue
    return out


def rss_mb(pids: list[int]) -> int:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total // 2**20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from nsdx.core import Nsdx
    from nsdx.settings import Settings
    from tests.test_ckan_api import BUS

    root = tmp_path_factory.mktemp("serve")
    home = root / "home"
    env = {
        **os.environ,
        "NSDX_HOME": str(home),
        "NSDX_DATABASE_URL": f"sqlite:///{home / 'nsdx.db'}",
        "NSDX_STORAGE_URL": f"file://{home / 'objects'}",
        "NSDX_DATASETS": str(root / "datasets.yaml"),
        "NSDX_HEADER_TIMEOUT": "1",
        "NSDX_KEEP_ALIVE": "1",
        "NSDX_SHUTDOWN_TIMEOUT": "3",
        "NSDX_QUERY_MEMORY_LIMIT": f"{MEMORY_LIMIT_MB}MB",
        "NSDX_QUERY_TIMEOUT": "120",  # the slow queries below end by SIGTERM, not by time
        "NSDX_QUERY_THREADS": "1",
        "NSDX_QUERY_CONCURRENCY": "2",
        "NSDX_QUERY_QUEUE_WAIT": "0.5",
        "NSDX_VALIDATION_LINGER": "0",
    }
    nx = Nsdx(
        Settings(
            home=home,
            database_url=env["NSDX_DATABASE_URL"],
            storage_url=env["NSDX_STORAGE_URL"],
            datasets_path=root / "datasets.yaml",
        )
    )
    nx.accounts.create_user("admin", sysadmin=True)
    nx.accounts.create_org("bureau", title="南沙区交通运输局")
    token, _ = nx.accounts.create_token("admin")
    proc, base = serve(env, root)
    r = httpx.post(
        base + "/api/3/action/package_create", json=BUS, headers={"Authorization": token}
    )
    assert r.status_code == 200, r.text
    port = int(base.rsplit(":", 1)[1])
    srv = type("Server", (), {"proc": proc, "base": base, "port": port, "slow": []})()
    yield srv
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_idle_and_half_sent_connections_are_closed(server):
    """300 sockets that send nothing, and one that sends half a request head, are all
    closed by the server (NSDX_HEADER_TIMEOUT); before, none was."""
    socks = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(300)]
    half = socket.create_connection(("127.0.0.1", server.port))
    half.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    socks.append(half)
    open_ = set(range(len(socks)))
    bound = time.monotonic() + 60
    while open_ and time.monotonic() < bound:
        for i in list(open_):
            socks[i].settimeout(0.01)
            try:
                if socks[i].recv(1) == b"":
                    open_.discard(i)
            except TimeoutError:
                pass
            except OSError:
                open_.discard(i)
    for s in socks:
        s.close()
    assert not open_, f"{len(open_)} of 301 connections still open"
    assert httpx.get(server.base + "/api/3/action/status_show").status_code == 200


def test_a_query_cannot_take_the_servers_memory(server):
    """`select repeat('x', 900000000)` once grew the server by 1.7 GB. Now its query
    process is stopped past NSDX_QUERY_MEMORY_LIMIT + 384 MiB: a 400, and the server with
    all its processes stays within that bound of where it was."""
    pids = tree(server.proc.pid)
    before = rss_mb(pids)
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(tree(server.proc.pid)))
            time.sleep(0.01)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        r = httpx.post(
            server.base + "/api/query",
            json={"sql": "select repeat('x', 900000000) as s"},
            timeout=120,
        )
    finally:
        done.set()
        t.join()
    assert r.status_code == 400, r.text
    assert r.json()["error"]["error"] == "QueryMemoryExceeded"
    allowed = MEMORY_LIMIT_MB + 384 + 250  # the bound, the spare query process, sampling
    assert peak[0] - before < allowed, (before, peak[0])
    # the server still answers queries (a new query process took the stopped one's place)
    r = httpx.post(server.base + "/api/query", json={"sql": "select 42 as x"}, timeout=60)
    assert r.status_code == 200 and r.json()["rows"] == [[42]]


SLOW = "select count(*) from range(1000000000000) a"


def _fill_slots(server) -> list[threading.Thread]:
    """Two slow queries holding both query slots (returns once a query gets 503)."""
    server.slow = []
    stopping = server.stopping = threading.Event()

    def slow() -> None:
        bound = time.monotonic() + 60
        try:
            while True:  # a probe below may hold the slot for a moment: ask again
                r = httpx.post(server.base + "/api/query", json={"sql": SLOW}, timeout=120)
                if r.status_code != 503 or stopping.is_set() or time.monotonic() > bound:
                    break
            server.slow.append(r.status_code)
        except httpx.HTTPError as e:
            server.slow.append(type(e).__name__)

    threads = [threading.Thread(target=slow, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.3)  # the first takes its slot before the second asks
    bound = time.monotonic() + 60
    while time.monotonic() < bound:
        r = httpx.post(server.base + "/api/query", json={"sql": "select 1"}, timeout=60)
        if r.status_code == 503 and len(server.slow) == 0:
            break
        time.sleep(0.2)
    assert r.status_code == 503, r.text
    while len(tree(server.proc.pid)) < 3 and time.monotonic() < bound:
        time.sleep(0.05)  # both slots' processes started
    return threads


def test_slow_queries_cannot_starve_the_catalogue(server):
    """Both query slots held by slow queries, 60 more queries at once: those get 503 with
    Retry-After, and package_show answers — while the slow queries still run. (Before,
    waiting queries held the request threads: 60 slow queries made package_show wait.)"""
    threads = _fill_slots(server)

    async def burst():
        async with httpx.AsyncClient(base_url=server.base, timeout=60) as c:
            queries = [c.post("/api/query", json={"sql": SLOW}) for _ in range(60)]
            show = c.get("/api/3/action/package_show", params={"id": "nansha-bus-gps"})
            return await asyncio.gather(show, *queries)

    show, *answers = asyncio.run(burst())
    assert show.status_code == 200 and show.json()["result"]["name"] == "nansha-bus-gps"
    assert all(t.is_alive() for t in threads) and server.slow == []  # still running
    assert {a.status_code for a in answers} == {503}
    busy = answers[0]
    assert busy.json()["error"]["error"] == "QueryBusy" and busy.headers["retry-after"]
    server.slow_threads = threads


def test_sigterm_stops_the_server_with_queries_running(server):
    """SIGTERM with both slow queries still running: the server answers them (503) and
    exits, and its query processes are gone."""
    threads = getattr(server, "slow_threads", [])
    if not threads or not all(t.is_alive() for t in threads):
        threads = _fill_slots(server)  # run alone: its own slow queries
    pids = tree(server.proc.pid)
    assert len(pids) >= 3  # the server and its two busy query processes
    server.stopping.set()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises it
    for t in threads:
        t.join(timeout=60)
    assert server.slow == [503, 503]
    alive = []
    for p in pids[1:]:
        try:
            os.kill(p, 0)
            with open(f"/proc/{p}/stat") as f:
                if f.read().split()[2] != "Z":
                    alive.append(p)
        except OSError:
            pass
    assert alive == []
