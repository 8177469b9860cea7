"""The ledger witness (C2SP tlog-witness add-checkpoint, tlog-cosignature cosignature/v1):
the formats, every refusal with the protocol's status, split views caught, and a witness
restarted in the middle (a real `nsdx witness serve` process, killed and started again)."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi.testclient import TestClient

from exchange.ledger.merkle import MerkleTree, leaf_hash
from exchange.ledger.note import checkpoint_body, generate_key, open_note, sign_note
from exchange.witness import (
    CosignatureError,
    Witness,
    WitnessConfigError,
    WitnessRefused,
    init_witness,
    parse_cosigner_verifier,
    verify_cosignatures,
)
from nsdx.web.witness import create_witness_app
from tests.servers import free_port

ORIGIN = "nsdx.test/ledger"
LOG_SIGNER, LOG_VERIFIER = generate_key(ORIGIN)
OTHER_SIGNER, OTHER_VERIFIER = generate_key("nsdx.test/other-log")


def _tree(tag: str, n: int, prefix: list[bytes] | None = None) -> MerkleTree:
    leaves = list(prefix or [])
    leaves += [leaf_hash(f"{tag}-{i}".encode()) for i in range(len(leaves), n)]
    return MerkleTree(leaves)


def _note(tree: MerkleTree, size: int, signer: str = LOG_SIGNER, origin: str = ORIGIN) -> str:
    return sign_note(checkpoint_body(origin, size, tree.root(size)), signer)


def _request(old: int, proof: list[bytes], note: str) -> bytes:
    lines = [f"old {old}"] + [base64.b64encode(p).decode() for p in proof]
    return ("\n".join(lines) + "\n\n" + note).encode()


def _add(tree: MerkleTree, old: int, size: int, **kw) -> bytes:
    proof = tree.consistency_proof(old, size) if 0 < old < size else []
    return _request(old, proof, _note(tree, size, **kw))


@pytest.fixture
def home(tmp_path) -> Path:
    init_witness(tmp_path / "w", "witness.test/w1", [LOG_VERIFIER])
    return tmp_path / "w"


# ------------------------------------------------------------------------- the formats


def test_cosignature_is_c2sp_cosignature_v1(home):
    """Checked from the spec's text, not through our own verifier: key ID with algorithm
    byte 0x04, 8-byte big-endian timestamp, Ed25519 over the cosignature/v1 message."""
    w = Witness(home, clock=lambda: 1679315147.9)
    tree = _tree("a", 5)
    line = w.add_checkpoint(_add(tree, 0, 5))
    assert line.startswith("\u2014 witness.test/w1 ") and line.endswith("\n")
    raw = base64.b64decode(line.split(" ")[2])
    assert len(raw) == 4 + 8 + 64
    vkey = w.verifier_key
    name, kid_hex, key64 = vkey.split("+", 2)
    pub_raw = base64.b64decode(key64)
    assert pub_raw[0] == 0x04 and len(pub_raw) == 33
    kid = hashlib.sha256(name.encode() + b"\n\x04" + pub_raw[1:]).digest()[:4]
    assert raw[:4] == kid == bytes.fromhex(kid_hex)
    assert int.from_bytes(raw[4:12], "big") == 1679315147
    body = checkpoint_body(ORIGIN, 5, tree.root(5))
    message = b"cosignature/v1\ntime 1679315147\n" + body.encode()
    Ed25519PublicKey.from_public_bytes(pub_raw[1:]).verify(raw[12:], message)  # raises if bad
    # our verifier agrees, and the line fits on the checkpoint as a note signature:
    assert verify_cosignatures(body, line, [parse_cosigner_verifier(vkey)]) == {
        "witness.test/w1": 1679315147
    }
    cosigned = _note(tree, 5) + line
    assert open_note(cosigned, LOG_VERIFIER) == (body, [ORIGIN])  # unknown key ignored
    with pytest.raises(CosignatureError):  # another body: the cosignature does not verify
        verify_cosignatures(
            checkpoint_body(ORIGIN, 5, b"\0" * 32), line, [parse_cosigner_verifier(vkey)]
        )


# ------------------------------------------------------------------------- the protocol


def test_add_checkpoint_grows_and_refuses_with_the_protocol_codes(home):
    client = TestClient(create_witness_app(home))
    tree = _tree("a", 20)
    post = lambda body: client.post("/add-checkpoint", content=body)  # noqa: E731

    r = post(_add(tree, 0, 5))  # first sight: trust on first use, empty proof
    assert r.status_code == 200 and r.text.startswith("\u2014 witness.test/w1 ")
    r = post(_add(tree, 0, 9))  # stale old size: 409 with the witness's size
    assert r.status_code == 409 and r.text == "5\n"
    assert r.headers["content-type"].startswith("text/x.tlog.size")
    assert post(_add(tree, 5, 9)).status_code == 200
    assert post(_add(tree, 9, 9)).status_code == 200  # same size, same root: cosigned again

    bad = tree.consistency_proof(9, 14)
    bad[0] = bytes(32)
    r = post(_request(9, bad, _note(tree, 14)))
    assert r.status_code == 422 and "consistency proof" in r.text
    r = post(
        _add(tree, 9, 14, origin="nsdx.test/unknown", signer=generate_key("nsdx.test/unknown")[0])
    )
    assert r.status_code == 404
    forged_signer = generate_key(ORIGIN)[0]  # the log's name, another key
    assert post(_add(tree, 9, 14, signer=forged_signer)).status_code == 403
    assert post(_request(15, [], _note(tree, 14))).status_code == 400  # old > size
    assert post(b"old 9\nnot base64!\n\n" + _note(tree, 14).encode()).status_code == 400
    assert post(_request(9, [bytes(32)] * 64, _note(tree, 14))).status_code == 400
    assert post(b"old 09\n\n" + _note(tree, 14).encode()).status_code == 400
    assert post(b"x" * 70_000).status_code == 400  # bounded body
    assert post(b"\xff\xfe").status_code == 400
    info = client.get("/").json()
    assert info["logs"] == [ORIGIN] and info["verifier_key"] == Witness(home).verifier_key
    assert Witness(home).state()[ORIGIN]["size"] == 9  # no refusal moved the state


def test_concurrent_requests_never_roll_back(home):
    """The old-size check and the state update are one step: of many requests from the same
    old size, exactly one is cosigned, and the state is the size that one cosigned."""
    w = Witness(home)
    tree = _tree("a", 40)
    w.add_checkpoint(_add(tree, 0, 4))
    bodies = [_add(tree, 4, size) for size in range(5, 37, 2)]
    results: list[int] = []

    def go(body: bytes, size: int) -> None:
        try:
            w.add_checkpoint(body)
            results.append(size)
        except WitnessRefused as e:
            assert e.status == 409

    threads = [threading.Thread(target=go, args=(b, 5 + 2 * i)) for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 1 and Witness(home).state()[ORIGIN]["size"] == results[0]


# ------------------------------------------------------------------------- split views


def test_split_view_is_refused(home):
    """Two forks of one ledger: same first 6 entries, different entries after."""
    w = Witness(home)
    common = _tree("common", 6)
    fork_a = _tree("a", 12, prefix=[common.leaf(i) for i in range(6)])
    fork_b = _tree("b", 12, prefix=[common.leaf(i) for i in range(6)])
    assert fork_a.root(6) == fork_b.root(6) and fork_a.root(10) != fork_b.root(10)

    w.add_checkpoint(_add(common, 0, 6))
    w.add_checkpoint(_add(fork_a, 6, 10))  # the witness has now seen fork A at 10
    with pytest.raises(WitnessRefused) as e:  # fork B from the common prefix: stale old
        w.add_checkpoint(_add(fork_b, 6, 10))
    assert e.value.status == 409 and e.value.size == 10
    with pytest.raises(WitnessRefused) as e:  # fork B at the same size: another root
        w.add_checkpoint(_add(fork_b, 10, 10))
    assert e.value.status == 409 and e.value.size == 10
    with pytest.raises(WitnessRefused) as e:  # fork B grown past it, with B's honest proof
        w.add_checkpoint(_add(fork_b, 10, 12))
    assert e.value.status == 422
    # the refused fork checkpoints are kept: log-signed proof that the log signed two histories
    kept = [p.read_bytes() for p in w.evidence()]
    assert len(kept) == 2 and _add(fork_b, 10, 10) in kept and _add(fork_b, 10, 12) in kept
    note_b = _add(fork_b, 10, 10).split(b"\n\n", 1)[1].decode()
    assert open_note(note_b, LOG_VERIFIER)[0] == checkpoint_body(ORIGIN, 10, fork_b.root(10))
    w.add_checkpoint(_add(fork_a, 10, 12))  # the history it vouched for still grows
    assert w.state()[ORIGIN]["root"] == base64.b64encode(fork_a.root(12)).decode()


def _serve(home: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
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
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 90  # a cold `nsdx` start on a loaded 2-core machine
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(
                    proc.stderr.read().decode() if proc.stderr else "died"
                ) from None
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("witness did not start")


def _post(port: int, body: bytes) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/add-checkpoint", data=body)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_witness_killed_and_restarted_keeps_its_state(home):
    """A real `nsdx witness serve` cosigns fork A, is killed (SIGKILL: a crash, no clean
    stop), and the witness started again on its directory refuses fork B."""
    common = _tree("common", 3)
    fork_a = _tree("a", 8, prefix=[common.leaf(i) for i in range(3)])
    fork_b = _tree("b", 8, prefix=[common.leaf(i) for i in range(3)])
    port = free_port()
    proc = _serve(home, port)
    try:
        assert _post(port, _add(common, 0, 3))[0] == 200
        assert _post(port, _add(fork_a, 3, 7))[0] == 200
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    client = TestClient(create_witness_app(home))  # restarted (in-process: one spawn is enough)
    post = lambda body: client.post("/add-checkpoint", content=body)  # noqa: E731
    r = post(_add(fork_b, 3, 7))
    assert (r.status_code, r.text) == (409, "7\n")  # still at fork A's 7
    assert post(_add(fork_b, 7, 8)).status_code == 422
    r = post(_add(fork_a, 7, 8))
    assert r.status_code == 200
    vkey = parse_cosigner_verifier(Witness(home).verifier_key)
    body = checkpoint_body(ORIGIN, 8, fork_a.root(8))
    assert list(verify_cosignatures(body, r.text, [vkey])) == ["witness.test/w1"]


# ------------------------------------------------------------------------- the directory


def test_witness_directory_is_checked(tmp_path):
    with pytest.raises(WitnessConfigError):
        Witness(tmp_path / "none")
    init_witness(tmp_path / "w", "witness.test/w1", [LOG_VERIFIER, OTHER_VERIFIER])
    with pytest.raises(WitnessConfigError):  # one directory, one witness key for life
        init_witness(tmp_path / "w", "witness.test/w2", [])
    assert (tmp_path / "w" / "witness.key").stat().st_mode & 0o777 == 0o600
    assert set(Witness(tmp_path / "w").logs) == {ORIGIN, "nsdx.test/other-log"}
    with pytest.raises(WitnessConfigError):
        init_witness(tmp_path / "x", "witness.test/w3", ["not a key"])
    (tmp_path / "w" / "state.json").write_text("{truncated")
    with pytest.raises(WitnessConfigError):  # never start on a broken state: it could fork
        Witness(tmp_path / "w")


def test_cli_init_and_pubkey(tmp_path):
    """The installed console script (a subprocess: the CLI as users run it)."""
    import json

    from tests.conftest import run_cli

    home = str(tmp_path / "w")
    r = run_cli(
        "witness",
        "init",
        "--name",
        "witness.test/cli",
        "--log",
        LOG_VERIFIER,
        "--home",
        home,
        "--json",
    )
    vkey = json.loads(r.stdout)["verifier_key"]
    assert vkey.startswith("witness.test/cli+")
    assert run_cli("witness", "pubkey", "--home", home).stdout.strip() == vkey
    r = run_cli("witness", "init", "--name", "x", "--home", home, check=False)
    assert r.returncode == 1 and "already holds a witness" in r.stderr
