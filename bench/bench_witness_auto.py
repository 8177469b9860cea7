"""Automatic witnessing benchmark: do the trades wait for the witnesses? Trades (one ledger
entry and one signed checkpoint each, SQLite) per second with the background witnessing job
running against three local witnesses (``nsdx witness serve`` processes, HTTP, quorum 2),
against the same trades with no witness configured, in the same run; and how long after the
last trade its checkpoint is witnessed (the lag), with the checkpoints witnessed per second.

    .venv/bin/python bench/bench_witness_auto.py [--trades 400]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_witness import _port, _wait  # noqa: E402
from catalogue.db import make_engine  # noqa: E402
from exchange.ledger.keys import load_signer  # noqa: E402
from exchange.ledger.note import generate_key  # noqa: E402
from exchange.ledger.store import LedgerStore  # noqa: E402
from exchange.witness import init_witness  # noqa: E402
from exchange.witness.client import WitnessEndpoint  # noqa: E402
from exchange.witness.config import WitnessingConfig  # noqa: E402
from exchange.witness.pump import WitnessPump  # noqa: E402


def _trades(store: LedgerStore, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        with store.transaction() as s:
            store.append(s, "bench.trade", {"i": i})
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trades", type=int, default=400)
    n = ap.parse_args().trades
    with tempfile.TemporaryDirectory() as tmp:
        signer = load_signer(Path(tmp), {"NSDX_LEDGER_KEY": generate_key("bench.nsdx/auto")[0]})
        base = LedgerStore(make_engine(f"sqlite:///{tmp}/base.db"), signer)
        store = LedgerStore(make_engine(f"sqlite:///{tmp}/witnessed.db"), signer)
        _trades(base, 20), _trades(store, 20)  # warm both
        baseline = _trades(base, n)
        procs, endpoints = [], []
        try:
            for i in range(3):
                home = Path(tmp) / f"w{i}"
                key = init_witness(home, f"bench.nsdx/w{i}", [signer.verifier_key])
                port = _port()
                cmd = [sys.executable, "-m", "nsdx", "witness", "serve", "--home", str(home)]
                cmd += ["--port", str(port), "--log-level", "warning"]
                procs.append(subprocess.Popen(cmd, cwd=ROOT, env=os.environ.copy()))
                endpoints.append(WitnessEndpoint(f"http://127.0.0.1:{port}", key.verifier))
            for p, e in zip(procs, endpoints, strict=True):
                _wait(int(e.url.rsplit(":", 1)[1]), p)
            cfg = WitnessingConfig(tuple(endpoints), 2, retry=0.1, interval=1.0)
            pump = WitnessPump(store, cfg).start()
            try:
                rounds0 = pump.rounds
                t0 = time.perf_counter()
                with_witnesses = _trades(store, n)
                t_end = time.perf_counter()
                final = store.latest_checkpoint().tree_size
                while final not in store.witnessed_sizes():
                    time.sleep(0.005)
                lag = time.perf_counter() - t_end
                rounds = pump.rounds - rounds0
                witnessed = len(store.witnessed_sizes())
                total = time.perf_counter() - t0
            finally:
                pump.stop()
        finally:
            for p in procs:
                p.terminate()
                p.wait()
    load = os.getloadavg()[0]
    print(f"trades (1 entry + 1 signed checkpoint each), {n} per run, load average {load:.1f}")
    print(f"  no witnesses:                          {baseline:8.0f} trades/s")
    print(
        f"  witnessing job running (3 witnesses): {with_witnesses:8.0f} trades/s "
        f"({with_witnesses / baseline:.2f} of the baseline)"
    )
    print(
        f"  the job: {rounds} rounds, {witnessed} checkpoints witnessed "
        f"({witnessed / total:.0f}/s; it witnesses the latest one per round, never each), "
        f"the last trade's checkpoint witnessed {lag * 1000:.0f} ms after it"
    )


if __name__ == "__main__":
    main()
