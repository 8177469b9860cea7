"""The portal's verification resumes from the last one it made in this process (only the
entries added since are hashed), and is never weaker for it: rows of the verified prefix
changed afterwards — a payload, a payload with its leaf hash, a stored leaf hash alone, a
removed row — are found as a full verification finds them."""

from __future__ import annotations

import hashlib
import os

import pytest
from sqlalchemy import text

from exchange.ledger import verify as V
from exchange.ledger.verify import change_token, verify_ledger, verify_with_state
from tests.test_ledger_store import _store


@pytest.fixture
def store(database_url, tmp_path, monkeypatch):
    monkeypatch.setattr(V, "_DIGEST_CHUNK", 256)  # several chunks, the last one partial
    s = _store(database_url, tmp_path)
    add(s, 700)
    return s


def forger(c, store) -> None:
    """On PostgreSQL the table is append-only: a forger with the owner's rights disables it."""
    if store.engine.dialect.name == "postgresql":
        c.execute(text("ALTER TABLE ledger_entries DISABLE TRIGGER USER"))


def add(store, k: int, start: int = 0) -> None:
    with store.transaction() as s:
        store.append_many(s, [("t", {"i": start + i}) for i in range(k)])


def resumed_from(monkeypatch) -> list:
    """Records the ``resume`` state each verification starts from (None: from entry 0)."""
    seen: list = []
    real = V.verify_ledger

    def spy(*a, **kw):
        seen.append(kw.get("resume"))
        return real(*a, **kw)

    monkeypatch.setattr(V, "verify_ledger", spy)
    return seen


def same_as_full(res, store) -> None:
    full = verify_ledger(store, store.signer.verifier_key)
    got = {k: v for k, v in res.to_dict().items() if k != "seconds"}
    want = {k: v for k, v in full.to_dict().items() if k != "seconds"}
    assert got == want


def test_a_second_verification_hashes_only_the_new_entries(store, tmp_path, monkeypatch):
    key = store.signer.verifier_key
    state = tmp_path / "state.txt"
    seen = resumed_from(monkeypatch)
    first = verify_with_state(store, key, state=state, remember=True)
    assert first.ok and first.entries == 700 and seen == [None]
    same_as_full(first, store)
    again = verify_with_state(store, key, state=state, remember=True)  # nothing committed
    assert again.ok and seen[-1] is not None and seen[-1].entries == 700
    add(store, 300, 700)  # a checkpoint at 1000, inside a tile block
    add(store, 5, 1000)
    third = verify_with_state(store, key, state=state, remember=True)
    assert third.ok and third.entries == 1005 and third.checkpoints_checked == 3
    assert seen[-1] is not None and seen[-1].entries == 700  # resumed: 305 entries hashed
    same_as_full(third, store)  # the same root, tiles and checkpoints as from entry 0
    # a kept checkpoint of a size inside the prefix is checked too (from entry 0 if needed)
    kept = store.get_checkpoint(700).note
    assert verify_with_state(store, key, kept=[kept], state=state, remember=True).ok


@pytest.mark.parametrize("edit", ["payload", "payload and leaf hash", "leaf hash", "removed"])
def test_the_verified_prefix_edited_afterwards_is_caught(store, tmp_path, edit):
    key = store.signer.verifier_key
    assert verify_with_state(store, key, remember=True).ok
    token = change_token(store)
    add(store, 40, 700)  # new entries too: the next verification would resume
    with store.engine.begin() as c:
        forger(c, store)
        p = c.scalar(text("SELECT payload FROM ledger_entries WHERE idx = 10"))
        forged = p.replace('"i":10', '"i":99')
        h = hashlib.sha256(b"\x00" + forged.encode()).digest()
        if edit == "removed":
            c.execute(text("DELETE FROM ledger_entries WHERE idx = 10"))
        if edit.startswith("payload"):
            c.execute(text("UPDATE ledger_entries SET payload = :p WHERE idx = 10"), {"p": forged})
        if edit.endswith("leaf hash"):
            c.execute(text("UPDATE ledger_entries SET leaf_hash = :h WHERE idx = 10"), {"h": h})
    assert change_token(store) != token
    res = verify_with_state(store, key, remember=True)
    assert not res.ok
    same_as_full(res, store)  # what a verification from entry 0 reports, no less
    if edit != "payload and leaf hash":
        assert res.first_bad_index == 10
    else:
        assert res.problems[0].kind == "root" and res.problems[0].range == (0, 700)
    assert not verify_with_state(store, key, remember=True).ok  # and again: nothing kept


def test_the_change_token_moves_with_any_commit(store):
    t = change_token(store)
    assert t is not None and change_token(store) == t
    with store.engine.begin() as c:
        forger(c, store)
        c.execute(text("UPDATE ledger_entries SET kind = kind WHERE idx = 3"))
    assert change_token(store) != t


def test_the_change_token_moves_with_an_edit_around_sqlite(store):
    """Bytes of the database file changed in place (not through SQLite) leave SQLite's
    data_version as it was; the file's time and size are in the token, so the portal's
    next verification reads the rows again (review finding 6)."""
    if store.engine.dialect.name != "sqlite":
        pytest.skip("a file edited around the database: SQLite only")
    with store.engine.begin() as c:  # everything in the main file, the log emptied
        c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    path = store.engine.url.database
    t = change_token(store)
    data = open(path, "rb").read()
    at = data.index(b'"i":10')
    with open(path, "r+b") as f:  # the same length: the forger keeps the file's size
        f.seek(at)
        f.write(b'"i":99')
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000))  # a coarse clock moves too
    assert change_token(store) != t


def test_the_digest_is_not_fooled_by_moving_a_separator(store):
    """The rows' digest concatenates payloads with newlines (a canonical payload holds none):
    entry 10 forged to hold entry 11's text after a newline, and entry 11's payload made
    NULL (by a forger who drops the NOT NULL first), gives the same concatenation; the
    count of non-null payloads tells them apart."""
    if store.engine.dialect.name == "postgresql":
        pytest.skip("PostgreSQL's payload column is json: two JSON values in one are refused")
    before = V.rows_digest(store, 700)
    with store.engine.begin() as c:
        # SQLite: the table rebuilt without the constraint
        c.execute(text("CREATE TABLE le2 (idx BIGINT PRIMARY KEY, kind VARCHAR(50), "
                       "payload TEXT, leaf_hash BLOB, created DATETIME, queue_id BIGINT)"))  # fmt: skip
        c.execute(text("INSERT INTO le2 SELECT idx, kind, payload, leaf_hash, created, "
                       "queue_id FROM ledger_entries"))  # fmt: skip
        c.execute(text("DROP TABLE ledger_entries"))
        c.execute(text("ALTER TABLE le2 RENAME TO ledger_entries"))
        p10, p11 = (c.scalar(text(f"SELECT payload FROM ledger_entries WHERE idx = {i}"))
                    for i in (10, 11))  # fmt: skip
        c.execute(text("UPDATE ledger_entries SET payload = NULL WHERE idx = 11"))
        c.execute(
            text("UPDATE ledger_entries SET payload = :p WHERE idx = 10"), {"p": p10 + "\n" + p11}
        )
    assert V.rows_digest(store, 700) != before
