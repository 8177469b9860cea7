"""The log's side: a checkpoint sent to three real witnesses (uvicorn, HTTP), a quorum of
two, one witness down; a fork is refused by the witnesses that saw the other history."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn

from exchange.ledger.merkle import MerkleTree, leaf_hash
from exchange.ledger.note import checkpoint_body, generate_key, open_note, sign_note, verifier_key
from exchange.witness import init_witness, parse_cosigner_verifier, verify_cosignatures
from exchange.witness.client import WitnessEndpoint, parse_witness_config, request_cosignatures
from nsdx.web.witness import create_witness_app

ORIGIN = "nsdx.test/quorum-ledger"
LOG_SIGNER, LOG_VERIFIER = generate_key(ORIGIN)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _witnesses(root: Path, log_verifier: str, tag: str):
    """Two running witnesses and a third whose port has nothing listening (down)."""
    servers, endpoints = [], []
    for i in (1, 2, 3):
        home = root / f"{tag}{i}"
        key = init_witness(home, f"witness.test/{tag}{i}", [log_verifier])
        port = _free_port()
        endpoints.append(WitnessEndpoint(f"http://127.0.0.1:{port}", key.verifier))
        if i == 3:
            continue  # down
        config = uvicorn.Config(
            create_witness_app(home), host="127.0.0.1", port=port, log_level="error"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
    try:
        for server, _ in servers:
            for _ in range(400):
                if server.started:
                    break
                time.sleep(0.025)
            assert server.started
        yield endpoints
    finally:
        for server, thread in servers:
            server.should_exit = True
            thread.join(timeout=10)


@pytest.fixture(scope="module")
def witnesses(tmp_path_factory):
    with _witnesses(tmp_path_factory.mktemp("w"), LOG_VERIFIER, "q") as endpoints:
        yield endpoints


def _note(tree: MerkleTree, size: int) -> str:
    return sign_note(checkpoint_body(ORIGIN, size, tree.root(size)), LOG_SIGNER)


def test_quorum_of_two_with_one_witness_down_and_a_fork(witnesses):
    tree = MerkleTree([leaf_hash(f"a-{i}".encode()) for i in range(12)])
    proof = lambda a, b: tree.consistency_proof(a, b)  # noqa: E731

    first = request_cosignatures(_note(tree, 4), LOG_VERIFIER, witnesses, proof, quorum=2)
    assert first.witnessed and sorted(first.cosigners) == ["witness.test/q1", "witness.test/q2"]
    assert set(first.failures) == {"witness.test/q3"}  # down: reported, not raised
    body, _ = open_note(first.note, LOG_VERIFIER)  # the cosigned note still opens as a note
    keys = [w.key for w in witnesses]
    assert set(verify_cosignatures(body, first.note.split("\n\n", 1)[1], keys)) == {
        "witness.test/q1",
        "witness.test/q2",
    }

    # grows: the client learns each witness's size (409) and sends the proof from it
    second = request_cosignatures(_note(tree, 9), LOG_VERIFIER, witnesses, proof, quorum=2)
    assert second.witnessed and second.sizes == {"witness.test/q1": 9, "witness.test/q2": 9}
    assert not request_cosignatures(
        _note(tree, 9), LOG_VERIFIER, witnesses, proof, quorum=3
    ).witnessed  # three needed, one is down: not witnessed, and still no exception

    # a fork of the same log after the first 4 entries: no witness cosigns it
    fork = MerkleTree(
        [tree.leaf(i) for i in range(4)] + [leaf_hash(f"b-{i}".encode()) for i in range(4, 12)]
    )
    forked = request_cosignatures(
        _note(fork, 11),
        LOG_VERIFIER,
        witnesses,
        lambda a, b: fork.consistency_proof(a, b),
        quorum=1,
    )
    assert forked.cosigners == [] and not forked.witnessed
    assert (
        "422" in forked.failures["witness.test/q1"] and "422" in forked.failures["witness.test/q2"]
    )


def test_witness_config_lines(witnesses):
    text = "# url key\n" + "".join(f"{w.url} {w.key.text}\n" for w in witnesses)
    assert parse_witness_config(text) == list(witnesses)
    with pytest.raises(ValueError):
        parse_witness_config("ftp://x " + witnesses[0].key.text)
    assert parse_cosigner_verifier(witnesses[0].key.text) == witnesses[0].key


def test_the_exchange_ledger_is_witnessed_at_a_quorum(tmp_path):
    """The exchange's own ledger (the SQLite store, its checkpoints signed by its key) sent
    by `witness_latest` to three witnesses, one down: witnessed at quorum 2, the files
    written; grows and is witnessed again from the sizes kept; quorum 3 raises the transient
    error after writing what it got — and the trades never waited for any of it."""
    from catalogue.db import make_engine
    from exchange.ledger.keys import load_signer
    from exchange.ledger.store import LedgerStore
    from exchange.witness.publish import WitnessQuorumNotReached, witness_latest

    signer = load_signer(tmp_path, {"NSDX_LEDGER_KEY": generate_key("nsdx.test/exchange")[0]})
    store = LedgerStore(make_engine(f"sqlite:///{tmp_path / 'l.db'}"), signer)
    home = tmp_path / "home"

    def trade(n: int) -> None:
        for i in range(n):
            with store.transaction() as s:
                store.append(s, "test.event", {"i": i})
                store.checkpoint(s)

    with _witnesses(tmp_path, signer.verifier_key, "x") as endpoints:
        trade(3)
        r = witness_latest(store, home, endpoints, quorum=2)
        assert r.witnessed and r.tree_size == 3 and set(r.failures) == {"witness.test/x3"}
        witnessed = (home / "witnessing" / "witnessed").read_text()
        assert witnessed == r.note and open_note(witnessed, signer.verifier_key)[0]
        body = witnessed.split("\n\n")[0] + "\n"
        sigs = witnessed.split("\n\n", 1)[1]
        assert set(verify_cosignatures(body, sigs, [e.key for e in endpoints])) == {
            "witness.test/x1",
            "witness.test/x2",
        }
        trade(4)
        r = witness_latest(store, home, endpoints, quorum=2)
        assert r.witnessed and r.tree_size == 7
        assert json.loads((home / "witnessing" / "sizes.json").read_text()) == {
            "witness.test/x1": 7,
            "witness.test/x2": 7,
        }
        trade(1)
        with pytest.raises(WitnessQuorumNotReached) as e:
            witness_latest(store, home, endpoints, quorum=3)
        assert e.value.status == 503 and e.value.transient
        assert (home / "witnessing" / "checkpoint.8").exists()
        assert (
            open_note((home / "witnessing" / "witnessed").read_text(), signer.verifier_key)[
                0
            ].split("\n")[1]
            == "7"
        )  # the last witnessed one stays published


def test_cli_audit_witness(nsdx_env, tmp_path):
    """`nsdx audit witness` on a demo deployment: a majority (2 of 3, one down) cosigns."""
    from tests.conftest import run_cli

    run_cli("exchange", "demo", env=nsdx_env)
    ledger_key = (Path(nsdx_env["NSDX_HOME"]) / "ledger.key").read_text().strip()
    log_key = verifier_key(ledger_key)  # what `nsdx audit pubkey` prints
    with _witnesses(tmp_path, log_key, "c") as endpoints:
        config = tmp_path / "witnesses.txt"
        config.write_text("".join(f"{e.url} {e.key.text}\n" for e in endpoints))
        out = run_cli("audit", "witness", "--witnesses", str(config), "--json", env=nsdx_env)
        r = json.loads(out.stdout)
        assert r["witnessed"] and r["quorum"] == 2
        assert sorted(r["cosigners"]) == ["witness.test/c1", "witness.test/c2"]
        # the witnessed checkpoint is one `nsdx audit verify` accepts (cosignatures ignored)
        witnessed = Path(nsdx_env["NSDX_HOME"]) / "witnessing" / "witnessed"
        run_cli("audit", "verify", "--checkpoint", str(witnessed), env=nsdx_env)
        # a fork the exchange could show someone else: its key, the same size, another root
        size = r["tree_size"]
        fork = sign_note(checkpoint_body(log_key.split("+")[0], size, bytes(32)), ledger_key)
        req = urllib.request.Request(
            endpoints[0].url + "/add-checkpoint", data=f"old {size}\n\n{fork}".encode()
        )
        with pytest.raises(urllib.error.HTTPError) as e:  # the witness refuses it
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 409
        (tmp_path / "fork.note").write_text(fork)
        proc = run_cli(
            "audit",
            "verify",
            "--checkpoint",
            str(tmp_path / "fork.note"),
            env=nsdx_env,
            check=False,
        )
        assert proc.returncode == 1  # and the ledger does not match the fork either
        assert f"external checkpoint at size {size} and the database's disagree" in proc.stderr


def test_a_witness_listed_twice_counts_once(tmp_path):
    """Review finding 12: the same witness configured twice made one cosignature count as
    two towards the quorum; now it is asked once and counts once, and a config with the
    same witness on two lines is refused naming both lines."""
    tree = MerkleTree([leaf_hash(f"d-{i}".encode()) for i in range(5)])
    proof = lambda a, b: tree.consistency_proof(a, b)  # noqa: E731
    with _witnesses(tmp_path, LOG_VERIFIER, "d") as (w1, _w2, w3):
        r = request_cosignatures(_note(tree, 5), LOG_VERIFIER, [w1, w1, w3], proof, quorum=2)
        assert r.cosigners == ["witness.test/d1"] and not r.witnessed
        sigs = r.note.split("\n\n", 1)[1]
        assert sigs.count("\u2014 witness.test/d1 ") == 1
    text = f"{w1.url} {w1.key.text}\n# again, another URL\nhttp://mirror.test {w1.key.text}\n"
    with pytest.raises(ValueError, match="line 3: the witness witness.test/d1 is already .* 1"):
        parse_witness_config(text)


def test_only_the_verified_line_of_an_answer_is_kept(tmp_path):
    """Review finding 12: a witness answer holding a line under the witness's name that
    does not verify (another key ID) before its real cosignature — the first line was kept,
    so the 'witnessed' note carried a cosignature nobody can check. Now the verified one."""
    import base64
    import http.server

    tree = MerkleTree([leaf_hash(f"e-{i}".encode()) for i in range(3)])
    with _witnesses(tmp_path, LOG_VERIFIER, "e") as (w1, _w2, _w3):
        name = w1.key.name
        junk = base64.b64encode(bytes(76)).decode()  # key ID 0: not the witness's
        bogus = f"\u2014 {name} {junk}"

        class Proxy(http.server.BaseHTTPRequestHandler):
            """A witness front that adds a bogus line above the real cosignature."""

            def log_message(self, *a):
                pass

            def do_POST(self):
                data = self.rfile.read(int(self.headers["Content-Length"]))
                req = urllib.request.Request(w1.url + "/add-checkpoint", data=data)
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        status, text = r.status, r.read().decode()
                except urllib.error.HTTPError as e:
                    status, text = e.code, e.read().decode()
                if status == 200:
                    text = bogus + "\n" + text
                out = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            front = WitnessEndpoint(f"http://127.0.0.1:{server.server_address[1]}", w1.key)
            r = request_cosignatures(
                _note(tree, 3),
                LOG_VERIFIER,
                [front],
                lambda a, b: tree.consistency_proof(a, b),
                quorum=1,
            )
        finally:
            server.shutdown()
            server.server_close()
    assert r.witnessed and r.cosigners == [name], r.failures
    body, sigs = r.note.split("\n\n", 1)
    assert bogus not in sigs
    assert set(verify_cosignatures(body + "\n", sigs, [w1.key])) == {name}
    [line] = [ln for ln in sigs.splitlines() if ln.startswith(f"\u2014 {name} ")]
    assert base64.b64decode(line.split()[-1])[:4] == w1.key.key_id.to_bytes(4, "big")
