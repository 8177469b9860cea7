"""Witness benchmark: checkpoints witnessed per second with three local witnesses
(``nsdx witness serve`` processes, HTTP, quorum 2), against baselines measured in the same
run: the same checkpoints cosigned by one witness called in-process (no HTTP; the state
file's fsync included), and the log merely signing them.

Each round appends a few entries, signs the checkpoint and asks the witnesses, carrying the
sizes they hold (one round trip each, as a log does in steady state)::

    .venv/bin/python bench/bench_witness.py [--checkpoints 200]
"""

from __future__ import annotations

import argparse
import base64
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exchange.ledger.merkle import MerkleTree, leaf_hash  # noqa: E402
from exchange.ledger.note import checkpoint_body, generate_key, sign_note  # noqa: E402
from exchange.witness import Witness, init_witness  # noqa: E402
from exchange.witness.client import WitnessEndpoint, request_cosignatures  # noqa: E402

ORIGIN = "bench.nsdx/ledger"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(port: int, proc: subprocess.Popen) -> None:
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
            return
        except OSError:
            if proc.poll() is not None:
                raise SystemExit("a witness did not start") from None
            time.sleep(0.05)
    raise SystemExit("a witness did not start")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoints", type=int, default=200)
    n = ap.parse_args().checkpoints
    signer, verifier = generate_key(ORIGIN)
    tree = MerkleTree([leaf_hash(f"e{i}".encode()) for i in range(3 * n + 3)])
    sizes = [3 * (i + 1) for i in range(n)]

    t = time.perf_counter()
    notes = [sign_note(checkpoint_body(ORIGIN, s, tree.root(s)), signer) for s in sizes]
    sign_rate = n / (time.perf_counter() - t)

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "local"
        init_witness(local, "bench.nsdx/local", [verifier])
        w = Witness(local)
        t = time.perf_counter()
        old = 0
        for s, note in zip(sizes, notes, strict=True):
            proof = tree.consistency_proof(old, s) if old else []
            lines = [f"old {old}"] + [base64.b64encode(p).decode() for p in proof]
            w.add_checkpoint(("\n".join(lines) + "\n\n" + note).encode())
            old = s
        local_rate = n / (time.perf_counter() - t)

        procs, endpoints = [], []
        try:
            for i in range(3):
                home = Path(tmp) / f"w{i}"
                key = init_witness(home, f"bench.nsdx/w{i}", [verifier])
                port = _port()
                procs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-m",
                            "nsdx",
                            "witness",
                            "serve",
                            "--home",
                            str(home),
                            "--port",
                            str(port),
                            "--log-level",
                            "warning",
                        ],
                        cwd=ROOT,
                    )
                )
                endpoints.append(WitnessEndpoint(f"http://127.0.0.1:{port}", key.verifier))
            for p, e in zip(procs, endpoints, strict=True):
                _wait(int(e.url.rsplit(":", 1)[1]), p)
            proof = tree.consistency_proof
            known: dict[str, int] = {}
            t = time.perf_counter()
            witnessed = all3 = 0
            for note in notes:
                r = request_cosignatures(
                    note, verifier, endpoints, proof, quorum=2, known_sizes=known
                )
                known = r.sizes
                witnessed += r.witnessed
                all3 += len(r.cosigners) == 3
            http_rate = n / (time.perf_counter() - t)
        finally:
            for p in procs:
                p.terminate()
                p.wait()
    if witnessed != n:
        raise SystemExit(f"only {witnessed} of {n} checkpoints reached the quorum")
    print(f"checkpoints: {n} (3 entries apart), all reached quorum 2; {all3} cosigned by all 3")
    print(f"log signing only:               {sign_rate:8.0f} /s")
    print(f"one witness in-process (fsync): {local_rate:8.0f} /s")
    print(
        f"three witnesses over HTTP:      {http_rate:8.0f} /s   "
        f"ratio to in-process {http_rate / local_rate:.2f}"
    )


if __name__ == "__main__":
    main()
