"""Ledger benchmark: appends/s against plain INSERTs of the same rows in the same
database, time to verify N events, time to produce a proof at N leaves.

    python bench/bench_ledger.py [--appends 2000] [--big 1000000] [--pg URL|--no-pg]

Prints a markdown table. Each append is its own transaction holding the ledger lock
(FOR UPDATE on PostgreSQL, BEGIN IMMEDIATE on SQLite), as a trade step does; "batched"
appends 100 events per transaction. The baseline inserts the same rows, one per
transaction, into a plain table with the same columns and no lock.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text  # noqa: E402

from catalogue.db import make_engine  # noqa: E402
from exchange.ledger.canonical import canonical_json  # noqa: E402
from exchange.ledger.keys import load_signer  # noqa: E402
from exchange.ledger.merkle import leaf_hash  # noqa: E402
from exchange.ledger.store import LedgerStore  # noqa: E402
from exchange.ledger.verify import verify_ledger  # noqa: E402

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def event(i: int) -> dict:
    return {"order": f"o{i}", "buyer": "nansha-zhixing-ai", "seller": "nansha-transport-bureau",
            "amount_fen": 28_000_000 + i, "dataset": "nansha-ride-hailing-orders"}  # fmt: skip


def bench_db(url: str, home: Path, n: int, big: int) -> dict:
    eng = make_engine(url)
    store = LedgerStore(eng, load_signer(home, {}))
    with eng.begin() as c:
        c.execute(text("CREATE TABLE plain_entries (idx BIGINT PRIMARY KEY, kind VARCHAR(50), "
                       "payload TEXT, leaf_hash BYTEA, created TIMESTAMP)".replace(
                           "BYTEA", "BLOB" if eng.dialect.name == "sqlite" else "BYTEA")))  # fmt: skip
    t = time.perf_counter()
    for i in range(n):
        with store.transaction() as s:
            store.append(s, "bench", event(i))
    appends = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(n):
        p = canonical_json({"type": "bench", "at": "x", **event(i)})
        with eng.begin() as c:
            c.execute(
                text("INSERT INTO plain_entries VALUES (:i, 'bench', :p, :h, :t)"),
                {"i": i, "p": p.decode(), "h": leaf_hash(p), "t": datetime.now(UTC)},
            )
    plain = n / (time.perf_counter() - t)
    t = time.perf_counter()
    for b in range(n // 100):
        with store.transaction() as s:
            store.append_many(s, [("bench", event(n + b * 100 + j)) for j in range(100)])
    batched = (n // 100 * 100) / (time.perf_counter() - t)
    # grow to `big` entries with batched appends, then verify and prove
    have = store.head_size()
    while have < big:
        k = min(10_000, big - have)
        with store.transaction() as s:
            store.append_many(s, [("bench", event(have + j)) for j in range(k)])
        have += k
    store.checkpoint()
    t = time.perf_counter()
    res = verify_ledger(store, store.signer.verifier_key)
    verify_s = time.perf_counter() - t
    assert res.ok, res.problems
    t = time.perf_counter()
    store.inclusion(big // 3, big)
    proof_s = time.perf_counter() - t
    t = time.perf_counter()
    store.inclusion(big // 2, big)  # a second proof (no cache: reloads the leaf hashes)
    proof2_s = time.perf_counter() - t
    return {"appends": appends, "plain": plain, "batched": batched, "verify": verify_s,
            "proof": proof_s, "proof_cached": proof2_s, "size": big}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--appends", type=int, default=2000)
    ap.add_argument("--big", type=int, default=1_000_000)
    ap.add_argument("--no-pg", action="store_true")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        rows.append(("SQLite", bench_db(f"sqlite:///{d}/b.db", Path(d), a.appends, a.big)))
        if not a.no_pg:
            import psycopg

            name = f"nsdx_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f'CREATE DATABASE "{name}"')
            try:
                url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
                rows.append(("PostgreSQL", bench_db(url, Path(d), a.appends, a.big)))
            finally:
                from catalogue.db import dispose_all

                dispose_all()
                with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                    c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print("| database | ledger appends/s (1 per txn) | plain INSERTs/s (1 per txn) | ratio "
          "| batched appends/s (100 per txn) | verify N events | proof at N leaves "
          "(1st / 2nd call) | N |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for db, r in rows:
        print(f"| {db} | {r['appends']:,.0f} | {r['plain']:,.0f} | {r['appends'] / r['plain']:.2f} "
              f"| {r['batched']:,.0f} | {r['verify']:.1f} s | {r['proof']:.2f} s / "
              f"{r['proof_cached'] * 1000:.0f} ms | {r['size']:,} |")  # fmt: skip


if __name__ == "__main__":
    main()
