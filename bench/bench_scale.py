"""Scale benchmark for docs/scale.md: each part of nsdx measured at growing multiples of
today's demo, and the measured growth extrapolated to 100x and 10,000x.

    .venv/bin/python bench/bench_scale.py [--search 140,1400,14000]
        [--ledger 7200,72000,720000] [--rows 1000000,10000000] [--files 14,140,1400]

Today's demo (``make demo``): 14 datasets, one published version each, ~1.1 M rows (the bus
GPS table has 1,000,000 of them), 72 ledger entries (``nsdx exchange demo``), and the load
benchmark's 50 concurrent readers. Each part is measured in the same run at several sizes:

* **catalogue search** — the in-memory index every server process holds
  (:mod:`catalogue.search`): build time from the database, resident memory it adds, and
  p50 latency of package_search-like queries (text, facets, filter), at N datasets
  generated as ``bench/bench_search.py`` does, each size in a fresh process;
* **ledger** — ``verify_ledger`` over N entries and an inclusion and a consistency proof
  at N from a fresh store (SQLite: the same tree code as PostgreSQL, no server noise);
* **query delivery** — one DuckDB aggregate (``GROUP BY`` with count/avg/max, as
  ``bench/bench_delivery.py``) over R rows of Parquet, one thread and two;
* **storage layout** — the same aggregate over the same rows split into K files (one per
  published version), i.e. what listing and opening many versions' footers costs.

For each part the exponent b of cost ~ size^b is fitted between the two largest sizes
measured, and the cost projected to 100x and 10,000x of the demo (sizes beyond those measured
are marked as projections). The ratio column compares the largest measured size with the
smallest in the same run. Prints markdown tables.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

DEMO = {"datasets": 14, "rows": 1_100_000, "entries": 72, "files": 14}
SEARCHES = [
    {"q": "公交"},
    {"q": "地铁", "facet_fields": ["organization", "tags", "res_format"]},
    {"q": "bus gps", "rows": 20},
    {"q": "congestion", "fq": "domain:transport"},
    {"fq": "organization:org-07", "facet_fields": ["tags", "license_id"]},
    {"q": "*:*", "facet_fields": ["organization", "tags", "res_format", "license_id"]},
]


def _rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _search_size(n: int, out) -> None:
    """In a fresh process: generate n datasets, build the index, time queries."""
    from bench_search import generate

    from catalogue.access import ANONYMOUS
    from catalogue.editing import render_packages
    from catalogue.registry import Catalogue
    from catalogue.search import index_for

    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{d}/s.db"
        generate(url, n)
        cat = Catalogue(url)
        rss0 = _rss_mb()
        idx = index_for(cat, render_packages)
        t = time.perf_counter()
        idx.refresh()
        build = time.perf_counter() - t
        rss = _rss_mb() - rss0
        lat = []
        for _ in range(5):
            for q in SEARCHES:
                t = time.perf_counter()
                idx.search(principal=ANONYMOUS, **q)
                lat.append(time.perf_counter() - t)
        cat.engine.dispose()
    out.put((n, build, rss, statistics.median(lat) * 1000))


def bench_search(sizes: list[int]) -> list[tuple]:
    ctx = mp.get_context("spawn")
    rows = []
    for n in sizes:
        q = ctx.Queue()
        p = ctx.Process(target=_search_size, args=(n, q))
        p.start()
        rows.append(q.get())
        p.join()
    return rows


def bench_ledger(sizes: list[int]) -> list[tuple]:
    from catalogue.db import make_engine
    from exchange.ledger.keys import load_signer
    from exchange.ledger.store import LedgerStore
    from exchange.ledger.verify import verify_ledger

    rows = []
    with tempfile.TemporaryDirectory() as d:
        eng = make_engine(f"sqlite:///{d}/l.db")
        store = LedgerStore(eng, load_signer(Path(d), {}))
        have = 0
        for n in sorted(sizes):
            while have < n:
                k = min(10_000, n - have, max(1, n // 2))  # a checkpoint below n
                with store.transaction() as s:
                    store.append_many(
                        s,
                        [("bench", {"order": f"o{have + j}", "amount_fen": have + j}) for j in range(k)],
                    )  # fmt: skip
                have += k
            store.checkpoint()
            t = time.perf_counter()
            res = verify_ledger(store, store.signer.verifier_key)
            verify = time.perf_counter() - t
            assert res.ok, res.problems
            fresh = LedgerStore(eng, store.signer)
            t = time.perf_counter()
            fresh.inclusion(n // 3, n)
            proof = time.perf_counter() - t
            older = max(cp.tree_size for cp in store.checkpoints() if 0 < cp.tree_size < n)
            t = time.perf_counter()
            fresh.consistency(older, n)
            cons = time.perf_counter() - t
            rows.append((n, verify, proof * 1000, cons * 1000))
        eng.dispose()
    return rows


AGG = (
    "SELECT route, count(*), avg(speed), max(ts) FROM read_parquet({src}) "
    "GROUP BY route ORDER BY route"
)


def _write_rows(con, path: Path, n: int, offset: int = 0) -> None:
    con.execute(
        f"COPY (SELECT 'R' || (i % 97) AS route, (i * 7919) % 80 + 0.5 AS speed, "
        f"TIMESTAMP '2025-01-01' + to_seconds(i) AS ts, i AS id "
        f"FROM range({offset}, {offset + n}) t(i)) TO '{path}' (FORMAT parquet)"
    )


def _time_query(con, src: str, repeat: int = 3) -> float:
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        con.execute(AGG.format(src=src)).fetchall()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def bench_query(row_sizes: list[int], file_counts: list[int]) -> tuple[list, list]:
    import duckdb

    by_rows, by_files = [], []
    with tempfile.TemporaryDirectory() as d:
        con = duckdb.connect()
        con.execute("SET memory_limit = '512MB'")
        for n in row_sizes:
            path = Path(d) / f"rows_{n}.parquet"
            _write_rows(con, path, n)
            res = []
            for threads in (1, 2):
                con.execute(f"SET threads = {threads}")
                res.append(_time_query(con, f"'{path}'"))
            by_rows.append((n, *res))
        total = 1_000_000
        con.execute("SET threads = 1")
        for k in file_counts:
            folder = Path(d) / f"files_{k}"
            folder.mkdir()
            per = total // k
            for j in range(k):
                _write_rows(con, folder / f"v{j:05d}.parquet", per, j * per)
            files = sorted(str(p) for p in folder.glob("*.parquet"))
            by_files.append((k, _time_query(con, repr(files))))
        con.close()
    return by_rows, by_files


def exponent(xs: list[float], ys: list[float]) -> float:
    """b in y ~ x^b between the two largest sizes."""
    (x1, y1), (x2, y2) = sorted(zip(xs, ys, strict=True))[-2:]
    if y1 <= 0 or y2 <= 0 or x1 == x2:
        return float("nan")
    return math.log(y2 / y1) / math.log(x2 / x1)


def project(xs: list[float], ys: list[float], x: float) -> float:
    b = exponent(xs, ys)
    x0, y0 = max(zip(xs, ys, strict=True))
    return y0 * (x / x0) ** b


def fmt(v: float, unit: str) -> str:
    if unit == "s" and v < 1:
        return f"{v * 1000:,.0f} ms"
    if unit == "s" and v >= 3600:
        return f"{v / 3600:,.1f} h"
    if unit == "ms" and v >= 1000:
        return f"{v / 1000:,.1f} s"
    return f"{v:,.1f} {unit}" if v < 100 else f"{v:,.0f} {unit}"


def table(title: str, base_key: str, xs: list[int], cols: list[tuple[str, list[float], str]]):
    base = DEMO[base_key]
    print(f"\n### {title}\n")
    head = "| measure | " + " | ".join(f"{x:,} ({x / base:,.0f}×)" for x in xs)
    print(head + " | exponent b | at 100× (projected) | at 10,000× (projected) |")
    print("|---" * (len(xs) + 4) + "|")
    for name, ys, unit in cols:
        b = exponent(xs, ys)
        cells = " | ".join(fmt(y, unit) for y in ys)
        p100 = fmt(project(xs, ys, 100 * base), unit) if 100 * base > max(xs) else "measured"
        p10k = fmt(project(xs, ys, 10_000 * base), unit) if 10_000 * base > max(xs) else "measured"
        print(f"| {name} | {cells} | {b:.2f} | {p100} | {p10k} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ints = lambda s: [int(x) for x in s.split(",")]  # noqa: E731
    ap.add_argument("--search", type=ints, default=[140, 1400, 14000])
    ap.add_argument("--ledger", type=ints, default=[7200, 72000, 720000])
    ap.add_argument("--rows", type=ints, default=[1_000_000, 10_000_000])
    ap.add_argument("--files", type=ints, default=[14, 140, 1400])
    a = ap.parse_args()
    with open("/proc/loadavg", encoding="ascii") as f:
        load0 = f.read().split()[:3]
    t0 = time.perf_counter()
    s = bench_search(a.search)
    table(
        "Catalogue search (in-memory index, per server process)",
        "datasets",
        [r[0] for r in s],
        [
            ("index build from the database", [r[1] for r in s], "s"),
            ("memory added (RSS)", [r[2] for r in s], "MB"),
            ("query p50 (6 query shapes)", [r[3] for r in s], "ms"),
        ],
    )
    led = bench_ledger(a.ledger)
    table(
        "Ledger (SQLite; the tree code is the same on PostgreSQL)",
        "entries",
        [r[0] for r in led],
        [
            ("verify every entry", [r[1] for r in led], "s"),
            ("inclusion proof, fresh store", [r[2] for r in led], "ms"),
            ("consistency proof, fresh store", [r[3] for r in led], "ms"),
        ],
    )
    by_rows, by_files = bench_query(a.rows, a.files)
    table(
        "Query delivery (DuckDB aggregate over Parquet)",
        "rows",
        [r[0] for r in by_rows],
        [
            ("1 thread", [r[1] for r in by_rows], "s"),
            ("2 threads", [r[2] for r in by_rows], "s"),
        ],
    )
    table(
        "Storage layout (1,000,000 rows split into K version files, 1 thread)",
        "files",
        [r[0] for r in by_files],
        [("aggregate over K files", [r[1] for r in by_files], "s")],
    )
    with open("/proc/loadavg", encoding="ascii") as f:
        load1 = f.read().split()[:3]
    print(
        f"\nLoad average before / after: {' '.join(load0)} / {' '.join(load1)}; "
        f"run took {time.perf_counter() - t0:.0f} s."
    )


if __name__ == "__main__":
    main()
