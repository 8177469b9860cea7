"""The exchange witnesses its own checkpoints by itself (issue #21, items 2, 4 and 5): the
background job sends each new checkpoint to the configured witnesses (real ones, over
HTTP), keeps the cosignatures with the checkpoint in the database and marks it witnessed at
the quorum; a witness down or restarted only delays witnessing; a split view is refused by
the witness and reported by `nsdx audit verify`."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from catalogue.db import make_engine
from exchange.ledger.keys import load_signer
from exchange.ledger.note import generate_key, open_note
from exchange.ledger.store import LedgerStore
from exchange.ledger.verify import verify_with_state
from exchange.witness import init_witness, verify_cosignatures
from exchange.witness.audit import witness_checks
from exchange.witness.client import WitnessEndpoint
from exchange.witness.config import WitnessingConfig, load_witnessing
from exchange.witness.publish import witness_latest, witness_status
from exchange.witness.pump import WitnessPump
from nsdx.web.witness import create_witness_app
from tests.servers import free_port

pytestmark = pytest.mark.xdist_group("witness-auto")


class WitnessServer:
    """A real witness (`nsdx witness serve`'s app under uvicorn) that can be stopped and
    started again on its directory and port."""

    def __init__(self, home: Path, name: str, log_key: str) -> None:
        self.home = home
        self.key = init_witness(home, name, [log_key])
        self.port = free_port()
        self.endpoint = WitnessEndpoint(f"http://127.0.0.1:{self.port}", self.key.verifier)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> WitnessServer:
        config = uvicorn.Config(
            create_witness_app(self.home), host="127.0.0.1", port=self.port, log_level="error"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        for _ in range(800):
            if self._server.started:
                return self
            time.sleep(0.025)
        raise AssertionError("the witness did not start")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            assert self._thread is not None
            self._thread.join(timeout=10)
            self._server = None


@pytest.fixture
def ledger(tmp_path):
    signer = load_signer(tmp_path, {"NSDX_LEDGER_KEY": generate_key("nsdx.test/auto")[0]})
    return LedgerStore(make_engine(f"sqlite:///{tmp_path / 'ledger.db'}"), signer)


@pytest.fixture
def any_ledger(tmp_path, database_url):
    """The ledger on SQLite and on PostgreSQL (migration 0012 on both)."""
    signer = load_signer(tmp_path, {"NSDX_LEDGER_KEY": generate_key("nsdx.test/auto")[0]})
    return LedgerStore(make_engine(database_url), signer)


def _trade(store: LedgerStore, n: int, tag: str = "t") -> None:
    for i in range(n):
        with store.transaction() as s:
            store.append(s, "test.event", {"i": i, "tag": tag})


def _until(pred, what: str, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"waited {timeout} s for {what}")


def _cfg(*servers: WitnessServer, quorum: int) -> WitnessingConfig:
    return WitnessingConfig(
        tuple(s.endpoint for s in servers), quorum, timeout=2, retry=0.05, retry_max=0.2,
        interval=0.2,
    )  # fmt: skip


def test_each_checkpoint_is_witnessed_in_the_background_three_witnesses_one_down(
    any_ledger, tmp_path
):
    """Three witnesses, quorum two, one down: every new checkpoint is witnessed by the
    background job (woken by the commit that signed it), the two cosignatures are stored
    with the checkpoint and ride on the receipt's note; the down witness is recorded with
    its error and a back-off. Trades never wait: they happen with witnessing stopped."""
    ledger = any_ledger
    w = [
        WitnessServer(tmp_path / f"w{i}", f"witness.test/auto{i}", ledger.signer.verifier_key)
        for i in (1, 2, 3)
    ]
    w[0].start(), w[1].start()  # w3 is down
    pump = WitnessPump(ledger, _cfg(*w, quorum=2)).start()
    try:
        _trade(ledger, 3)
        _until(lambda: 3 in ledger.witnessed_sizes(), "checkpoint 3 witnessed")
        _trade(ledger, 2)
        _until(lambda: 5 in ledger.witnessed_sizes(), "checkpoint 5 witnessed")
    finally:
        pump.stop()
        w[0].stop(), w[1].stop()
    witnessed, lines = ledger.witnessing(5)
    assert witnessed and [n for n, _ in lines] == ["witness.test/auto1", "witness.test/auto2"]
    receipt = ledger.inclusion(4)
    assert receipt["witnessed"] and receipt["tree_size"] == 5
    body, signers = open_note(receipt["checkpoint"], ledger.signer.verifier_key)
    sigs = receipt["checkpoint"].split("\n\n", 1)[1]
    assert set(verify_cosignatures(body, sigs, [s.key.verifier for s in w])) == {
        "witness.test/auto1",
        "witness.test/auto2",
    }
    st = {x["witness"]: x for x in witness_status(ledger.engine)["witnesses"]}
    assert st["witness.test/auto1"]["size"] == 5 and st["witness.test/auto1"]["failures"] == 0
    down = st["witness.test/auto3"]
    assert down["failures"] >= 1 and down["next_attempt"] and "Error" in down["last_error"]
    # no witness running: trades go on; their checkpoints wait, unwitnessed
    _trade(ledger, 2)
    assert ledger.head_size() == 7 and 7 not in ledger.witnessed_sizes()
    assert ledger.inclusion(6)["witnessed"] is False
    assert ledger.inclusion(4, witnessed=True)["tree_size"] == 5  # the latest witnessed


def test_a_witness_restarted_in_the_middle_catches_up(ledger, tmp_path):
    """Quorum 2 of 2: one witness is stopped while trades go on (nothing witnessed, no
    trade fails), started again on its directory — it remembers the size it cosigned —
    and the background job brings it up to date with a consistency proof from that size."""
    w1 = WitnessServer(tmp_path / "r1", "witness.test/r1", ledger.signer.verifier_key).start()
    w2 = WitnessServer(tmp_path / "r2", "witness.test/r2", ledger.signer.verifier_key).start()
    pump = WitnessPump(ledger, _cfg(w1, w2, quorum=2)).start()
    try:
        _trade(ledger, 4)
        _until(lambda: 4 in ledger.witnessed_sizes(), "checkpoint 4 witnessed")
        w2.stop()
        _trade(ledger, 3)
        _until(
            lambda: (pump.last and pump.last.tree_size == 7 and pump.last.failures) or None,
            "a round that found witness r2 down",
        )
        assert 7 not in ledger.witnessed_sizes() and ledger.head_size() == 7
        w2.start()  # the same directory: its state says 4
        _until(lambda: 7 in ledger.witnessed_sizes(), "checkpoint 7 witnessed after the restart")
    finally:
        pump.stop()
        w1.stop(), w2.stop()
    st = {x["witness"]: x for x in witness_status(ledger.engine)["witnesses"]}
    assert st["witness.test/r2"]["size"] == 7 and st["witness.test/r2"]["failures"] == 0


def _fork(tmp_path: Path, ledger: LedgerStore, name: str, common: int) -> LedgerStore:
    """Another database under the same log key whose first ``common`` entries are the
    ledger's and whose later ones differ: the history the exchange could show others."""
    other = LedgerStore(make_engine(f"sqlite:///{tmp_path / name}"), ledger.signer)
    for e in ledger.events(common):
        with other.transaction() as s:
            other.append(s, e["type"], {k: v for k, v in e.items() if k not in ("type", "index")})
    return other


def test_a_split_view_is_refused_and_reported_by_verify(ledger, tmp_path):
    """The exchange shows history A to witness 1 and, from the same key, history B (same
    first 3 entries) to witness 1 again and to witness 2. Witness 1 refuses B (it cosigned
    A); witness 2, which never saw A, cosigns B. Verifying B's database against the
    witnesses reports the fork: witness 1 cosigned another root at size 6."""
    w1 = WitnessServer(tmp_path / "f1", "witness.test/f1", ledger.signer.verifier_key).start()
    w2 = WitnessServer(tmp_path / "f2", "witness.test/f2", ledger.signer.verifier_key).start()
    try:
        _trade(ledger, 3, "common")
        fork_b = _fork(tmp_path, ledger, "fork-b.db", 3)
        _trade(ledger, 3, "A")
        _trade(fork_b, 3, "B")
        assert ledger.latest_checkpoint().root != fork_b.latest_checkpoint().root
        a = witness_latest(ledger, _cfg(w1, quorum=1))
        assert a.witnessed and a.cosigners == ["witness.test/f1"]
        b = witness_latest(fork_b, _cfg(w1, w2, quorum=2))
        assert b.cosigners == ["witness.test/f2"] and not b.witnessed
        assert "409" in b.failures["witness.test/f1"] and "fork" in b.failures["witness.test/f1"]
        assert list((tmp_path / "f1" / "evidence").iterdir())  # the refused fork, log-signed
        key = ledger.signer.verifier_key
        cfg = _cfg(w1, w2, quorum=2)
        res = verify_with_state(fork_b, key, also=witness_checks(fork_b, key, cfg))
        assert not res.ok
        forks = [p for p in res.problems if p.kind == "fork"]
        assert len(forks) == 1 and "witness.test/f1" in forks[0].message
        assert "size 6" in forks[0].message and "split view" in forks[0].message
        from nsdx.web.i18n import core  # the officials' page says it in Chinese

        assert "见证方 witness.test/f1 在规模 6 处联署了另一段历史" in core(forks[0].message)
        views = {v["witness"]: v for v in res.witnessing["views"]}
        assert views["witness.test/f1"]["agrees"] is False
        assert views["witness.test/f2"]["agrees"] is True
        # history A, the one witness 1 cosigned, verifies against both (w2 saw no A: it
        # cosigned B, so A's database disagrees with w2 — the fork shows from both sides)
        res_a = verify_with_state(ledger, key, also=witness_checks(ledger, key, cfg))
        assert [p.message for p in res_a.problems if p.kind == "fork"][0].startswith(
            "witness witness.test/f2 cosigned a different history at size 6"
        )
    finally:
        w1.stop(), w2.stop()


def test_verify_checks_the_stored_cosignatures_and_the_quorum(ledger, tmp_path):
    """A witnessed checkpoint whose stored cosignature was replaced by one that does not
    verify, or a quorum raised above what cosigned, is reported (offline: no witness
    asked)."""
    from sqlalchemy import update

    from exchange.models import LedgerCosignature

    w1 = WitnessServer(tmp_path / "v1", "witness.test/v1", ledger.signer.verifier_key).start()
    w2 = WitnessServer(tmp_path / "v2", "witness.test/v2", ledger.signer.verifier_key).start()
    try:
        _trade(ledger, 2)
        assert witness_latest(ledger, _cfg(w1, w2, quorum=2)).witnessed
    finally:
        w1.stop(), w2.stop()
    key = ledger.signer.verifier_key
    ok = verify_with_state(
        ledger, key, also=witness_checks(ledger, key, _cfg(w1, w2, quorum=2), ask=False)
    )
    assert ok.ok and ok.witnessing["witnessed_checkpoints"] == 1
    # a third witness configured and a quorum of 3: the stored checkpoint falls short
    w3 = WitnessServer(tmp_path / "v3", "witness.test/v3", key)
    short = verify_with_state(
        ledger, key, also=witness_checks(ledger, key, _cfg(w1, w2, w3, quorum=3), ask=False)
    )
    assert [p.kind for p in short.problems] == ["quorum"]
    assert "2 of the configured witnesses cosigned it (quorum 3)" in short.problems[0].message
    # a stored line rewritten (another checkpoint's signature bytes under w1's key ID)
    with ledger.engine.begin() as conn:
        line = (
            conn.execute(
                LedgerCosignature.__table__.select().where(
                    LedgerCosignature.witness == "witness.test/v1"
                )
            )
            .first()
            .line
        )
        bad = line[:-8] + ("AAAAAAA=" if not line.endswith("AAAAAAA=") else "BBBBBBB=")
        conn.execute(
            update(LedgerCosignature)
            .where(LedgerCosignature.witness == "witness.test/v1")
            .values(line=bad)
        )
    broken = verify_with_state(
        ledger, key, also=witness_checks(ledger, key, _cfg(w1, w2, quorum=2), ask=False)
    )
    kinds = sorted(p.kind for p in broken.problems)
    assert kinds == ["cosignature", "quorum"], broken.problems


def test_configuration(tmp_path):
    """NSDX_WITNESSES or $NSDX_HOME/witnesses.txt; the quorum defaults to a majority and
    is bounded; numbers are checked."""
    from exchange.witness.config import WitnessConfigInvalid
    from exchange.witness.cosignature import generate_cosigner_key

    keys = [generate_cosigner_key(f"witness.test/c{i}").verifier for i in range(3)]
    text = "# the district's witnesses\n" + "".join(
        f"https://w{i}.example/ {k.text}\n" for i, k in enumerate(keys)
    )
    home = tmp_path / "home"
    home.mkdir()
    assert load_witnessing(home, {}) is None
    (home / "witnesses.txt").write_text(text)
    cfg = load_witnessing(home, {})
    assert cfg is not None and cfg.quorum == 2 and len(cfg.witnesses) == 3
    assert cfg.witnesses[0].url == "https://w0.example"
    other = tmp_path / "elsewhere.txt"
    other.write_text(text.splitlines(keepends=True)[1])
    assert len(load_witnessing(home, {"NSDX_WITNESSES": str(other)}).witnesses) == 1
    assert load_witnessing(home, {"NSDX_WITNESS_QUORUM": "3"}).quorum == 3
    for env, msg in [
        ({"NSDX_WITNESS_QUORUM": "4"}, "between 1 and the number of witnesses"),
        ({"NSDX_WITNESS_QUORUM": "two"}, "not a whole number"),
        ({"NSDX_WITNESS_TIMEOUT": "nan"}, "NSDX_WITNESS_TIMEOUT"),
        ({"NSDX_WITNESS_RETRY": "-1"}, "NSDX_WITNESS_RETRY"),
        ({"NSDX_WITNESSES": str(tmp_path / "missing.txt")}, "cannot read the witness list"),
    ]:
        with pytest.raises(WitnessConfigInvalid, match=msg):
            load_witnessing(home, env)
    (home / "witnesses.txt").write_text("ftp://x " + keys[0].text + "\n")
    with pytest.raises(WitnessConfigInvalid, match="line 1"):
        load_witnessing(home, {})
    assert cfg.backoff(0) == 0 and cfg.backoff(1) == 2 and cfg.backoff(3) == 8
    assert cfg.backoff(40) == 300
    json.dumps(cfg.to_dict())


def test_the_server_witnesses_and_the_auditor_dashboard_shows_it(tmp_path, nsdx_env, monkeypatch):
    """`nsdx serve`'s app (its embedded worker) starts the witnessing job when
    $NSDX_HOME/witnesses.txt lists witnesses: a trade's checkpoint gets witnessed with no
    command run, and the officials' dashboard shows the witnessed checkpoint with its
    cosignatures and each witness's state (the down one with its error), in Chinese."""
    import re

    from fastapi.testclient import TestClient

    from catalogue.auth import Accounts
    from catalogue.search import drop_indexes
    from catalogue.signin import set_password
    from nsdx.web.app import create_app
    from tests.test_ckan_api import make_nsdx
    from tests.test_portal_pages import HTML, PASSWORD, login

    (tmp_path / "home").mkdir(exist_ok=True)
    nx = make_nsdx(tmp_path, f"sqlite:///{tmp_path / 'home' / 'nsdx.db'}")
    ledger = nx.exchange.ledger
    w1 = WitnessServer(tmp_path / "p1", "witness.test/p1", ledger.signer.verifier_key).start()
    w2 = WitnessServer(tmp_path / "p2", "witness.test/p2", ledger.signer.verifier_key)  # down
    (tmp_path / "home" / "witnesses.txt").write_text(
        f"{w1.endpoint.url} {w1.key.verifier.text}\n{w2.endpoint.url} {w2.key.verifier.text}\n"
    )
    monkeypatch.setenv("NSDX_WITNESS_QUORUM", "1")
    monkeypatch.setenv("NSDX_WITNESS_RETRY", "0.05")
    acc = Accounts(nx.catalogue)
    acc.create_user("official", auditor=True)
    set_password(acc, "official", PASSWORD)
    try:
        with TestClient(create_app(nx, warm=False, worker=True)) as c:
            c.headers.update(HTML)
            ledger.append_event("test.event", {"n": 1})
            ledger.append_event("test.event", {"n": 2})
            _until(lambda: 2 in ledger.witnessed_sizes(), "checkpoint 2 witnessed by the server")
            login(c, "official")
            page = c.get("/audit").text
            assert re.search(r'id="witnessed-size">2<', page)
            assert "— witness.test/p1 " in page and "最新已见证检查点" in page
            assert "witness.test/p2" in page and "Error" in page  # down, with its error
            tok = re.search(r'name="csrftoken" value="([^"]+)"', page).group(1)
            verified = c.post("/audit/verify", data={"csrftoken": tok}).text
            assert 'id="verify-result" role="status" class="notice"' in verified
    finally:
        w1.stop()
        drop_indexes()


def test_two_workers_witness_the_same_ledger(any_ledger, tmp_path):
    """Two job workers (e.g. two server processes) run the job on one database: the
    checkpoint is witnessed, each witness's cosignature is stored once, neither fails."""
    ledger = any_ledger
    other = LedgerStore(ledger.engine, ledger.signer)
    w1 = WitnessServer(tmp_path / "d1", "witness.test/d1", ledger.signer.verifier_key).start()
    w2 = WitnessServer(tmp_path / "d2", "witness.test/d2", ledger.signer.verifier_key).start()
    pumps = [WitnessPump(x, _cfg(w1, w2, quorum=2), min_gap=0).start() for x in (ledger, other)]
    try:
        for i in range(3):
            _trade(ledger if i % 2 else other, 2)
        size = ledger.head_size()
        _until(lambda: size in ledger.witnessed_sizes(), f"checkpoint {size} witnessed")
    finally:
        for p in pumps:
            p.stop()
        w1.stop(), w2.stop()
    assert [n for n, _ in ledger.witnessing(size)[1]] == ["witness.test/d1", "witness.test/d2"]
    assert all(p.last_error is None for p in pumps), [p.last_error for p in pumps]
