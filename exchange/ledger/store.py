"""The exchange ledger in the catalogue database: append, checkpoint, prove.

Tables (see :mod:`exchange.models`): ``ledger_entries`` (dense ``idx`` from 0, canonical
JSON ``payload``, its RFC 6962 ``leaf_hash``), ``ledger_checkpoints`` (signed C2SP
checkpoints) and ``ledger_head`` (one row: the tree size and its compact range).

Appends never produce a gap, a duplicate index or a fork, whatever number of processes
append at once: every append runs inside a transaction that first takes the ledger lock —
``SELECT ... FOR UPDATE`` on the head row on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite —
reads the size, inserts the entry at that index (the primary key refuses a duplicate) and
moves the head, all in the same transaction as the trade change it records.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.orm import Session

from ..errors import CheckpointNotFound, InvalidRequest
from ..models import LedgerCheckpoint, LedgerEntry, LedgerHead
from .canonical import canonical_json
from .merkle import HASH_SIZE, CompactRange, MerkleTree, leaf_hash

HEAD_ID = 1


def b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _split(frontier: bytes) -> list[bytes]:
    return [frontier[i : i + HASH_SIZE] for i in range(0, len(frontier), HASH_SIZE)]


@dataclass(frozen=True)
class Appended:
    index: int
    leaf_hash: bytes
    payload: bytes


@dataclass(frozen=True)
class Checkpoint:
    tree_size: int
    root: bytes
    note: str

    def to_dict(self) -> dict:
        return {"tree_size": self.tree_size, "root": b64(self.root), "note": self.note}


class LedgerStore:
    """Append-only Merkle log over one SQLAlchemy engine. ``signer`` signs checkpoints
    (see :mod:`exchange.ledger.keys`)."""

    def __init__(self, engine: Engine, signer=None) -> None:
        self.engine = engine
        self.signer = signer
        self.dialect = engine.dialect.name

    # -- locking ---------------------------------------------------------------------
    def lock(self, s: Session) -> tuple[int, CompactRange]:
        """Take the append lock for the rest of ``s``'s transaction; return the head.

        Call it before anything else in the transaction: on SQLite the lock is
        ``BEGIN IMMEDIATE``, which must open the transaction."""
        if self.dialect == "sqlite":
            conn = s.connection()
            raw = conn.connection.driver_connection
            if not raw.in_transaction:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            row = s.execute(
                select(LedgerHead.size, LedgerHead.frontier).where(LedgerHead.id == HEAD_ID)
            ).one_or_none()
        else:
            row = s.execute(
                select(LedgerHead.size, LedgerHead.frontier)
                .where(LedgerHead.id == HEAD_ID)
                .with_for_update()
            ).one_or_none()
        if row is None:  # created by the migration; recreated if someone removed it
            s.execute(insert(LedgerHead).values(id=HEAD_ID, size=0, frontier=b""))
            return self.lock(s)
        size, frontier = row
        return size, CompactRange(size, _split(bytes(frontier)))

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose transaction holds the append lock; commits on success."""
        with Session(self.engine, expire_on_commit=False) as s:
            self.lock(s)
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    # -- appending -------------------------------------------------------------------
    def append(self, s: Session, kind: str, data: dict[str, Any]) -> Appended:
        """Append one event inside ``s``'s transaction (which must hold the lock)."""
        return self.append_many(s, [(kind, data)])[0]

    def append_many(self, s: Session, events: list[tuple[str, dict[str, Any]]]) -> list[Appended]:
        size, cr = self.lock(s)
        rows, out = [], []
        for kind, data in events:
            payload = canonical_json({"type": kind, "at": data.get("at") or now_iso(), **data})
            lh = leaf_hash(payload)
            rows.append(
                {
                    "idx": size,
                    "kind": kind,
                    "payload": payload.decode(),
                    "leaf_hash": lh,
                    "created": datetime.now(UTC).replace(tzinfo=None),
                }
            )
            out.append(Appended(size, lh, payload))
            cr.append(lh)
            size += 1
        s.execute(insert(LedgerEntry), rows)
        s.execute(
            update(LedgerHead)
            .where(LedgerHead.id == HEAD_ID)
            .values(size=size, frontier=b"".join(cr.hashes))
        )
        return out

    def append_event(self, kind: str, data: dict[str, Any]) -> Appended:
        with self.transaction() as s:
            return self.append(s, kind, data)

    # -- checkpoints -----------------------------------------------------------------
    def checkpoint(self, s: Session | None = None) -> Checkpoint:
        """Sign the current head (if it is not signed yet) and return the checkpoint."""
        if s is None:
            with self.transaction() as s2:
                return self.checkpoint(s2)
        if self.signer is None:
            raise InvalidRequest("no ledger signing key configured")
        size, cr = self.lock(s)
        existing = s.get(LedgerCheckpoint, size)
        if existing is not None:
            return Checkpoint(existing.tree_size, bytes(existing.root), existing.note)
        root = cr.root()
        note = self.signer.sign_checkpoint(size, root)
        s.execute(insert(LedgerCheckpoint).values(tree_size=size, root=root, note=note))
        return Checkpoint(size, root, note)

    def latest_checkpoint(self) -> Checkpoint | None:
        with Session(self.engine) as s:
            row = s.scalars(
                select(LedgerCheckpoint).order_by(LedgerCheckpoint.tree_size.desc()).limit(1)
            ).first()
            return None if row is None else Checkpoint(row.tree_size, bytes(row.root), row.note)

    def get_checkpoint(self, tree_size: int | None = None) -> Checkpoint:
        """The checkpoint of ``tree_size`` (default: the latest)."""
        if tree_size is None:
            cp = self.latest_checkpoint()
            if cp is None:
                raise CheckpointNotFound(
                    "the ledger has no signed checkpoint yet",
                    hint="record a trade, or run `nsdx audit checkpoint` to sign the current head",
                )
            return cp
        with Session(self.engine) as s:
            row = s.get(LedgerCheckpoint, tree_size)
            if row is None:
                raise CheckpointNotFound(
                    f"no signed checkpoint at tree size {tree_size}",
                    hint="`nsdx audit checkpoints` lists the signed sizes",
                    tree_size=tree_size,
                )
            return Checkpoint(row.tree_size, bytes(row.root), row.note)

    def checkpoints(self) -> list[Checkpoint]:
        with Session(self.engine) as s:
            return [
                Checkpoint(r.tree_size, bytes(r.root), r.note)
                for r in s.scalars(select(LedgerCheckpoint).order_by(LedgerCheckpoint.tree_size))
            ]

    # -- reading ---------------------------------------------------------------------
    def size(self) -> int:
        with Session(self.engine) as s:
            return s.scalar(select(func.count()).select_from(LedgerEntry)) or 0

    def head_size(self) -> int:
        with Session(self.engine) as s:
            return s.scalar(select(LedgerHead.size).where(LedgerHead.id == HEAD_ID)) or 0

    def entry(self, index: int) -> dict:
        with Session(self.engine) as s:
            row = s.get(LedgerEntry, index)
            if row is None:
                raise InvalidRequest(f"no ledger entry at index {index}", index=index)
            return {
                "index": row.idx,
                "kind": row.kind,
                "payload": json.loads(row.payload),
                "leaf_hash": b64(bytes(row.leaf_hash)),
            }

    def iter_rows(
        self, upto: int | None = None, *, start: int = 0, batch: int = 20000
    ) -> Iterator[tuple[int, str, bytes]]:
        """(idx, payload, stored leaf hash) in index order, streamed in key-range batches."""
        with self.engine.connect() as conn:
            lo = start
            while True:
                q = (
                    select(LedgerEntry.idx, LedgerEntry.payload, LedgerEntry.leaf_hash)
                    .where(LedgerEntry.idx >= lo)
                    .order_by(LedgerEntry.idx)
                    .limit(batch)
                )
                if upto is not None:
                    q = q.where(LedgerEntry.idx < upto)
                rows = conn.execute(q).all()
                if not rows:
                    return
                for r in rows:
                    yield r[0], r[1], bytes(r[2])
                lo = rows[-1][0] + 1

    def events(self, upto: int) -> list[dict]:
        """The decoded payloads of leaves [0, upto), each with its ``index``."""
        return [{**json.loads(p), "index": i} for i, p, _ in self.iter_rows(upto)]

    def tree(self, size: int) -> MerkleTree:
        """A Merkle tree over the stored leaf hashes [0, size) (for proofs)."""
        tree = MerkleTree()
        with self.engine.connect() as conn:
            lo = 0
            while lo < size:
                hi = min(size, lo + 100_000)
                hashes = conn.execute(
                    select(LedgerEntry.leaf_hash)
                    .where(LedgerEntry.idx >= lo, LedgerEntry.idx < hi)
                    .order_by(LedgerEntry.idx)
                ).scalars()
                tree.extend_packed(b"".join(bytes(h) for h in hashes))
                if len(tree) != hi:
                    raise InvalidRequest(
                        f"the ledger has a gap before index {len(tree)}",
                        hint="run `nsdx audit verify`",
                    )
                lo = hi
        return tree

    # -- proofs ----------------------------------------------------------------------
    def inclusion(self, index: int, tree_size: int | None = None) -> dict:
        """Inclusion proof of entry ``index`` against a signed checkpoint (default: the
        latest; signs the current head first if it is not covered yet)."""
        cp = self._covering_checkpoint(index + 1, tree_size)
        if not 0 <= index < cp.tree_size:
            raise InvalidRequest(
                f"index {index} is outside the tree of size {cp.tree_size}",
                hint="indices start at 0",
                index=index,
            )
        tree = self.tree(cp.tree_size)
        proof = tree.inclusion_proof(index, cp.tree_size)
        return {
            "index": index,
            "tree_size": cp.tree_size,
            "leaf_hash": b64(tree.leaf(index)),
            "proof": [b64(p) for p in proof],
            "root": b64(cp.root),
            "checkpoint": cp.note,
        }

    def _covering_checkpoint(self, need: int, tree_size: int | None) -> Checkpoint:
        if tree_size is not None:
            return self.get_checkpoint(tree_size)
        cp = self.latest_checkpoint()
        if (cp is None or cp.tree_size < need) and self.signer is not None:
            cp = self.checkpoint()
        if cp is None:
            raise CheckpointNotFound("the ledger has no signed checkpoint yet")
        return cp

    def consistency(self, size1: int, size2: int | None = None) -> dict:
        """Consistency proof between two signed checkpoints (size2 default: the latest)."""
        cp2 = self.get_checkpoint(size2)
        cp1 = self.get_checkpoint(size1)
        if cp1.tree_size > cp2.tree_size or cp1.tree_size == 0:
            raise InvalidRequest(
                f"cannot prove {size1} -> {cp2.tree_size}: need 0 < size1 <= size2",
                size1=size1,
                size2=cp2.tree_size,
            )
        tree = self.tree(cp2.tree_size)
        proof = tree.consistency_proof(cp1.tree_size, cp2.tree_size)
        return {
            "size1": cp1.tree_size,
            "size2": cp2.tree_size,
            "root1": b64(cp1.root),
            "root2": b64(cp2.root),
            "proof": [b64(p) for p in proof],
            "checkpoint1": cp1.note,
            "checkpoint2": cp2.note,
        }
