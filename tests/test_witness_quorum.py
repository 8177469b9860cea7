"""The log's side: a checkpoint sent to three real witnesses (uvicorn, HTTP), a quorum of
two, one witness down; a fork is refused by the witnesses that saw the other history."""

from __future__ import annotations

import base64
import json
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
from tests.servers import free_port

ORIGIN = "nsdx.test/quorum-ledger"
LOG_SIGNER, LOG_VERIFIER = generate_key(ORIGIN)


@contextmanager
def _witnesses(root: Path, log_verifier: str, tag: str):
    """Two running witnesses and a third whose port has nothing listening (down)."""
    servers, endpoints = [], []
    for i in (1, 2, 3):
        home = root / f"{tag}{i}"
        key = init_witness(home, f"witness.test/{tag}{i}", [log_verifier])
        port = free_port()
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
    by `witness_latest` to three witnesses, one down: witnessed at quorum 2, the
    cosignatures stored with the checkpoint; grows and is witnessed again from the sizes
    kept; at quorum 3 it is not witnessed (no exception) and the last witnessed stays."""
    from catalogue.db import make_engine
    from exchange.ledger.keys import load_signer
    from exchange.ledger.store import LedgerStore
    from exchange.witness.config import WitnessingConfig
    from exchange.witness.publish import witness_latest, witness_status

    signer = load_signer(tmp_path, {"NSDX_LEDGER_KEY": generate_key("nsdx.test/exchange")[0]})
    store = LedgerStore(make_engine(f"sqlite:///{tmp_path / 'l.db'}"), signer)

    def trade(n: int) -> None:
        for i in range(n):
            with store.transaction() as s:
                store.append(s, "test.event", {"i": i})
                store.checkpoint(s)

    with _witnesses(tmp_path, signer.verifier_key, "x") as endpoints:
        cfg = WitnessingConfig(tuple(endpoints), 2)
        trade(3)
        r = witness_latest(store, cfg)
        assert r.witnessed and r.tree_size == 3 and set(r.failures) == {"witness.test/x3"}
        assert open_note(r.note, signer.verifier_key)[0]
        body = r.note.split("\n\n")[0] + "\n"
        sigs = r.note.split("\n\n", 1)[1]
        assert set(verify_cosignatures(body, sigs, [e.key for e in endpoints])) == {
            "witness.test/x1",
            "witness.test/x2",
        }
        assert store.inclusion(2)["checkpoint"] == r.note  # stored with the checkpoint
        trade(4)
        r = witness_latest(store, cfg, force=True)
        assert r.witnessed and r.tree_size == 7
        sizes = {w["witness"]: w["size"] for w in witness_status(store.engine)["witnesses"]}
        assert sizes == {"witness.test/x1": 7, "witness.test/x2": 7, "witness.test/x3": None}
        trade(1)
        r = witness_latest(store, WitnessingConfig(tuple(endpoints), 3), force=True)
        assert not r.witnessed and sorted(r.cosigners) == ["witness.test/x1", "witness.test/x2"]
        assert store.latest_witnessed().tree_size == 7  # the last witnessed one stays


def test_cli_audit_witness(nsdx_env, tmp_path):
    """On a demo deployment with $NSDX_HOME/witnesses.txt: `nsdx audit witness` (2 of 3,
    one down) witnesses the latest checkpoint; `audit checkpoints`, `audit proof
    --witnessed` and `audit verify --json` show it; a fork the exchange's key signs is
    refused by the witness (409); and once a witness is made to cosign a fork (the
    exchange showed it a longer, different history), `nsdx audit verify` reports the fork
    and exits 1, also with --json."""
    from catalogue.db import make_engine
    from exchange.ledger.store import LedgerStore
    from tests.conftest import run_cli

    run_cli("exchange", "demo", env=nsdx_env)
    home = Path(nsdx_env["NSDX_HOME"])
    ledger_key = (home / "ledger.key").read_text().strip()
    log_key = verifier_key(ledger_key)  # what `nsdx audit pubkey` prints
    with _witnesses(tmp_path, log_key, "c") as endpoints:
        (home / "witnesses.txt").write_text("".join(f"{e.url} {e.key.text}\n" for e in endpoints))
        out = run_cli("audit", "witness", "--json", env=nsdx_env)
        r = json.loads(out.stdout)
        assert r["witnessed"] and r["quorum"] == 2
        assert sorted(r["cosigners"]) == ["witness.test/c1", "witness.test/c2"]
        size = r["tree_size"]
        cps = json.loads(run_cli("audit", "checkpoints", "--json", env=nsdx_env).stdout)
        assert cps[-1]["tree_size"] == size and cps[-1]["witnessed"] is True
        assert not any(c["witnessed"] for c in cps[:-1])
        proof = json.loads(
            run_cli("audit", "proof", "--index", "0", "--witnessed", "--json", env=nsdx_env).stdout
        )
        assert proof["witnessed"] and proof["checkpoint"] == r["note"]
        assert proof["cosigners"] == ["witness.test/c1", "witness.test/c2"]
        st = json.loads(run_cli("audit", "witness", "--status", "--json", env=nsdx_env).stdout)
        assert st["latest_witnessed"]["tree_size"] == size and st["witnessed"] is True
        assert [w["witness"] for w in st["witnesses"]] == [e.key.name for e in endpoints]
        assert st["witnesses"][2]["failures"] == 1 and st["witnesses"][2]["size"] is None
        ok = json.loads(run_cli("audit", "verify", "--json", env=nsdx_env).stdout)
        assert ok["ok"] and ok["witnessing"]["latest_witnessed"] == size
        views = {v["witness"]: v for v in ok["witnessing"]["views"]}
        assert views["witness.test/c1"]["agrees"] and views["witness.test/c2"]["agrees"]
        assert "unreachable" in views["witness.test/c3"]["error"]  # down: not a failure
        # a fork the exchange could show someone else: its key, the same size, another root
        fork = sign_note(checkpoint_body(log_key.split("+")[0], size, bytes(32)), ledger_key)
        req = urllib.request.Request(
            endpoints[0].url + "/add-checkpoint", data=f"old {size}\n\n{fork}".encode()
        )
        with pytest.raises(urllib.error.HTTPError) as e:  # the witness refuses it
            urllib.request.urlopen(req, timeout=10)
        assert e.value.code == 409
        # a longer fork with an honest proof from what c2 cosigned: c2 cosigns it (it
        # never saw anything else), and the database does not hold it
        store = LedgerStore(make_engine(f"sqlite:///{home / 'nsdx.db'}"))
        tree = store.tree(size)
        grown = MerkleTree([tree.leaf(i) for i in range(size)] + [leaf_hash(b"forked")])
        body = checkpoint_body(log_key.split("+")[0], size + 1, grown.root(size + 1))
        lines = [f"old {size}"] + [
            base64.b64encode(h).decode() for h in grown.consistency_proof(size, size + 1)
        ]
        req = urllib.request.Request(
            endpoints[1].url + "/add-checkpoint",
            data=("\n".join(lines) + "\n\n" + sign_note(body, ledger_key)).encode(),
        )
        with urllib.request.urlopen(req, timeout=10) as answer:
            assert answer.status == 200
        bad = run_cli("audit", "verify", "--json", env=nsdx_env, check=False)
        assert bad.returncode == 1
        res = json.loads(bad.stdout)
        assert not res["ok"] and [p["kind"] for p in res["problems"]] == ["fork"]
        assert (
            f"witness witness.test/c2 cosigned a checkpoint of size {size + 1}"
            in (res["problems"][0]["message"])
        )
        text = run_cli("audit", "verify", env=nsdx_env, check=False)
        assert text.returncode == 1 and "FORK" in text.stderr and "split view" in text.stderr
        # offline, the stored cosignatures alone still verify
        run_cli("audit", "verify", "--offline", env=nsdx_env)


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
