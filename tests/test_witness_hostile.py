"""Hostile witnesses (review findings): a witness that drips its answer a byte at a time,
answers JSON nested 200 000 deep, redirects the request to another address or sends 10 MB
is a failure of that witness within its timeout, never an exception and never a delay of
the other witnesses' cosignatures; and one public key under two names is one witness."""

from __future__ import annotations

import base64
import http.server
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import pytest

from exchange.ledger.merkle import MerkleTree, leaf_hash
from exchange.ledger.note import checkpoint_body, generate_key, sign_note
from exchange.witness.client import (
    WitnessEndpoint,
    distinct_witnesses,
    parse_witness_config,
    request_cosignatures,
)
from exchange.witness.config import WitnessConfigInvalid, WitnessingConfig
from exchange.witness.cosignature import (
    CosignatureError,
    CosignerKey,
    _key_id,
    generate_cosigner_key,
)
from exchange.witness.transport import WitnessHTTPError, witness_request
from nsdx import verify_receipt as vr
from tests.test_witness_quorum import LOG_SIGNER, LOG_VERIFIER, ORIGIN, _witnesses

pytestmark = pytest.mark.xdist_group("witness_hostile")


@contextmanager
def _serve(handle: Callable[[http.server.BaseHTTPRequestHandler], None]):
    """A real HTTP server on 127.0.0.1 whose every GET/POST is ``handle(handler)``;
    yields its base URL and the list of paths it was asked for."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _any(self):
            hits.append(self.path)
            n = int(self.headers.get("Content-Length") or 0)
            if n:
                self.rfile.read(n)
            try:
                handle(self)
            except OSError:  # the client gave up (what a deadline does): fine
                pass

        do_GET = do_POST = _any

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        server.server_close()


def _answer(h, status: int, body: bytes, **headers: str) -> None:
    h.send_response(status)
    for k, v in headers.items():
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def _dripper(stop: threading.Event, done: threading.Event, *, headers_too: bool = False):
    """Answers one byte every 0.1 s until the client hangs up (or ``stop``): each read
    is well within any per-read timeout, the whole answer never comes."""

    def handle(h) -> None:
        try:
            if headers_too:  # even the status line comes a byte at a time
                for b in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 10_000:
                    if stop.wait(0.1):
                        return
                    h.wfile.write(bytes([b]))
                    h.wfile.flush()
            h.send_response(200)
            h.send_header("Content-Length", "100000")
            h.end_headers()
            while not stop.wait(0.1):
                h.wfile.write(b"x")
                h.wfile.flush()
        finally:
            done.set()

    return handle


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "status-line"])
def test_a_dripping_witness_is_cut_at_the_deadline(headers_too):
    """Finding 1a: the timeout was per socket read; a witness sending a byte a second
    held the request for ever. Now the whole request has a deadline: the dripping answer
    is refused as late (the server sees the client hang up)."""
    stop, done = threading.Event(), threading.Event()
    with _serve(_dripper(stop, done, headers_too=headers_too)) as (url, _):
        try:
            with pytest.raises(WitnessHTTPError, match="no complete answer within 1 s"):
                witness_request(url + "/", timeout=1, limit=1 << 20)
            assert done.wait(30)  # the witness's handler ended: the client hung up on it
        finally:
            stop.set()


def _ledger(tmp_path: Path):
    from catalogue.db import make_engine
    from exchange.ledger.keys import load_signer
    from exchange.ledger.store import LedgerStore

    signer = load_signer(tmp_path, {"NSDX_LEDGER_KEY": generate_key("nsdx.test/hostile")[0]})
    store = LedgerStore(make_engine(f"sqlite:///{tmp_path / 'l.db'}"), signer)
    for i in range(3):
        with store.transaction() as s:
            store.append(s, "test.event", {"i": i})
            store.checkpoint(s)
    return store


def test_a_slow_witness_does_not_hold_the_others_cosignatures(tmp_path):
    """Finding 1a (pump): one round waited for every witness before storing anything, so
    a slow witness held the others' cosignatures. Now each answer is stored as it comes:
    while the third witness is still dripping, the checkpoint is already witnessed (2 of
    3) in the database; the slow one ends as a failure when its deadline passes."""
    from exchange.witness.publish import witness_latest, witness_status

    store = _ledger(tmp_path)
    stop, done = threading.Event(), threading.Event()
    seen_while_slow: list[bool] = []
    drip = _dripper(stop, done)

    def slow(h) -> None:
        # look at the database from the witness's side while it keeps the request open
        def watch() -> None:
            while not done.is_set():
                if witness_status(store.engine, 3)["witnessed"]:
                    seen_while_slow.append(True)
                    return
                time.sleep(0.05)

        threading.Thread(target=watch, daemon=True).start()
        drip(h)

    slow_key = generate_cosigner_key("witness.test/slow").verifier
    with (
        _witnesses(tmp_path, store.signer.verifier_key, "s") as (w1, w2, _down),
        _serve(slow) as (url, _),
    ):
        try:
            cfg = WitnessingConfig((w1, w2, WitnessEndpoint(url, slow_key)), 2, timeout=3)
            r = witness_latest(store, cfg)
        finally:
            stop.set()
    assert r.witnessed and r.cosigners == ["witness.test/s1", "witness.test/s2"]
    assert "no complete answer within 3 s" in r.failures["witness.test/slow"]
    assert seen_while_slow == [True]  # stored before the slow witness's request ended
    st = witness_status(store.engine, 3)
    assert {c["witness"] for c in st["cosignatures"]} == {"witness.test/s1", "witness.test/s2"}
    slow_row = [w for w in st["witnesses"] if w["witness"] == "witness.test/slow"][0]
    assert slow_row["failures"] == 1 and "no complete answer" in slow_row["last_error"]


def test_deep_json_huge_and_redirecting_witnesses_are_reported_not_raised():
    """Finding 1b: `GET /` answering "[" * 200000 raised RecursionError out of
    fetch_views (the official's `audit verify` failed with a 500). Finding 1c: a redirect
    was followed to any address and the start of that answer was stored as the error.
    Now each is that witness's error, and the other address is never asked."""
    from exchange.witness.audit import fetch_views

    secret = b"SECRET-INTERNAL-ANSWER"
    with _serve(lambda h: _answer(h, 200, secret)) as (inner, inner_hits):

        def redirect(h) -> None:
            _answer(h, 302, b"moved", Location=inner + "/internal")

        with (
            _serve(lambda h: _answer(h, 200, b"[" * 200_000)) as (deep, _),
            _serve(lambda h: _answer(h, 200, b"{" + b" " * 10_000_000 + b"}")) as (huge, _),
            _serve(redirect) as (moved, moved_hits),
        ):
            keys = [generate_cosigner_key(f"witness.test/h{i}").verifier for i in range(3)]
            cfg = WitnessingConfig(
                (
                    WitnessEndpoint(deep, keys[0]),
                    WitnessEndpoint(huge, keys[1]),
                    WitnessEndpoint(moved, keys[2]),
                ),
                1,
                timeout=10,
            )
            views = {v.witness: v for v in fetch_views(cfg, ORIGIN, LOG_VERIFIER)}
            assert "nested too deeply" in views["witness.test/h0"].error
            assert "over 262144 bytes" in views["witness.test/h1"].error
            assert "redirect" in views["witness.test/h2"].error
            assert all(v.size is None and v.agrees is None for v in views.values())

            # the log's side: the POST /add-checkpoint redirected is a failure too
            tree = MerkleTree([leaf_hash(b"r-0")])
            note = sign_note(checkpoint_body(ORIGIN, 1, tree.root(1)), LOG_SIGNER)
            r = request_cosignatures(
                note, LOG_VERIFIER, [WitnessEndpoint(moved, keys[2])], lambda a, b: [], quorum=1
            )
            why = r.failures["witness.test/h2"]
            assert not r.witnessed and "HTTP 302" in why and "redirect" in why
            assert "SECRET" not in why and "moved" not in why
            assert moved_hits == ["/", "/add-checkpoint"]
    assert inner_hits == []  # never followed to the other address


def _renamed(key: CosignerKey, name: str) -> CosignerKey:
    """The same Ed25519 key published under another name (another key ID)."""
    return CosignerKey(name, _key_id(name, key.verifier.public), key.seed)


def test_one_public_key_under_two_names_counts_once(tmp_path, nsdx_env):
    """Finding 2: the quorum counted names, so one key published as two witnesses counted
    twice. The configuration refuses it (also `nsdx audit witness --witnesses FILE`), a
    list passed in asks it once, and the offline verifier counts distinct keys."""
    from tests.conftest import run_cli

    a = generate_cosigner_key("witness.test/k1")
    twin = _renamed(a, "witness.test/k1-again")
    other = generate_cosigner_key("witness.test/k2")
    text = (
        f"http://127.0.0.1:9/a {a.verifier.text}\n"
        f"http://127.0.0.1:9/b {other.verifier.text}\n"
        f"http://127.0.0.1:9/c {twin.verifier.text}\n"
    )
    with pytest.raises(
        CosignatureError, match="line 3: the witness witness.test/k1-again has the same public key"
    ):
        parse_witness_config(text)
    eps = [WitnessEndpoint("http://x.test", k.verifier) for k in (a, twin, other)]
    assert [e.key.name for e in distinct_witnesses(eps)] == ["witness.test/k1", "witness.test/k2"]
    cfg = WitnessingConfig((eps[0], eps[2]), 2)
    assert cfg.distinct_keys(["witness.test/k1", "witness.test/k1", "witness.test/k2"]) == 2
    with pytest.raises(WitnessConfigInvalid, match="have the same public key"):
        WitnessingConfig(tuple(eps), 2)  # built in code, not from a file: refused too

    f = tmp_path / "witnesses.txt"
    f.write_text(text)
    run_cli("exchange", "demo", env=nsdx_env)
    out = run_cli("audit", "witness", "--witnesses", str(f), env=nsdx_env, check=False)
    assert out.returncode != 0
    assert "has the same public key as witness.test/k1 on line 1" in out.stderr + out.stdout

    # the standard-library verifier: a note cosigned by the key under both names
    body = checkpoint_body(ORIGIN, 1, bytes(32))
    note = sign_note(body, LOG_SIGNER) + a.cosign(body, 1) + twin.cosign(body, 2)
    wits = [vr.parse_key(k.verifier.text, 0x04, "witness key") for k in (a, twin)]
    assert vr.check_cosignatures(note, wits) == ["witness.test/k1"]
    receipt = {
        "entry": {},
        "index": 0,
        "tree_size": 1,
        "checkpoint": note,
        "leaf_hash": base64.b64encode(bytes(32)).decode(),
        "proof": [],
    }
    with pytest.raises(vr.CannotRun, match="distinct public keys; 1 given"):
        vr.verify_receipt(
            receipt, None, LOG_VERIFIER, [a.verifier.text, twin.verifier.text], quorum=2
        )
