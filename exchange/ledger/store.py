"""The exchange ledger in the catalogue database: append, checkpoint, prove.

Tables (see :mod:`exchange.models` and migrations 0003/0004): ``ledger_entries`` (dense
``idx`` from 0, canonical JSON ``payload``, its RFC 6962 ``leaf_hash``),
``ledger_checkpoints`` (signed C2SP checkpoints), ``ledger_head`` (one row: the tree size
and its compact range, and the ledger lock), ``ledger_queue`` (events committed but not
yet given an index) and ``ledger_tiles`` (perfect-subtree hashes at levels 8, 16, ...).

**Sequencing.** Only the holder of the ledger lock — ``SELECT ... FOR UPDATE`` on the
head row on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite — gives out indices, and it holds
the lock until its transaction commits, so indices are dense and never reused: no gap,
no duplicate, no fork, whatever number of processes append at once.

On PostgreSQL an appender does not wait for that lock inside its own transaction:

* it *tries* the lock (``FOR UPDATE SKIP LOCKED``); if it gets it, it first moves every
  queued event into the tree, then its own, moves the head, writes the completed tiles
  and signs **one** checkpoint for the batch — all in its transaction;
* if another appender holds the lock, it inserts its event into ``ledger_queue`` instead
  (still in its own transaction, atomically with the trade change it records) and
  commits without waiting for anyone. Many such commits share one WAL flush (PostgreSQL's
  group commit), which is impossible while every commit waits for the previous one.

After its commit the appender *settles* its event: if a lock holder has already
integrated it, done; otherwise it takes the lock itself (blocking) and integrates every
queued event as one batch — one transaction, one WAL flush and one signature for the
whole batch. A receipt (index, checkpoint, inclusion proof) is only built from a settled
event, i.e. after the transaction that gave it its index has committed.

SQLite has one writer at a time anyway (``BEGIN IMMEDIATE``); WAL mode with
``synchronous=NORMAL`` commits without an fsync, so every append there is direct.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from ..errors import CheckpointNotFound, InvalidRequest
from ..models import LedgerCheckpoint, LedgerEntry, LedgerHead
from .canonical import canonical_json
from .merkle import (
    HASH_SIZE,
    CompactRange,
    MerkleTree,
    ProofError,
    _fold,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)

HEAD_ID = 1
#: Tiles are stored every TILE_HEIGHT levels: a proof reads at most 2**(TILE_HEIGHT-1)
#: hashes per node it needs.
TILE_HEIGHT = 8
#: At most this many queued events are moved per statement (a batch may take several).
DRAIN_LIMIT = 5000

# Tables of migration 0004 (Core only: the ORM models belong to exchange.models).
_meta = MetaData()
entries_t = Table(
    "ledger_entries",
    _meta,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(50)),
    Column("payload", Text),
    Column("leaf_hash", LargeBinary(32)),
    Column("created", DateTime),
    Column("queue_id", BigInteger),
)
queue_t = Table(
    "ledger_queue",
    _meta,
    Column("id", BigInteger, primary_key=True),
    Column("kind", String(50)),
    Column("payload", Text),
    Column("leaf_hash", LargeBinary(32)),
    Column("created", DateTime),
)
tiles_t = Table(
    "ledger_tiles",
    _meta,
    Column("level", Integer, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32)),
)

_TRY_LOCK_PG = text(
    "WITH l AS (SELECT id, size, frontier FROM ledger_head WHERE id = :id "
    "FOR UPDATE SKIP LOCKED) "
    "SELECT h.size, l.size, l.frontier FROM ledger_head h LEFT JOIN l ON l.id = h.id "
    "WHERE h.id = :id"
)

# SQLite: appenders of one process queue on a mutex instead of SQLite's busy handler
# (which sleeps up to 100 ms between tries).
_sqlite_locks: dict[str, threading.RLock] = {}
_sqlite_locks_guard = threading.Lock()


def b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _split(frontier: bytes) -> list[bytes]:
    return [frontier[i : i + HASH_SIZE] for i in range(0, len(frontier), HASH_SIZE)]


@dataclass(frozen=True)
class Checkpoint:
    tree_size: int
    root: bytes
    note: str

    def to_dict(self) -> dict:
        return {"tree_size": self.tree_size, "root": b64(self.root), "note": self.note}


@dataclass
class Appended:
    """One appended event. ``index`` and ``checkpoint`` (the signed checkpoint of the
    batch that integrated it) are ``None`` while the event waits in the queue;
    :meth:`LedgerStore.settle` fills them after the appending transaction committed
    (``LedgerStore.transaction()`` does it on exit)."""

    index: int | None
    leaf_hash: bytes
    payload: bytes
    checkpoint: Checkpoint | None = None
    queue_id: int | None = None
    hint: int = 0  # a lower bound of the index (the head size when it was queued)
    ref: tuple[str, str] | None = field(default=None, repr=False)  # (table, id) to link

    @property
    def settled(self) -> bool:
        return self.index is not None


class LedgerStore:
    """Append-only Merkle log over one SQLAlchemy engine. ``signer`` signs checkpoints
    (see :mod:`exchange.ledger.keys`). Thread-safe: share one per engine."""

    def __init__(self, engine: Engine, signer=None) -> None:
        self.engine = engine
        self.signer = signer
        self.dialect = engine.dialect.name
        self._mutex: threading.RLock | None = None
        if self.dialect == "sqlite":
            key = engine.url.render_as_string()
            with _sqlite_locks_guard:
                self._mutex = _sqlite_locks.setdefault(key, threading.RLock())

    # -- locking ---------------------------------------------------------------------
    def lock(self, s: Session) -> tuple[int, CompactRange]:
        """Take the ledger lock for the rest of ``s``'s transaction (waiting for it);
        return the head.

        On SQLite call it before anything else in the transaction (``BEGIN IMMEDIATE``
        must open it). On PostgreSQL never call it in a transaction that already changed
        rows an integrating lock holder may write (``ledger_index`` columns): the holder
        could wait for you while you wait for it. :meth:`append` never waits."""
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

    def _try_lock(self, s: Session) -> tuple[int, tuple[int, CompactRange] | None]:
        """(committed head size, the head if we now hold the lock else None)."""
        if self.dialect == "sqlite":
            size, cr = self.lock(s)
            return size, (size, cr)
        row = s.execute(_TRY_LOCK_PG, {"id": HEAD_ID}).one_or_none()
        if row is None:
            size, cr = self.lock(s)
            return size, (size, cr)
        seen, size, frontier = row
        if size is None:
            return seen, None
        return size, (size, CompactRange(size, _split(bytes(frontier))))

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session for a change plus the ledger events that record it; commits on
        success, then settles the events (waits until each has its index and a signed
        checkpoint). On SQLite the transaction holds the ledger lock from the start."""
        mutex = self._mutex
        if mutex is not None:
            mutex.acquire()
        try:
            with Session(self.engine, expire_on_commit=False) as s:
                if self.dialect == "sqlite":
                    self.lock(s)
                try:
                    yield s
                    s.commit()
                except BaseException:
                    s.rollback()
                    raise
                pending = s.info.pop("nsdx_ledger_pending", [])
        finally:
            if mutex is not None:
                mutex.release()
        for a in pending:
            self.settle(a)

    # -- appending -------------------------------------------------------------------
    def append(self, s: Session, kind: str, data: dict[str, Any], *, ref=None) -> Appended:
        """Append one event inside ``s``'s transaction (never waits for the lock).

        ``ref``: an ORM row with a ``ledger_index`` column (an order, a payment, ...) to
        receive the event's index — at once if the index is given in this transaction,
        else when the event is settled (a short transaction of its own, after the commit:
        an integrating lock holder never waits for a row lock a trade may hold)."""
        return self.append_many(s, [(kind, data)], ref=ref)[0]

    def append_many(
        self, s: Session, events: list[tuple[str, dict[str, Any]]], *, ref=None
    ) -> list[Appended]:
        prepared = []
        for kind, data in events:
            payload = canonical_json({"type": kind, "at": data.get("at") or now_iso(), **data})
            prepared.append((kind, payload, leaf_hash(payload)))
        seen, locked = self._try_lock(s)
        if locked is None:
            out = self._enqueue(s, prepared, seen, ref)
            s.info.setdefault("nsdx_ledger_pending", []).extend(out)
            return out
        size0, cr = locked
        size, cr = self._drain(s, size0, cr)
        rows, out, now = [], [], _utcnow()
        for kind, payload, lh in prepared:
            idx = size + len(rows)
            rows.append(
                {
                    "idx": idx,
                    "kind": kind,
                    "payload": payload.decode(),
                    "leaf_hash": lh,
                    "created": now,
                    "queue_id": None,
                }
            )
            out.append(Appended(idx, lh, payload))
            cr.append(lh)
        s.execute(insert(entries_t), rows)
        cp = self._finish(s, size0, cr)
        for a in out:
            a.checkpoint = cp
        if ref is not None and out:
            ref.ledger_index = out[0].index
        return out

    def _enqueue(self, s: Session, prepared, hint: int, ref) -> list[Appended]:
        back = None
        if ref is not None:
            if getattr(ref, "id", None) is None:
                s.flush()
            back = (ref.__table__.name, ref.id)
        out, now = [], _utcnow()
        for i, (kind, payload, lh) in enumerate(prepared):
            qid = s.execute(
                insert(queue_t)
                .values(
                    kind=kind,
                    payload=payload.decode(),
                    leaf_hash=lh,
                    created=now,
                )
                .returning(queue_t.c.id)
            ).scalar_one()
            out.append(
                Appended(None, lh, payload, queue_id=qid, hint=hint, ref=back if i == 0 else None)
            )
        return out

    def _drain(self, s: Session, size: int, cr: CompactRange) -> tuple[int, CompactRange]:
        """Move every committed queued event into the tree (caller holds the lock)."""
        if self.dialect == "sqlite":
            return size, cr  # SQLite appends directly; nothing is ever queued
        while True:
            ids = select(queue_t.c.id).order_by(queue_t.c.id).limit(DRAIN_LIMIT)
            got = s.execute(
                delete(queue_t)
                .where(queue_t.c.id.in_(ids.scalar_subquery()))
                .returning(
                    queue_t.c.id,
                    queue_t.c.kind,
                    queue_t.c.payload,
                    queue_t.c.leaf_hash,
                    queue_t.c.created,
                )
            ).all()
            if not got:
                return size, cr
            got.sort(key=lambda r: r[0])
            rows = []
            for qid, kind, payload, lh, created in got:
                lh = bytes(lh)
                rows.append(
                    {
                        "idx": size,
                        "kind": kind,
                        "payload": payload,
                        "leaf_hash": lh,
                        "created": created,
                        "queue_id": qid,
                    }
                )
                cr.append(lh)
                size += 1
            s.execute(insert(entries_t), rows)
            if len(got) < DRAIN_LIMIT:
                return size, cr

    def _finish(self, s: Session, size0: int, cr: CompactRange) -> Checkpoint | None:
        """Move the head from ``size0`` to ``cr``, store the completed tiles, sign."""
        size = cr.size
        s.execute(
            update(LedgerHead)
            .where(LedgerHead.id == HEAD_ID)
            .values(size=size, frontier=b"".join(cr.hashes))
        )
        self._extend_tiles(s, size0, size)
        if self.signer is None:
            return None
        root = cr.root()
        note = self.signer.sign_checkpoint(size, root)
        s.execute(insert(LedgerCheckpoint).values(tree_size=size, root=root, note=note))
        return Checkpoint(size, root, note)

    def _extend_tiles(self, s: Session, old: int, new: int) -> None:
        level = 0
        while True:
            above = level + TILE_HEIGHT
            lo, hi = old >> above, new >> above  # nodes above completed by this batch
            if hi <= lo:
                return
            packed = self._read_level(s, level, lo << TILE_HEIGHT, hi << TILE_HEIGHT)
            folded = _fold(packed, TILE_HEIGHT)
            s.execute(
                insert(tiles_t),
                [
                    {"level": above, "idx": lo + k, "hash": folded[k * 32 : (k + 1) * 32]}
                    for k in range(hi - lo)
                ],
            )
            level = above

    def _read_level(self, conn, level: int, lo: int, hi: int) -> bytes:
        """Packed hashes of the stored nodes at ``level`` (0 = leaves, else a multiple
        of TILE_HEIGHT) with indices [lo, hi); computed from below where tiles are
        missing."""
        if level == 0:
            rows = conn.execute(
                select(entries_t.c.leaf_hash)
                .where(entries_t.c.idx >= lo, entries_t.c.idx < hi)
                .order_by(entries_t.c.idx)
            ).scalars()
        else:
            rows = conn.execute(
                select(tiles_t.c.hash)
                .where(tiles_t.c.level == level, tiles_t.c.idx >= lo, tiles_t.c.idx < hi)
                .order_by(tiles_t.c.idx)
            ).scalars()
        packed = b"".join(bytes(r) for r in rows)
        if len(packed) == (hi - lo) * HASH_SIZE:
            return packed
        if level == 0:
            raise InvalidRequest(
                f"the ledger has a gap in [{lo}, {hi})", hint="run `nsdx audit verify`"
            )
        below = self._read_level(
            conn, level - TILE_HEIGHT, lo << TILE_HEIGHT, hi << TILE_HEIGHT
        )  # tiles missing (e.g. not written yet by an older version): recompute
        return _fold(below, TILE_HEIGHT)

    def append_event(self, kind: str, data: dict[str, Any]) -> Appended:
        """Append one event in its own transaction; returns it settled."""
        with self.transaction() as s:
            a = self.append(s, kind, data)
        return a

    # -- settling --------------------------------------------------------------------
    def settle(self, a: Appended) -> Appended:
        """Wait until ``a`` (appended by a committed transaction) has its index and a
        signed checkpoint covering it; fill them in and return ``a``."""
        if a.index is None:
            idx = self._find(a)
            if idx is None:
                self.integrate()
                idx = self._find(a)
                if idx is None:
                    raise InvalidRequest(
                        f"queued ledger event {a.queue_id} was not found after integration",
                        hint="was its transaction committed? run `nsdx audit verify`",
                    )
            a.index = idx
            if a.ref is not None:
                self._link(a.ref, idx)
        if a.checkpoint is None and self.signer is not None:
            with Session(self.engine) as s:
                row = s.scalars(
                    select(LedgerCheckpoint)
                    .where(LedgerCheckpoint.tree_size > a.index)
                    .order_by(LedgerCheckpoint.tree_size)
                    .limit(1)
                ).first()
                if row is not None:
                    a.checkpoint = Checkpoint(row.tree_size, bytes(row.root), row.note)
            if a.checkpoint is None:
                a.checkpoint = self.checkpoint()
        return a

    def _link(self, ref: tuple[str, str], idx: int) -> None:
        table = LedgerEntry.metadata.tables.get(ref[0])
        if table is None or "ledger_index" not in table.c:
            return
        with self.engine.begin() as conn:
            conn.execute(update(table).where(table.c.id == ref[1]).values(ledger_index=idx))

    def _find(self, a: Appended) -> int | None:
        with self.engine.connect() as conn:
            return conn.execute(
                select(entries_t.c.idx).where(
                    entries_t.c.idx >= a.hint, entries_t.c.queue_id == a.queue_id
                )
            ).scalar()

    def integrate(self) -> int:
        """Take the lock (waiting for it), move every queued event into the tree as one
        batch with one signed checkpoint, commit. Returns how many were moved."""
        if self.dialect == "sqlite":
            return 0
        with Session(self.engine) as s:
            size0, cr = self.lock(s)
            size, cr = self._drain(s, size0, cr)
            if size == size0:
                s.rollback()  # nothing to do: release the lock without a WAL flush
                return 0
            self._finish(s, size0, cr)
            s.commit()
            return size - size0

    def pending(self) -> int:
        """Events committed but not yet integrated (normally 0 or in flight)."""
        with self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(queue_t)).scalar() or 0

    # -- checkpoints -----------------------------------------------------------------
    def checkpoint(self, s: Session | None = None) -> Checkpoint:
        """Integrate queued events, sign the head (if it is not signed yet) and return
        the checkpoint. With ``s``, waits for the lock inside that transaction."""
        if s is None:
            with self.transaction() as s2:
                return self.checkpoint(s2)
        if self.signer is None:
            raise InvalidRequest("no ledger signing key configured")
        size0, cr = self.lock(s)
        size, cr = self._drain(s, size0, cr)
        if size == size0:
            existing = s.get(LedgerCheckpoint, size)
            if existing is not None:
                return Checkpoint(existing.tree_size, bytes(existing.root), existing.note)
        cp = self._finish(s, size0, cr)
        assert cp is not None
        return cp

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
        with self.engine.connect() as conn:
            return [
                Checkpoint(r[0], bytes(r[1]), r[2])
                for r in conn.execute(
                    select(
                        LedgerCheckpoint.tree_size, LedgerCheckpoint.root, LedgerCheckpoint.note
                    ).order_by(LedgerCheckpoint.tree_size)
                )
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

    def tiles(self, level: int) -> list[tuple[int, bytes]]:
        """The stored subtree hashes at ``level`` (a multiple of TILE_HEIGHT), in order."""
        with self.engine.connect() as conn:
            return [
                (i, bytes(h))
                for i, h in conn.execute(
                    select(tiles_t.c.idx, tiles_t.c.hash)
                    .where(tiles_t.c.level == level)
                    .order_by(tiles_t.c.idx)
                )
            ]

    def tree(self, size: int) -> MerkleTree:
        """A Merkle tree over the stored leaf hashes [0, size) (reads every leaf; proofs
        use :meth:`node_reader` instead)."""
        tree = MerkleTree()
        with self.engine.connect() as conn:
            lo = 0
            while lo < size:
                hi = min(size, lo + 100_000)
                tree.extend_packed(self._read_level(conn, 0, lo, hi))
                lo = hi
        return tree

    def node_reader(self, conn):
        """``node(level, index)`` over the stored tiles and leaf hashes: a node at level
        L reads at most 2**(L mod TILE_HEIGHT) stored hashes, so a proof at any size
        costs O(log n) small range reads."""
        cache: dict[tuple[int, int], bytes] = {}

        def node(level: int, index: int) -> bytes:
            key = (level, index)
            if key not in cache:
                base = level - level % TILE_HEIGHT
                r = level - base
                packed = self._read_level(conn, base, index << r, (index + 1) << r)
                cache[key] = _fold(packed, r)
            return cache[key]

        return node

    # -- proofs ----------------------------------------------------------------------
    def inclusion(self, index: int, tree_size: int | None = None) -> dict:
        """Inclusion proof of entry ``index`` against a signed checkpoint (default: the
        latest; signs the current head first if it is not covered yet). The proof is
        checked against the checkpoint's root before it is returned."""
        cp = self._covering_checkpoint(index + 1, tree_size)
        if not 0 <= index < cp.tree_size:
            raise InvalidRequest(
                f"index {index} is outside the tree of size {cp.tree_size}",
                hint="indices start at 0",
                index=index,
            )
        with self.engine.connect() as conn:
            node = self.node_reader(conn)
            leaf = node(0, index)
            proof = inclusion_proof(index, cp.tree_size, node)
            try:
                verify_inclusion(index, cp.tree_size, leaf, proof, cp.root)
            except ProofError:  # stored tiles disagree: prove from the leaves alone
                proof = self.tree(cp.tree_size).inclusion_proof(index, cp.tree_size)
                self._check(verify_inclusion, index, cp.tree_size, leaf, proof, cp.root)
        return {
            "index": index,
            "tree_size": cp.tree_size,
            "leaf_hash": b64(leaf),
            "proof": [b64(p) for p in proof],
            "root": b64(cp.root),
            "checkpoint": cp.note,
        }

    @staticmethod
    def _check(fn, *args) -> None:
        try:
            fn(*args)
        except ProofError as e:
            raise InvalidRequest(
                f"the stored ledger does not match its signed checkpoint: {e}",
                hint="run `nsdx audit verify`",
            ) from None

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
        args = (cp1.tree_size, cp2.tree_size)
        with self.engine.connect() as conn:
            proof = consistency_proof(*args, self.node_reader(conn))
        try:
            verify_consistency(*args, proof, cp1.root, cp2.root)
        except ProofError:  # stored tiles disagree: prove from the leaves alone
            proof = self.tree(cp2.tree_size).consistency_proof(*args)
            self._check(verify_consistency, *args, proof, cp1.root, cp2.root)
        return {
            "size1": cp1.tree_size,
            "size2": cp2.tree_size,
            "root1": b64(cp1.root),
            "root2": b64(cp2.root),
            "proof": [b64(p) for p in proof],
            "checkpoint1": cp1.note,
            "checkpoint2": cp2.note,
        }
