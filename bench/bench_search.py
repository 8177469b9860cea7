"""Benchmark: package_search and package_show over 10,000 generated datasets, through a
real `nsdx serve` (uvicorn), on SQLite and on PostgreSQL.

    .venv/bin/python bench/bench_search.py [--datasets 10000] [--requests 2000]
        [--concurrency 8] [--backends sqlite,postgres]

Prints a markdown table: sequential latency (p50/p99) and throughput with a concurrent
client. The baseline row is the status_show action (the HTTP + envelope floor).
Goal from issue 5: package_search p50 <= 15 ms and p99 <= 50 ms at 10,000 datasets.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
NSDX = str(Path(sys.executable).parent / "nsdx")
PG_ADMIN = os.environ.get("NSDX_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")

PLACES = ["南沙", "黄阁", "横沥", "万顷沙", "珠江", "大岗", "榄核", "东涌", "龙穴岛", "蕉门"]
TOPICS = [
    ("公交车辆GPS轨迹", "bus GPS positions", "transport", ["公交", "gps"]),
    ("地铁客流", "metro ridership", "transport", ["地铁", "客流"]),
    ("出租车订单", "taxi trips", "transport", ["出租车"]),
    ("道路拥堵指数", "road congestion index", "transport", ["道路", "拥堵"]),
    ("共享单车停放", "shared bike parking", "transport", ["单车"]),
    ("12345热线工单", "citizen hotline cases", "urban-management", ["热线"]),
    ("占道经营巡查", "street vending inspections", "urban-management", ["巡查"]),
    ("无人机巡检影像", "drone inspection imagery", "urban-management", ["无人机"]),
    ("垃圾分类称重", "waste sorting weights", "urban-management", ["垃圾分类"]),
    ("港口集装箱吞吐", "port container throughput", "transport", ["港口", "集装箱"]),
]
ORGS = [f"org-{i:02d}" for i in range(40)]
FORMATS = ["CSV", "JSON", "Parquet", "XLSX", "GTFS"]
LICENSES = ["CC-BY-4.0", "CC0-1.0", "ODbL-1.0", "other-closed"]

QUERIES = [
    {"q": "公交"},
    {"q": "地铁", "facet.field": '["organization","tags","res_format"]'},
    {"q": "bus gps", "rows": 20},
    {"q": "南沙 热线", "sort": "metadata_modified desc"},
    {"q": "congestion", "fq": "domain:transport"},
    {"fq": "organization:org-07", "facet.field": '["tags","license_id"]'},
    {"fq": "tags:无人机 +res_format:CSV"},
    {"q": "港口", "fq": "metadata_modified:[2020-01-01T00:00:00Z TO NOW]", "rows": 50},
    {"q": "*:*", "facet.field": '["organization","tags","res_format","license_id","domain"]'},
    {"q": "taxi OR 单车", "start": 20},
]


def generate(database_url: str, n: int, seed: int = 5) -> None:
    """n datasets with tags, extras and 1-3 link resources, in one transaction."""
    from catalogue.auth import Accounts
    from catalogue.models import Dataset, DatasetTag, LinkResource, Organization, utcnow
    from catalogue.registry import Catalogue

    rnd = random.Random(seed)
    cat = Catalogue(database_url)
    acc = Accounts(cat)
    acc.create_user("bench", sysadmin=True)
    with cat.Session.begin() as s:
        orgs = [Organization(name=o, title=f"机构 {o}", description="", extras={}) for o in ORGS]
        s.add_all(orgs)
        s.flush()
        now = utcnow()
        for i in range(n):
            place = rnd.choice(PLACES)
            zh, en, domain, tags = rnd.choice(TOPICS)
            ds = Dataset(
                name=f"ds-{i:05d}-{domain}",
                title=f"{place}{zh} {i}",
                title_en=f"{en} ({place}) #{i}",
                notes=f"{place}区{zh}数据，{rnd.randint(2015, 2025)}年起每日更新。An open dataset of {en}.",
                domain=domain,
                access=rnd.choice(["open", "open", "restricted"]),
                license_id=rnd.choice(LICENSES),
                private=rnd.random() < 0.1,
                organization=rnd.choice(orgs),
                extras={"update_frequency": rnd.choice(["daily", "monthly", "yearly"])},
                metadata_created=now,
                metadata_modified=now,
            )
            ds.tags = [DatasetTag(tag=t) for t in tags + [rnd.choice(PLACES)]]
            s.add(ds)
            s.flush()
            for j in range(rnd.randint(1, 3)):
                s.add(
                    LinkResource(
                        dataset_id=ds.id,
                        position=j,
                        name=f"{zh} part {j}",
                        description="",
                        format=rnd.choice(FORMATS),
                        url=f"https://data.nansha.gov.cn/{i}/{j}",
                        extras={},
                    )
                )


def start_server(home: Path, database_url: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "NSDX_HOME": str(home), "NSDX_DATABASE_URL": database_url}
    proc = subprocess.Popen(
        [NSDX, "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            httpx.get(f"{url}/api/3/action/status_show", timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start")


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def sequential(url: str, action: str, params_list: list[dict], n: int) -> list[float]:
    out = []
    with httpx.Client(base_url=url, timeout=30) as c:
        for i in range(n):
            t = time.perf_counter()
            r = c.get(f"/api/3/action/{action}", params=params_list[i % len(params_list)])
            out.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text[:300]
    return out


def concurrent(url: str, action: str, params_list: list[dict], n: int, workers: int):
    lat: list[float] = []
    lock = threading.Lock()
    counter = iter(range(n))

    def work():
        with httpx.Client(base_url=url, timeout=30) as c:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t = time.perf_counter()
                r = c.get(f"/api/3/action/{action}", params=params_list[i % len(params_list)])
                dt = (time.perf_counter() - t) * 1000
                assert r.status_code == 200
                with lock:
                    lat.append(dt)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, n / (time.perf_counter() - t0)


def bench_backend(backend: str, n: int, requests: int, workers: int) -> list[tuple]:
    tmp = Path(tempfile.mkdtemp(prefix=f"nsdx-bench-{backend}-"))
    pg_name = None
    if backend == "sqlite":
        db = f"sqlite:///{tmp / 'nsdx.db'}"
    else:
        import psycopg

        pg_name = f"nsdx_bench_{os.getpid()}"
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{pg_name}"')
            c.execute(f'CREATE DATABASE "{pg_name}"')
        db = f"postgresql+psycopg://postgres@127.0.0.1:5432/{pg_name}"
    t = time.perf_counter()
    generate(db, n)
    gen_s = time.perf_counter() - t
    proc, url = start_server(tmp / "home", db)
    rows = []
    try:
        t = time.perf_counter()
        r = httpx.get(f"{url}/api/3/action/package_search", params={"rows": 0}, timeout=600)
        index_s = time.perf_counter() - t
        count = r.json()["result"]["count"]
        names = httpx.get(f"{url}/api/3/action/package_list", params={"limit": 500}).json()[
            "result"
        ]
        show_params = [{"id": x} for x in names]
        sequential(url, "package_search", QUERIES, 50)  # warm-up
        base = sequential(url, "status_show", [{}], requests // 2)
        seq = sequential(url, "package_search", QUERIES, requests)
        conc, rps = concurrent(url, "package_search", QUERIES, requests, workers)
        show = sequential(url, "package_show", show_params, requests // 2)
        show_c, show_rps = concurrent(url, "package_show", show_params, requests // 2, workers)
        rows = [
            (backend, "status_show (baseline)", 1, pct(base, 50), pct(base, 99), None),
            (backend, "package_search", 1, pct(seq, 50), pct(seq, 99),
             1000 / statistics.mean(seq)),
            (backend, "package_search", workers, pct(conc, 50), pct(conc, 99), rps),
            (backend, "package_show", 1, pct(show, 50), pct(show, 99),
             1000 / statistics.mean(show)),
            (backend, "package_show", workers, pct(show_c, 50), pct(show_c, 99), show_rps),
        ]  # fmt: skip
        print(
            f"<!-- {backend}: {count} public datasets visible of {n}; generated in {gen_s:.1f} s; "
            f"index built in {index_s:.1f} s -->",
            flush=True,
        )
    finally:
        proc.terminate()
        proc.wait(10)
        if pg_name:
            from catalogue.db import dispose_all

            dispose_all()
            import psycopg

            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", type=int, default=10_000)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--backends", default="sqlite,postgres")
    a = ap.parse_args()
    rows = []
    for b in a.backends.split(","):
        rows += bench_backend(b, a.datasets, a.requests, a.concurrency)
    print(f"\n{a.datasets:,} datasets, {a.requests:,} requests per row, {os.cpu_count()} CPUs\n")
    print("| database | action | clients | p50 ms | p99 ms | req/s |")
    print("|---|---|---:|---:|---:|---:|")
    for b, action, c, p50, p99, rps in rows:
        print(f"| {b} | {action} | {c} | {p50:.1f} | {p99:.1f} | {rps:.0f} |"
              if rps else f"| {b} | {action} | {c} | {p50:.1f} | {p99:.1f} | |")  # fmt: skip


if __name__ == "__main__":
    main()
