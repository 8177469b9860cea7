"""Verification appends a tile block with no checkpoint inside as one folded node: the
roots it checks, and what it catches, are the same as leaf by leaf."""

from __future__ import annotations

import base64
import hashlib

from sqlalchemy import text

from exchange.ledger.hashing import root_from_packed
from exchange.ledger.verify import verify_ledger
from tests.test_ledger_store import _store


def test_sparse_checkpoints_same_root_and_a_rehashed_edit_is_caught(tmp_path):
    store = _store(f"sqlite:///{tmp_path / 'l.db'}", tmp_path)
    for k in (700, 300, 5):  # checkpoints at 700, 1000, 1005: blocks 0-1 and 3 have none inside
        with store.transaction() as s:
            store.append_many(s, [("t", {"i": i}) for i in range(k)])
    key = store.signer.verifier_key
    res = verify_ledger(store, key)
    assert res.ok and res.entries == 1005 and res.checkpoints_checked == 3
    want = root_from_packed(b"".join(h for _, _, h in store.iter_rows()))
    assert res.root == base64.b64encode(want).decode()
    # a careful forger edits entry 10 (a block verified as one node) and its leaf hash
    with store.engine.begin() as c:
        p = c.scalar(text("SELECT payload FROM ledger_entries WHERE idx = 10"))
        forged = p.replace('"i":10', '"i":99')
        h = hashlib.sha256(b"\x00" + forged.encode()).digest()
        c.execute(
            text("UPDATE ledger_entries SET payload = :p, leaf_hash = :h WHERE idx = 10"),
            {"p": forged, "h": h},
        )
    bad = verify_ledger(store, key)
    assert not bad.ok and bad.problems[0].kind == "root" and bad.problems[0].range == (0, 700)
