"""Ledger benchmark: appends/s against plain INSERTs of the same rows in the same
database with the same concurrency, time to verify N events, time to prove at N leaves.

    python bench/bench_ledger.py [--appends 1000] [--clients 8] [--per-client 250]
                                 [--big 1000000] [--no-pg] [--no-procs] [--procs-only]

Prints two markdown tables.

Throughput, each mode against plain INSERTs (one row per transaction, autocommit, into a
table with the same columns and no lock) run the same way:

* **1 client** — one thread, one ``append_event`` after the other (nothing to batch
  with: SQLite, one transaction each; PostgreSQL, one sequencer batch each);
* **C threads** — C threads of one process calling ``append_event`` (PostgreSQL: while
  this process is the sequencer, each event is handed to it in memory and written in its
  next batch — one transaction, one WAL flush, one signed checkpoint);
* **C threads, in transactions** — C threads each running ``store.transaction()`` +
  ``append`` as a trade step does (the event must commit atomically with the trade's own
  rows): the event is queued in ``ledger_queue`` by the caller's transaction and moved
  into the tree by the sequencer's next batch;
* **C processes** — C single-threaded processes calling ``append_event``: they share
  nothing but the database; on PostgreSQL each queues its event (one statement) and
  waits for the receipt from whichever process is the sequencer
  (:mod:`exchange.ledger.sequencer`), which batches all of them;
* **batched** — 100 events per ``append_many`` transaction, one client.

Every receipt is given only after the transaction that gave its index committed. The
run checks afterwards that the indices are dense, nothing is left queued and
``verify_ledger`` passes.

Scale: the ledger is grown to N entries (``append_many`` batches of 10,000), then
``verify_ledger`` runs over all of it, and an inclusion and a consistency proof are made
at N leaves by a fresh store (nothing cached in the process: proofs read O(log n) tiles).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import threading
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

PG_ADMIN = os.environ.get("NSDX_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
PLAIN_SQL = "INSERT INTO plain_entries VALUES (:i, 'bench', :p, :h, :t)"


def event(i: int) -> dict:
    return {"order": f"o{i}", "buyer": "nansha-zhixing-ai", "seller": "nansha-transport-bureau",
            "amount_fen": 28_000_000 + i, "dataset": "nansha-ride-hailing-orders"}  # fmt: skip


def plain_row(i: int) -> dict:
    p = canonical_json({"type": "bench", "at": "2025-01-01T00:00:00.000000Z", **event(i)})
    return {"i": i, "p": p.decode(), "h": leaf_hash(p), "t": datetime.now(UTC)}


def _ledger_client(store: LedgerStore, base: int, n: int, in_txn: bool) -> None:
    for i in range(base, base + n):
        if in_txn:
            with store.transaction() as s:
                store.append(s, "bench", event(i))
        else:
            store.append_event("bench", event(i))


def _plain_client(eng, base: int, n: int) -> None:
    for i in range(base, base + n):
        with eng.begin() as c:
            c.execute(text(PLAIN_SQL), plain_row(i))


def _threads(target, clients: int, args) -> float:
    ts = [threading.Thread(target=target, args=args(k)) for k in range(clients)]
    t = time.perf_counter()
    for x in ts:
        x.start()
    for x in ts:
        x.join()
    return time.perf_counter() - t


def _raw_client(eng, base: int, n: int, durable: bool) -> None:
    """The floor under any acknowledged write of a single-threaded client: one
    autocommitted INSERT per row on a driver connection (one round trip, no pool, no
    BEGIN/COMMIT), waiting for its WAL flush (``durable``) or not."""
    fairy = eng.raw_connection()
    raw = fairy.driver_connection
    raw.rollback()
    raw.autocommit = True
    raw.execute(f"SET synchronous_commit TO {'on' if durable else 'off'}")
    sql = PLAIN_SQL.replace(":i", "%(i)s").replace(":p", "%(p)s").replace(":h", "%(h)s")
    sql = sql.replace(":t", "%(t)s")
    for i in range(base, base + n):
        raw.execute(sql, plain_row(i))
    fairy.invalidate()


def _proc_worker(url: str, home: str, kind: str, base: int, n: int, barrier) -> None:
    eng = make_engine(url)
    store = LedgerStore(eng, load_signer(Path(home), {}))
    barrier.wait()
    if kind == "ledger":
        _ledger_client(store, base, n, False)
    elif kind in ("durable", "unflushed"):
        _raw_client(eng, base, n, kind == "durable")
    else:
        _plain_client(eng, base, n)


def _processes(url: str, home: Path, kind: str, clients: int, per: int, base: int) -> float:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(clients + 1)
    ps = [
        ctx.Process(target=_proc_worker, args=(url, str(home), kind, base + k * per, per, barrier))
        for k in range(clients)
    ]
    for p in ps:
        p.start()
    barrier.wait()
    t = time.perf_counter()
    for p in ps:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"a {kind} worker failed")
    return time.perf_counter() - t


def bench_db(url: str, home: Path, a: argparse.Namespace) -> dict:
    eng = make_engine(url)
    store = LedgerStore(eng, load_signer(home, {}))
    blob = "BLOB" if eng.dialect.name == "sqlite" else "BYTEA"
    with eng.begin() as c:
        c.execute(text("CREATE TABLE plain_entries (idx BIGINT PRIMARY KEY, kind VARCHAR(50), "
                       f"payload TEXT, leaf_hash {blob}, created TIMESTAMP)"))  # fmt: skip
    C, per, n = a.clients, a.per_client, a.appends
    rows: list[tuple[str, float, float, int]] = []  # mode, ledger/s, plain/s, checkpoints

    def run(mode: str, ledger, plain, count: int) -> None:
        cps = len(store.checkpoints())
        t_ledger = ledger()
        cps = len(store.checkpoints()) - cps
        t_plain = plain()
        rows.append((mode, count / t_ledger, count / t_plain, cps))

    seq = iter(range(10**9, 2 * 10**9, 10**6))  # fresh plain key ranges

    if not a.procs_only:
        run("1 client", lambda: _threads(lambda: _ledger_client(store, 0, n, False), 1, lambda k: ()),
            lambda: _threads(lambda b: _plain_client(eng, b, n), 1, lambda k: (next(seq),)), n)  # fmt: skip
        run(f"{C} threads", lambda: _threads(_ledger_client, C, lambda k: (store, k * per, per, False)),
            lambda: (b := next(seq), _threads(_plain_client, C, lambda k: (eng, b + k * per, per)))[1],
            C * per)  # fmt: skip
        run(f"{C} threads, in transactions",
            lambda: _threads(_ledger_client, C, lambda k: (store, k * per, per, True)),
            lambda: (b := next(seq), _threads(_plain_client, C, lambda k: (eng, b + k * per, per)))[1],
            C * per)  # fmt: skip
    if not a.no_procs:
        run(f"{C} processes",
            lambda: _processes(url, home, "ledger", C, per, 0),
            lambda: _processes(url, home, "plain", C, per, next(seq)), C * per)  # fmt: skip
        if eng.dialect.name == "postgresql":  # where the time of one acknowledgement goes
            floor = {k: C * per / _processes(url, home, k, C, per, next(seq))
                     for k in ("durable", "unflushed")}  # fmt: skip
            rows.append((f"{C} processes: floor, 1 round trip + its WAL flush",
                         floor["durable"], rows[-1][2], 0))  # fmt: skip
            rows.append((f"{C} processes: 1 round trip, no flush (not durable)",
                         floor["unflushed"], rows[-2][2], 0))  # fmt: skip
    if not a.procs_only:  # 100 events per transaction
        t = time.perf_counter()
        for b in range(n // 100):
            with store.transaction() as s:
                store.append_many(s, [("bench", event(b * 100 + j)) for j in range(100)])
        rows.append(("1 client, 100 per transaction", n // 100 * 100 / (time.perf_counter() - t),
                     rows[0][2], n // 100))  # fmt: skip
    # the sequencing guarantees, after all that concurrency
    size = store.head_size()
    assert store.pending() == 0
    assert [r[0] for r in store.iter_rows()] == list(range(size)), "gap or duplicate"

    # grow to `big`, then verify and prove
    have = size
    while have < a.big:
        k = min(10_000, a.big - have)
        with store.transaction() as s:
            store.append_many(s, [("bench", event(have + j)) for j in range(k)])
        have += k
    store.checkpoint()
    n_cps = len(store.checkpoints())
    t = time.perf_counter()
    res = verify_ledger(store, store.signer.verifier_key)
    verify_s = time.perf_counter() - t
    assert res.ok, res.problems
    fresh = LedgerStore(eng, store.signer)  # a new store: nothing cached
    t = time.perf_counter()
    fresh.inclusion(have // 3, have)
    proof_s = time.perf_counter() - t
    older = max(cp.tree_size for cp in store.checkpoints() if 0 < cp.tree_size <= size)
    t = time.perf_counter()
    fresh.consistency(older, have)
    cons_s = time.perf_counter() - t
    return {"rows": rows, "verify": verify_s, "proof": proof_s, "consistency": cons_s,
            "size": have, "checkpoints": n_cps}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--appends", type=int, default=1000, help="single-client appends")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--per-client", type=int, default=250)
    ap.add_argument("--big", type=int, default=1_000_000)
    ap.add_argument("--no-pg", action="store_true")
    ap.add_argument("--no-procs", action="store_true")
    ap.add_argument("--procs-only", action="store_true",
                    help="PostgreSQL, C processes only (with the commit floor), no scale run")  # fmt: skip
    a = ap.parse_args()
    load0 = os.getloadavg()[0]
    results = []
    with tempfile.TemporaryDirectory() as d:
        if a.procs_only:
            a.big = 0
        else:
            results.append(("SQLite", bench_db(f"sqlite:///{d}/b.db", Path(d), a)))
        if not a.no_pg:
            import psycopg

            name = f"nsdx_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f'CREATE DATABASE "{name}"')
            try:
                url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
                results.append(("PostgreSQL", bench_db(url, Path(d), a)))
            finally:
                from catalogue.db import dispose_all

                dispose_all()
                with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                    c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print("| database | clients | ledger appends/s | plain INSERTs/s | ratio | batches (signed checkpoints) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for db, r in results:
        for mode, led, plain, cps in r["rows"]:
            print(f"| {db} | {mode} | {led:,.0f} | {plain:,.0f} | {led / plain:.2f} | {cps:,} |")
    print()
    print(f"\nload average (1 min) {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n")
    print("| database | N events | verify N | inclusion proof at N (fresh store) "
          "| consistency proof at N | checkpoints verified |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for db, r in results:
        print(f"| {db} | {r['size']:,} | {r['verify']:.1f} s | {r['proof'] * 1000:.0f} ms "
              f"| {r['consistency'] * 1000:.0f} ms | {r['checkpoints']:,} |")  # fmt: skip


if __name__ == "__main__":
    main()
