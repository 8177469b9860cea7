"""The log's side: a checkpoint sent to three real witnesses (uvicorn, HTTP), a quorum of
two, one witness down; a fork is refused by the witnesses that saw the other history."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import uvicorn

from exchange.ledger.merkle import MerkleTree, leaf_hash
from exchange.ledger.note import checkpoint_body, generate_key, open_note, sign_note
from exchange.witness import init_witness, parse_cosigner_verifier, verify_cosignatures
from exchange.witness.client import WitnessEndpoint, parse_witness_config, request_cosignatures
from nsdx.web.witness import create_witness_app

ORIGIN = "nsdx.test/quorum-ledger"
LOG_SIGNER, LOG_VERIFIER = generate_key(ORIGIN)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def witnesses(tmp_path_factory):
    """Two running witnesses and a third whose port has nothing listening (down)."""
    servers, endpoints = [], []
    for i in (1, 2, 3):
        home = tmp_path_factory.mktemp(f"w{i}")
        key = init_witness(home, f"witness.test/q{i}", [LOG_VERIFIER])
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
    for server, _ in servers:
        for _ in range(400):
            if server.started:
                break
            time.sleep(0.025)
        assert server.started
    yield endpoints
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


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
