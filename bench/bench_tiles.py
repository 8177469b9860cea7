"""Tiles benchmark: the ledger as C2SP tlog-tiles, against baselines measured in the same run.

* serving: hash tiles read from the store per second (what `/log/tile/...` does per
  request) against inclusion proofs per second (what `/api/audit/proof/inclusion` does);
* exporting: `export_tiles` of the whole ledger, then again after the log grew (full tiles
  kept);
* checking offline: `verify_receipt` (pure-Python Ed25519, proofs computed from the tiles
  in a folder, a checkpoint cosigned by three witnesses) against the library's own check of
  the receipt alone (`open_note` with OpenSSL's Ed25519 + `verify_inclusion`).

    .venv/bin/python bench/bench_tiles.py [--entries 65836] [--reads 2000]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from catalogue.db import make_engine  # noqa: E402
from exchange.ledger.keys import load_signer  # noqa: E402
from exchange.ledger.merkle import verify_inclusion  # noqa: E402
from exchange.ledger.note import open_note  # noqa: E402
from exchange.ledger.store import LedgerStore  # noqa: E402
from exchange.ledger.tiles import TileRef, export_tiles, read_tile  # noqa: E402
from exchange.witness import generate_cosigner_key  # noqa: E402
from nsdx import verify_receipt as vr  # noqa: E402


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=65_836)
    ap.add_argument("--reads", type=int, default=2000)
    ap.add_argument("--checks", type=int, default=20)
    args = ap.parse_args()
    rng = random.Random(1)
    tmp = Path(tempfile.mkdtemp(prefix="nsdx-bench-tiles-"))
    store = LedgerStore(make_engine(f"sqlite:///{tmp / 'l.db'}"), load_signer(tmp, {}))
    t = time.perf_counter()
    with store.transaction() as s:
        store.append_many(s, [("bench", {"i": i, "amount_fen": i}) for i in range(args.entries)])
    cp = store.checkpoint()
    print(f"ledger of {args.entries:,} entries built in {time.perf_counter() - t:.1f} s")
    n = cp.tree_size
    full = n // 256

    t = time.perf_counter()
    for _ in range(args.reads):
        read_tile(store, TileRef(0, rng.randrange(full)), n)
    tiles_s = time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(args.reads):
        store.inclusion(rng.randrange(n), n, checkpoint=None)
    proofs_s = time.perf_counter() - t
    print(
        f"serving: full level-0 tiles {_rate(args.reads, tiles_s)}, inclusion proofs (baseline) "
        f"{_rate(args.reads, proofs_s)}; ratio {proofs_s / tiles_s:.2f}"
    )

    dest = tmp / "tiles"
    keys = [generate_cosigner_key(f"bench.witness/{i}") for i in range(3)]
    body = cp.note[: cp.note.rfind("\n\n") + 1]
    note = cp.note + "".join(k.cosign(body, 1_800_000_000 + i) for i, k in enumerate(keys))
    t = time.perf_counter()
    r1 = export_tiles(store, note, dest)
    first = time.perf_counter() - t
    with store.transaction() as s:
        store.append_many(s, [("bench", {"i": -i}) for i in range(100)])
    cp2 = store.checkpoint()
    note2 = cp2.note + "".join(
        k.cosign(cp2.note[: cp2.note.rfind("\n\n") + 1], 1_800_000_100) for k in keys
    )
    t = time.perf_counter()
    r2 = export_tiles(store, note2, dest)
    again = time.perf_counter() - t
    print(
        f"export: {r1.written} files in {first:.2f} s; after +100 entries {r2.written} written, "
        f"{r2.kept} kept, in {again:.3f} s"
    )

    index = rng.randrange(n)
    receipt = {"entry": store.entry(index)["payload"], **store.inclusion(index, n)}
    log_key = store.signer.verifier_key
    wkeys = [k.verifier.text for k in keys]
    t = time.perf_counter()
    for _ in range(args.checks):
        out = vr.verify_receipt(receipt, vr.Tiles(str(dest)), log_key, wkeys)
    offline = (time.perf_counter() - t) / args.checks
    assert out["ok"] and len(out["witnesses"]) == 3
    t = time.perf_counter()
    for _ in range(args.checks):
        open_note(receipt["checkpoint"], log_key)
        verify_inclusion(
            index,
            n,
            base64.b64decode(receipt["leaf_hash"]),
            [base64.b64decode(p) for p in receipt["proof"]],
            base64.b64decode(receipt["root"]),
        )
    base = (time.perf_counter() - t) / args.checks
    print(
        f"offline check of a receipt (2 log signatures + 3 cosignatures in pure Python, proofs "
        f"from tiles): {offline * 1000:.0f} ms; the receipt alone with OpenSSL (baseline) "
        f"{base * 1000:.2f} ms; ratio {offline / base:.0f}"
    )
    print(json.dumps({"load_average": os.getloadavg()[0], "entries": n}))


if __name__ == "__main__":
    main()
