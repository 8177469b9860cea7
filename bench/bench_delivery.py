"""Delivery benchmark: the ways an AI firm reads published data, each against a baseline
measured in the same run (medians of interleaved rounds):

1. a query over ``nsdx.connect()`` views vs DuckDB ``read_parquet`` on the same files, on the
   local folder and on S3 (SeaweedFS) — goal <= 1.05;
2. the same query remotely, ``nsdx.connect(portal_url)`` (DuckDB over the portal's download
   routes, which redirect to presigned URLs), vs DuckDB reading the same files straight from
   S3 — goal <= 1.3;
3. downloading the Parquet route vs a plain Starlette ``FileResponse`` of the same file, both
   under uvicorn (throughput ratio) — goal >= 0.9;
4. the CSV conversion of the 1M-row bus table through ``nsdx serve``: the server's peak RSS
   — goal < 300 MB.

Starts its own SeaweedFS and servers; needs nothing running::

    .venv/bin/python bench/bench_delivery.py [--rows 1000000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

QUERY = (
    "SELECT route_id, count(*) AS n, round(avg(speed_kmh), 2) AS v, max(ts) AS last "
    "FROM {src} GROUP BY route_id ORDER BY route_id"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bus_dataset(work: Path, rows: int) -> Path:
    """The demo's bus GPS dataset (generated, ``rows`` rows) declared without expectations."""
    import numpy as np
    import yaml

    from nsdx.samples.transport import gen_bus_gps

    data, _ = gen_bus_gps(np.random.default_rng(7), rows)
    csv = work / "bus_gps.csv"
    csv.write_bytes(data)
    spec = next(
        d
        for d in yaml.safe_load((ROOT / "datasets.yaml").read_text(encoding="utf-8"))["datasets"]
        if d["id"] == "nansha-bus-gps"
    )
    spec = {**spec, "source": {**spec["source"], "path": str(csv)}}
    spec.pop("expectations", None)
    out = work / "datasets.yaml"
    out.write_text(yaml.safe_dump({"datasets": [spec]}, allow_unicode=True), encoding="utf-8")
    return out


def env_for(work: Path, ds_yaml: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {
        "NSDX_HOME": str(work / "home"),
        "NSDX_DATASETS": str(ds_yaml),
        "NSDX_PII_KEY": "bench",
        "NSDX_VALIDATION_WORKER": "0",
        "NSDX_SERVE_WORKER": "0",
        **extra,
    }
    return env


def use_env(env: dict[str, str]) -> None:
    for k in ("NSDX_STORAGE_URL", "NSDX_DATABASE_URL", "NSDX_PUBLIC_URL", "AWS_ENDPOINT_URL"):
        os.environ.pop(k, None)
    os.environ.update(env)


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(cases: dict, rounds: int) -> dict[str, float]:
    """Median seconds of each case over ``rounds`` rounds, cases alternating within a round."""
    times: dict[str, list[float]] = {k: [] for k in cases}
    for fn in cases.values():
        fn()  # warm: imports, footers, connections
    for i in range(rounds):
        order = list(cases.items())
        if i % 2:
            order.reverse()
        for k, fn in order:
            times[k].append(timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}


class Server:
    """The nsdx app (or any ASGI app) under uvicorn in a thread."""

    def __init__(self, app) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def table_files(nx) -> tuple[list[str], str]:
    from catalogue import downloads as dl

    (t,) = [x for x in dl.all_tables(nx.catalogue) if x.current]
    return [nx.store.uri(f.key) for f in t.files], t.path("parquet")


def query_cases(nx, remote_url: str | None = None) -> dict:
    """nsdx.connect() views (and optionally the remote path) vs read_parquet."""
    from ingest.storage.duckdb_s3 import configure_duckdb
    from validation import duck

    files, _ = table_files(nx)
    plain = duck.connect()
    configure_duckdb(plain, nx.store)
    lit = ", ".join(f"'{f}'" for f in files)
    con = nx.connect()
    cases = {
        "read_parquet": lambda: plain.execute(
            QUERY.format(src=f"read_parquet([{lit}])")
        ).fetchall(),
        "nsdx.connect()": lambda: con.execute(
            QUERY.format(src="transport.nansha_bus_gps")
        ).fetchall(),
    }
    want = cases["read_parquet"]()
    assert cases["nsdx.connect()"]() == want
    if remote_url:
        import nsdx

        rcon = nsdx.connect(remote_url)
        cases["remote HTTP"] = lambda: rcon.execute(
            QUERY.format(src="transport.nansha_bus_gps")
        ).fetchall()
        assert cases["remote HTTP"]() == want
    return cases


def download_cases(nx, portal: Server, plain: Server, path: str) -> dict:
    import httpx

    client = httpx.Client(timeout=120)

    def get(url: str) -> None:
        n = 0
        with client.stream("GET", url) as r:
            assert r.status_code == 200, r.status_code
            for chunk in r.iter_bytes(1 << 20):
                n += len(chunk)
        assert n > 0

    return {
        "FileResponse": lambda: get(plain.url + "/file.parquet"),
        "Parquet route": lambda: get(portal.url + path),
    }


def plain_file_app(path: str):
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Route

    async def file(request):
        return FileResponse(path, media_type="application/vnd.apache.parquet")

    return Starlette(routes=[Route("/file.parquet", file)])


def csv_peak_rss(env: dict[str, str], path: str) -> tuple[int, int, int]:
    """(server RSS before, server peak RSS after, CSV bytes) for one CSV download through
    a real `nsdx serve` process."""
    import httpx

    port = free_port()
    nsdx_bin = str(Path(sys.executable).parent / "nsdx")
    proc = subprocess.Popen(
        [nsdx_bin, "serve", "--port", str(port), "--log-level", "warning"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/api/3/action/status_show", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        httpx.get(url + "/dataset/nope/v1/x.csv")  # the route's imports, before the baseline

        def vm(field: str) -> int:
            for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
            return 0

        before = vm("VmRSS")
        n = 0
        with httpx.stream("GET", url + path.replace(".parquet", ".csv"), timeout=300) as r:
            assert r.status_code == 200
            for chunk in r.iter_bytes(1 << 20):
                n += len(chunk)
        return before, vm("VmHWM"), n
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()

    from ingest.storage.seaweed_dev import SeaweedFS

    work = Path(tempfile.mkdtemp(prefix="nsdx-bench-delivery-"))
    sw = SeaweedFS(work / "sw")
    servers: list[Server] = []
    try:
        ds_yaml = bus_dataset(work, args.rows)
        sw.start()
        bucket = sw.bucket("bench-delivery")
        local_env = env_for(work / "local", ds_yaml, {})
        s3_env = env_for(
            work / "s3", ds_yaml, {**sw.env(bucket, "cat"), "NSDX_STAGING_DIR": str(work / "stg")}
        )
        from nsdx.core import Nsdx
        from nsdx.web import create_app

        results = {}
        for name, env in (("local", local_env), ("S3", s3_env)):
            use_env(env)
            nx = Nsdx()
            t0 = time.perf_counter()
            nx.ingest(all_=True)
            print(f"{name}: published {args.rows:,} rows in {time.perf_counter() - t0:.1f} s")
            remote = None
            if name == "S3":
                portal = Server(create_app(Nsdx(), warm=False, worker=False))
                servers.append(portal)
                remote = portal.url
            med = interleaved(query_cases(nx, remote), args.rounds)
            results[name] = med
            base = med["read_parquet"]
            for k, v in med.items():
                print(f"  query {k:15} {v * 1000:8.1f} ms   x read_parquet {v / base:5.2f}")

        # download throughput, local folder
        use_env(local_env)
        nx = Nsdx()
        files, path = table_files(nx)
        portal = Server(create_app(Nsdx(), warm=False, worker=False))
        plain = Server(plain_file_app(files[0]))
        servers += [portal, plain]
        size = Path(files[0]).stat().st_size
        med = interleaved(download_cases(nx, portal, plain, path), max(15, args.rounds))
        base = size / med["FileResponse"] / 1e6
        print(f"download of {size / 1e6:.1f} MB (local folder):")
        for k, v in med.items():
            mbs = size / v / 1e6
            print(f"  {k:15} {mbs:8.1f} MB/s   x FileResponse {mbs / base:5.2f}")

        before, peak, n = csv_peak_rss(local_env, path)
        print(
            f"CSV of {args.rows:,} rows ({n / 1e6:.0f} MB) through `nsdx serve`: server RSS "
            f"{before / 1e6:.0f} MB before, peak {peak / 1e6:.0f} MB (goal < 300 MB)"
        )
        r = results
        print(
            "summary: connect/read_parquet local {:.2f}, S3 {:.2f} (goal <= 1.05); remote/S3 "
            "direct {:.2f} (goal <= 1.3)".format(
                r["local"]["nsdx.connect()"] / r["local"]["read_parquet"],
                r["S3"]["nsdx.connect()"] / r["S3"]["read_parquet"],
                r["S3"]["remote HTTP"] / r["S3"]["read_parquet"],
            )
        )
    finally:
        for s in servers:
            s.stop()
        sw.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
