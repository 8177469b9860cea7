"""The database-backed ledger: tampering on both databases, concurrent appends from
several processes, DB-backed proofs (hypothesis), the CLI's proof shapes."""

from __future__ import annotations

import base64
import multiprocessing as mp

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from exchange.ledger.keys import load_signer, open_checkpoint
from exchange.ledger.merkle import (
    CompactRange,
    ProofError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from exchange.ledger.store import LedgerStore
from exchange.ledger.verify import verify_ledger


def _store(url, home):
    from catalogue.db import make_engine

    return LedgerStore(make_engine(url), load_signer(home, {}))


def _fill(store: LedgerStore, n: int, checkpoint_every: int = 1) -> None:
    for i in range(n):
        with store.transaction() as s:
            store.append(s, "test.event", {"i": i, "amount_fen": i * 100})
            if (i + 1) % checkpoint_every == 0:
                store.checkpoint(s)


def test_postgres_rejects_update_delete_truncate(postgres_url, tmp_path):
    """PostgreSQL itself refuses edits (SQLite edits are caught by verify: tests below)."""
    store = _store(postgres_url, tmp_path)
    _fill(store, 3)
    assert store.dialect == "postgresql"
    from sqlalchemy.exc import DBAPIError

    for sql in (
        "UPDATE ledger_entries SET payload = '{}' WHERE idx = 1",
        "DELETE FROM ledger_entries WHERE idx = 2",
        "TRUNCATE ledger_entries",
        "UPDATE ledger_checkpoints SET note = 'x'",
        "DELETE FROM ledger_checkpoints",
    ):
        with store.engine.connect() as c, pytest.raises(DBAPIError, match="append-only"):
            c.execute(text(sql))
    assert verify_ledger(store, store.signer.verifier_key).ok


def test_postgres_application_role_without_update(postgres_url, tmp_path):
    """The documented GRANT: the application role can INSERT/SELECT but not UPDATE/DELETE."""
    store = _store(postgres_url, tmp_path)
    assert store.dialect == "postgresql"
    _fill(store, 2)
    import uuid

    role = f"nsdx_app_{uuid.uuid4().hex[:8]}"
    with store.engine.begin() as c:
        c.execute(text(f"CREATE ROLE {role} NOLOGIN"))
        c.execute(text(f"GRANT SELECT, INSERT ON ledger_entries, ledger_checkpoints TO {role}"))
        c.execute(text(f"GRANT SELECT, UPDATE ON ledger_head TO {role}"))
    from sqlalchemy.exc import DBAPIError

    try:
        with store.engine.connect() as c:
            c.execute(text(f"SET ROLE {role}"))
            assert c.execute(text("SELECT count(*) FROM ledger_entries")).scalar() == 2
            with pytest.raises(DBAPIError, match="permission denied"):
                c.execute(text("DELETE FROM ledger_entries"))
            c.rollback()
    finally:
        with store.engine.begin() as c:
            c.execute(text(f"DROP OWNED BY {role}"))
            c.execute(text(f"DROP ROLE {role}"))


def test_sqlite_edit_is_named_at_its_index(tmp_path):
    store = _store(f"sqlite:///{tmp_path / 'l.db'}", tmp_path)
    _fill(store, 20)
    assert verify_ledger(store, store.signer.verifier_key).ok
    with store.engine.begin() as c:  # edit a payload, keep the stored hash
        c.execute(
            text(
                "UPDATE ledger_entries SET payload = replace(payload, '1300', '9900') WHERE idx = 13"
            )
        )
    res = verify_ledger(store, store.signer.verifier_key)
    assert not res.ok and res.first_bad_index == 13
    assert res.problems[0].kind == "leaf_hash" and res.problems[0].index == 13


def test_sqlite_rewritten_hash_is_bounded_by_checkpoints(tmp_path):
    store = _store(f"sqlite:///{tmp_path / 'l.db'}", tmp_path)
    _fill(store, 20)
    rows = list(store.iter_rows())
    payload = rows[7][1].replace("700", "100")
    with store.engine.begin() as c:  # a careful forger rewrites payload and leaf hash
        c.execute(
            text("UPDATE ledger_entries SET payload = :p, leaf_hash = :h WHERE idx = 7"),
            {"p": payload, "h": leaf_hash(payload.encode())},
        )
    res = verify_ledger(store, store.signer.verifier_key)
    assert not res.ok and res.first_bad_index == 7
    assert "entry 7" in res.problems[0].message


def test_sqlite_deleted_tail_and_gap(tmp_path):
    store = _store(f"sqlite:///{tmp_path / 'l.db'}", tmp_path)
    _fill(store, 10)
    with store.engine.begin() as c:
        c.execute(text("DELETE FROM ledger_entries WHERE idx = 4"))
    res = verify_ledger(store, store.signer.verifier_key)
    assert not res.ok and res.first_bad_index == 4 and res.problems[-1].kind in ("gap", "missing")
    with store.engine.begin() as c:
        c.execute(text("DELETE FROM ledger_entries WHERE idx >= 4"))
    res = verify_ledger(store, store.signer.verifier_key)
    assert res.first_bad_index == 4 and any(p.kind == "missing" for p in res.problems)


def test_external_checkpoint_catches_resigned_history(tmp_path):
    """Someone with the key rewrites history and re-signs: the official's saved
    checkpoint (kept outside the database) still disagrees."""
    store = _store(f"sqlite:///{tmp_path / 'l.db'}", tmp_path)
    _fill(store, 5)
    saved = store.get_checkpoint().note
    with store.engine.begin() as c:
        c.execute(text("DELETE FROM ledger_checkpoints"))
        c.execute(text("DELETE FROM ledger_entries WHERE idx = 4"))
        c.execute(
            text("UPDATE ledger_head SET size = 4, frontier = :f"), {"f": _frontier(store, 4)}
        )
    _fill(store, 1)  # a different entry 4, freshly signed
    assert verify_ledger(store, store.signer.verifier_key).ok
    res = verify_ledger(store, store.signer.verifier_key, external_checkpoints=[saved])
    assert not res.ok


def _frontier(store, n):
    cr = CompactRange()
    for _, _, h in store.iter_rows(n):
        cr.append(h)
    return b"".join(cr.hashes)


def _append_worker(url: str, home: str, worker: int, n: int, start) -> None:
    from pathlib import Path

    store = _store(url, Path(home))
    start.wait(300)  # all eight append at once, not one after another as they come up
    for i in range(n):
        if worker % 2:
            store.append_event("load", {"worker": worker, "i": i})
        else:
            with store.transaction() as s:
                store.append(s, "load", {"worker": worker, "i": i})


@pytest.mark.xdist_group("ledger-load")
@pytest.mark.slow
def test_eight_processes_append_without_gap_duplicate_or_fork(database_url, tmp_path):
    """Eight processes released together by a barrier, 200 appends each (half of them
    standalone, half in their own transactions), so that they contend from the first append
    on rather than as each one comes up. The long load run is bench/bench_ledger.py."""
    procs, per = 8, 200
    store = _store(database_url, tmp_path)  # migrate + key once, before the workers
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(procs)
    ps = [
        ctx.Process(target=_append_worker, args=(database_url, str(tmp_path), w, per, start))
        for w in range(procs)
    ]
    for p in ps:
        p.start()
    for p in ps:
        p.join(300)
        assert p.exitcode == 0
    rows = list(store.iter_rows())
    assert [r[0] for r in rows] == list(range(procs * per))  # dense, no duplicates
    seen = {(e["worker"], e["i"]) for e in store.events(procs * per)}
    assert len(seen) == procs * per  # every append landed exactly once
    cp = store.checkpoint()
    assert cp.tree_size == procs * per == store.head_size()
    cr = CompactRange()
    for _, _, h in rows:
        cr.append(h)
    assert cr.root() == cp.root  # the head's compact range agrees with the leaves: no fork
    assert store.pending() == 0
    res = verify_ledger(store, store.signer.verifier_key)
    assert res.ok, res.problems


def _thread_load(store: LedgerStore, threads: int, per: int) -> list:
    """Half the threads append standalone events (handed to the leader in memory), half
    append inside their own transactions (queued when the lock is busy)."""
    import threading

    got, errors = [], []

    def standalone(w):
        try:
            for i in range(per):
                got.append(store.append_event("load", {"worker": w, "i": i}))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    def in_transaction(w):
        try:
            for i in range(per):
                with store.transaction() as s:
                    a = store.append(s, "load", {"worker": w, "i": i})
                got.append(a)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [
        threading.Thread(target=standalone if w % 2 else in_transaction, args=(w,))
        for w in range(threads)
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    assert not errors, errors
    return got


@pytest.mark.xdist_group("ledger-load")
def test_threads_batch_without_gap_duplicate_or_fork(database_url, tmp_path):
    """Group commit inside one process: every receipt names a distinct index, carries a
    signed checkpoint that covers it, and its proof verifies."""
    threads, per = 8, 60
    store = _store(database_url, tmp_path)
    got = _thread_load(store, threads, per)
    n = threads * per
    assert len(got) == n and sorted(a.index for a in got) == list(range(n))
    assert [r[0] for r in store.iter_rows()] == list(range(n))
    assert store.pending() == 0 and store.head_size() == n
    by_index = {i: h for i, _, h in store.iter_rows()}
    for a in got:
        assert a.checkpoint is not None and a.checkpoint.tree_size > a.index
        assert by_index[a.index] == a.leaf_hash
    for a in got[:: max(1, n // 20)]:
        p = store.inclusion(a.index, a.checkpoint.tree_size)
        cp = open_checkpoint(p["checkpoint"], store.signer.verifier_key)
        verify_inclusion(a.index, cp.size, a.leaf_hash, [b(x) for x in p["proof"]], cp.root)
    # one checkpoint per committed batch, never more than one per entry
    assert len(store.checkpoints()) <= n
    res = verify_ledger(store, store.signer.verifier_key)
    assert res.ok, res.problems


def test_postgres_queued_event_waits_for_the_lock_and_survives_its_appender(postgres_url, tmp_path):
    """While someone holds the ledger lock, an append is queued and its transaction
    commits without waiting; it has no index (no receipt) until a lock holder moves it
    in — here `checkpoint()`, as if its appender had died before settling it."""
    from sqlalchemy.orm import Session

    store = _store(postgres_url, tmp_path)
    _fill(store, 3)
    holder = Session(store.engine)
    store.lock(holder)  # another appender's transaction, still open
    with Session(store.engine) as s:
        a = store.append(s, "queued", {"n": 1})
        s.commit()  # returns although the lock is held
    assert a.index is None and a.queue_id is not None
    assert store.pending() == 1 and store.head_size() == 3
    holder.rollback()
    holder.close()
    cp = store.checkpoint()  # the next lock holder integrates the queue first
    assert cp.tree_size == 4 and store.pending() == 0
    assert store.settle(a).index == 3 and a.checkpoint.tree_size == 4
    assert store.entry(3)["payload"]["type"] == "queued"
    assert verify_ledger(store, store.signer.verifier_key).ok


def test_postgres_rejects_tile_edits(postgres_url, tmp_path):
    store = _store(postgres_url, tmp_path)
    with store.transaction() as s:
        store.append_many(s, [("t", {"i": i}) for i in range(300)])
    from sqlalchemy.exc import DBAPIError

    with store.engine.connect() as c, pytest.raises(DBAPIError, match="append-only"):
        c.execute(text("UPDATE ledger_tiles SET hash = hash"))


def test_tiles_match_the_tree_and_proofs_read_only_a_few_rows(tmp_path):
    """Tiles written batch by batch equal the in-memory tree's nodes; DB proofs equal
    MerkleTree proofs at every checkpoint; a forged tile is caught by verify, and proofs
    still verify (the store falls back to the leaves)."""
    from exchange.ledger.merkle import MerkleTree

    store = _store(f"sqlite:///{tmp_path / 'l.db'}", tmp_path)
    sizes = [1, 255, 1, 1, 300, 7, 1000, 65536 - 1565, 3]  # crosses level-8 and 16 tiles
    for k in sizes:
        with store.transaction() as s:
            store.append_many(s, [("t", {"i": i}) for i in range(k)])
    n = sum(sizes)
    tree = MerkleTree(h for _, _, h in store.iter_rows())
    assert store.tiles(8) == [(i, tree.node(8, i)) for i in range(n >> 8)]
    assert store.tiles(16) == [(i, tree.node(16, i)) for i in range(n >> 16)]
    for cp in store.checkpoints():
        for index in {0, cp.tree_size // 2, cp.tree_size - 1}:
            p = store.inclusion(index, cp.tree_size)
            assert [b(x) for x in p["proof"]] == tree.inclusion_proof(index, cp.tree_size)
        if cp.tree_size < n:
            c = store.consistency(cp.tree_size, n)
            assert [b(x) for x in c["proof"]] == tree.consistency_proof(cp.tree_size, n)
    assert verify_ledger(store, store.signer.verifier_key).ok
    with store.engine.begin() as c:
        c.execute(text("UPDATE ledger_tiles SET hash = :h WHERE level = 8 AND idx = 3"),
                  {"h": bytes(32)})  # fmt: skip
    res = verify_ledger(store, store.signer.verifier_key)
    assert not res.ok and res.problems[0].kind == "tile" and "index 3" in res.problems[0].message
    p = store.inclusion(3 * 256 + 5, n)
    cp = store.get_checkpoint(n)
    verify_inclusion(3 * 256 + 5, n, b(p["leaf_hash"]), [b(x) for x in p["proof"]], cp.root)


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    home = tmp_path_factory.mktemp("ledger")
    store = _store(f"sqlite:///{home / 'l.db'}", home)
    _fill(store, 40, checkpoint_every=3)
    store.checkpoint()
    return store


b = base64.b64decode


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_db_receipts_verify_and_bit_flips_fail(filled, data):
    sizes = [c.tree_size for c in filled.checkpoints() if c.tree_size > 0]
    size = data.draw(st.sampled_from(sizes))
    index = data.draw(st.integers(0, size - 1))
    p = filled.inclusion(index, size)
    cp = open_checkpoint(p["checkpoint"], filled.signer.verifier_key)
    assert cp.size == size
    proof = [b(x) for x in p["proof"]]
    verify_inclusion(index, size, b(p["leaf_hash"]), proof, cp.root)
    if proof:
        i = data.draw(st.integers(0, len(proof) - 1))
        bit = data.draw(st.integers(0, 255))
        bad = list(proof)
        bad[i] = bytes(x ^ (1 << (bit % 8)) if j == bit // 8 else x for j, x in enumerate(bad[i]))
        with pytest.raises(ProofError):
            verify_inclusion(index, size, b(p["leaf_hash"]), bad, cp.root)
    size1 = data.draw(st.sampled_from([s for s in sizes if s <= size]))
    c = filled.consistency(size1, size)
    verify_consistency(size1, size, [b(x) for x in c["proof"]], b(c["root1"]), b(c["root2"]))
    if c["proof"]:
        flipped = [b(x) for x in c["proof"]]
        flipped[0] = bytes([flipped[0][0] ^ 1]) + flipped[0][1:]
        with pytest.raises(ProofError):
            verify_consistency(size1, size, flipped, b(c["root1"]), b(c["root2"]))


_FORGED = [
    '{"s":0,"n":1,"q":[[%d,1]]}',  # another entry's index for the waiting event
    '{"cp":[1,2]}',
    '{"cp":[1,"!!",""]}',
    '{"q":[5]}',
    '{"s":0,"n":1,"cp":[1,2]}',  # these raised out of the agent before
    '{"s":0,"n":1,"cp":[1,"!!",""]}',
    '{"s":0,"n":1,"q":[5]}',
    '{"s":"x","n":[],"q":{}}',
    "not json",
    "",
]


def test_postgres_notify_is_only_a_wake_up(postgres_url, tmp_path):
    """Any role that can connect may NOTIFY on the ledger channel: forged or malformed
    announcements, received while an event is queued but not integrated, neither give
    it an index nor break the agent; the database gives the receipt, its own leaf's."""
    import time

    from exchange.errors import LedgerCorrupt
    from exchange.ledger.sequencer import CHANNEL, Agent

    store = _store(postgres_url, tmp_path)
    _fill(store, 3)
    for _ in range(200):  # the filling agent resigns and stops (else it integrates)
        if store._agent is None or store._agent.thread is None:
            break
        time.sleep(0.05)
    assert store._agent is None or store._agent.thread is None
    with store.engine.connect() as c:
        (a,) = store._enqueue(
            c, [("queued", b'{"type":"queued"}', leaf_hash(b'{"type":"queued"}'))], None
        )
        c.commit()
    agent = Agent(store)
    agent.waiting[a.queue_id] = a
    fairy = store.engine.raw_connection()  # as the agent's own: autocommit, listening
    raw = fairy.driver_connection
    raw.rollback()
    raw.autocommit = True
    raw.execute(f"LISTEN {CHANNEL}")
    agent.seen = 3
    try:
        with store.engine.connect() as other:
            for p in _FORGED:
                p = p % a.queue_id if "%d" in p else p
                other.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": p})
                other.commit()
        for _ in _FORGED:
            agent._listen(raw, 1.0)  # must not raise
        assert a.index is None and a.error is None and a.queue_id in agent.waiting
        store.checkpoint()  # integrates the queue and announces it (another session)
        agent._listen(raw, 5.0)
        assert a.error is None and a.index == 3 and a.checkpoint.tree_size == 4
        assert store.entry(3)["leaf_hash"] == base64.b64encode(a.leaf_hash).decode()
        # defence in depth: a receipt whose leaf is not the event's own is refused
        b = type(a)(None, leaf_hash(b"other"), b"other", queue_id=10**9)
        agent.waiting[b.queue_id] = b
        agent._resolve([(b.queue_id, 3, store_leaf(store, 3))], None)
        assert b.index is None and isinstance(b.error, LedgerCorrupt)
    finally:
        fairy.invalidate()


def store_leaf(store: LedgerStore, idx: int) -> bytes:
    return base64.b64decode(store.entry(idx)["leaf_hash"])


def test_postgres_malformed_notifies_do_not_break_waiters(postgres_url, tmp_path):
    """Malformed announcements sent while appenders wait for their receipts: every
    committed append still gets its own index."""
    import threading

    from exchange.ledger.sequencer import CHANNEL

    store = _store(postgres_url, tmp_path)
    stop = threading.Event()

    def spam() -> None:
        with store.engine.connect() as other:
            while not stop.is_set():
                for p in _FORGED[1:] + ['{"s":0,"n":1,"q":[[1,1]]}']:
                    other.execute(text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": p})
                    other.commit()

    t = threading.Thread(target=spam)
    t.start()
    try:
        got = []
        for i in range(20):
            with store.transaction() as s:
                got.append(store.append(s, "test.event", {"i": i}))
    finally:
        stop.set()
        t.join()
    assert [a.index for a in got] == list(range(20))
    for a in got:
        assert store_leaf(store, a.index) == a.leaf_hash
    assert verify_ledger(store, store.signer.verifier_key).ok


def test_postgres_link_refuses_an_entry_that_is_not_the_events(postgres_url, tmp_path):
    """Defence in depth: an index is written into an order's ``ledger_index`` only if the
    entry at that index holds the event's own leaf hash."""
    import exchange.models  # noqa: F401 - registers the exchange_orders table
    from exchange.errors import LedgerCorrupt

    store = _store(postgres_url, tmp_path)
    _fill(store, 2)
    ref = ("exchange_orders", "no-such-order")  # the refusal comes before the row
    with pytest.raises(LedgerCorrupt, match="entry 1 does not hold the leaf"):
        store._link(ref, 1, leaf_hash(b"not the entry at 1"))
    store._link(ref, 1, store_leaf(store, 1))  # its own leaf: no refusal


def test_postgres_standalone_appends_queue_in_one_session_and_survive_its_loss(
    postgres_url, tmp_path
):
    """Standalone appends of a process that is not the sequencer are queued by one
    autocommitted INSERT on the process's own enqueue session (threads share it); they
    are acknowledged only after another session's batch integrates them; a killed enqueue
    session is replaced at the next append (no error, nothing lost); each receipt is the
    event's own entry, read from the database."""
    import threading
    import time

    from exchange.ledger.sequencer import SEQUENCER_LOCK

    store = _store(postgres_url, tmp_path)
    _fill(store, 2)
    got: dict[int, object] = {}

    def append(i: int) -> None:
        got[i] = store.append_event("standalone", {"i": i})

    def wait_queued(n: int) -> None:
        for _ in range(400):
            if store.pending() == n:
                return
            time.sleep(0.025)
        raise AssertionError(f"{store.pending()} queued, expected {n}")

    with store.engine.connect() as holder:  # another process is the sequencer, paused
        for _ in range(400):  # once the filling agent has resigned
            if holder.execute(
                text("SELECT pg_try_advisory_lock(:k)"), {"k": SEQUENCER_LOCK}
            ).scalar():
                break
            holder.commit()
            time.sleep(0.025)
        else:
            raise AssertionError("the filling agent did not resign")
        holder.commit()
        ts = [threading.Thread(target=append, args=(i,)) for i in range(6)]
        for t in ts:
            t.start()
        wait_queued(6)  # queued and committed, not acknowledged: no one integrates
        assert got == {}
        with store.engine.connect() as c:
            sessions = (
                c.execute(
                    text(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                        "AND application_name = 'nsdx ledger enqueue'"
                    )
                )
                .scalars()
                .all()
            )
            assert len(sessions) == 1  # six threads, one enqueue session
            c.execute(text("SELECT pg_terminate_backend(:p)"), {"p": sessions[0]})
            c.commit()
        late = threading.Thread(target=append, args=(6,))
        late.start()
        wait_queued(7)  # a new enqueue session, the event queued all the same
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": SEQUENCER_LOCK})
        holder.commit()
        for t in [*ts, late]:
            t.join(60)
    assert sorted(got) == list(range(7)) and store.pending() == 0
    assert sorted(a.index for a in got.values()) == list(range(2, 9))  # dense, once each
    for a in got.values():
        assert store_leaf(store, a.index) == a.leaf_hash
        assert a.checkpoint is not None and a.checkpoint.tree_size > a.index
    assert verify_ledger(store, store.signer.verifier_key).ok


def test_failpoint_armed_only_when_named(monkeypatch):
    from ingest import failpoints

    monkeypatch.delenv(failpoints.TRACE_ENV, raising=False)
    monkeypatch.delenv(failpoints.ENV, raising=False)
    assert not failpoints.armed("ledger.written")
    monkeypatch.setenv(failpoints.ENV, "ledger.append=stop@3")
    assert not failpoints.armed("ledger.written") and failpoints.armed("ledger.append")
    monkeypatch.setenv(failpoints.ENV, "ledger.written=kill")
    assert failpoints.armed("ledger.written")
