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

On PostgreSQL an appender never takes that lock: it queues its event in ``ledger_queue``
(in its own transaction, atomically with the trade change it records), commits, and
waits for its receipt from the **sequencer** — the one process at a time that holds an
advisory lock and moves every queued event into the tree in batches, one transaction and
one signed checkpoint per batch. Any process can become the sequencer; when it dies
another takes over. See :mod:`exchange.ledger.sequencer`. A receipt (index, checkpoint,
inclusion proof) is only built from a settled event, i.e. after the transaction that gave
it its index has committed.

SQLite has one writer at a time anyway (``BEGIN IMMEDIATE``); WAL mode with
``synchronous=NORMAL`` commits without an fsync, so every append there is direct (the
embedded default keeps this path: one process, nothing to batch across processes).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import select as _select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
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

from ingest import failpoints

from ..errors import CheckpointNotFound, InvalidRequest, LedgerCorrupt
from ..models import (
    LedgerCheckpoint,
    LedgerCosignature,
    LedgerEntry,
    LedgerHead,
    LedgerWitnessed,
)
from .canonical import canonical_json
from .merkle import (
    HASH_SIZE,
    CompactRange,
    MerkleTree,
    ProofError,
    _fold,
    _range_hash,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from .sequencer import CHANNEL, Agent, announcement

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

_ENTRIES_CTE = (
    "WITH e AS (INSERT INTO ledger_entries (idx, kind, payload, leaf_hash, created, queue_id) "
    "SELECT * FROM unnest(CAST(:idx AS bigint[]), CAST(:kind AS varchar[]), "
    "CAST(:payload AS text[]), CAST(:lh AS bytea[]), CAST(:created AS timestamp[]), "
    "CAST(:qid AS bigint[])) RETURNING 1), "
    "t AS (INSERT INTO ledger_tiles (level, idx, hash) SELECT * FROM "
    "unnest(CAST(:tl AS integer[]), CAST(:ti AS bigint[]), CAST(:th AS bytea[])) RETURNING 1), "
    "h AS (UPDATE ledger_head SET size = :size, frontier = :frontier WHERE id = :id RETURNING 1)"
)
_CHECKPOINT_CTE = (
    ", c AS (INSERT INTO ledger_checkpoints (tree_size, root, note, created) "
    "VALUES (:size, :root, :note, :now) RETURNING 1)"
)
# the batch's announcement to waiting appenders rides in the same statement
_WRITE_PG = {
    (cp, announce): text(
        _ENTRIES_CTE
        + (_CHECKPOINT_CTE if cp else "")
        + " SELECT (SELECT count(*) FROM e)"
        + (", pg_notify(:channel, :announce)" if announce else "")
    )
    for cp in (False, True)
    for announce in (False, True)
}
_LOCK_PG = text(
    "SELECT size, frontier, EXISTS (SELECT 1 FROM ledger_queue) FROM ledger_head "
    "WHERE id = :id FOR UPDATE"
)
_ENQUEUE_PG = (
    "INSERT INTO ledger_queue (kind, payload, leaf_hash, created) "
    "SELECT u.* FROM unnest(CAST(:kind AS varchar[]), CAST(:payload AS text[]), "
    "CAST(:lh AS bytea[]), CAST(:created AS timestamp[])) AS u{lazy} "
    "RETURNING id, (SELECT size FROM ledger_head WHERE id = 1)"
)
# a standalone event's queue row need not be flushed by its own commit (see the sequencer)
_LAZY = ", (SELECT set_config('synchronous_commit', 'off', true)) AS lazy"


def _pyformat(sql: str) -> str:
    """``:name`` parameters as the driver's ``%(name)s`` (the statements below have no
    ``::`` casts and no literal ``%``): the sequencer and the standalone enqueue run them
    on the driver connection, one round trip each, without SQLAlchemy's per-call work."""
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)


#: driver-level twins of the statements above (see :func:`_pyformat`)
RAW_WRITE = {k: _pyformat(v.text) for k, v in _WRITE_PG.items()}
RAW_LOCK = "SELECT size, frontier FROM ledger_head WHERE id = %(id)s FOR UPDATE"
RAW_DRAIN = (
    "DELETE FROM ledger_queue WHERE id IN (SELECT id FROM ledger_queue ORDER BY id "
    "LIMIT %(limit)s) RETURNING id, kind, payload, leaf_hash, created"
)
# the standalone enqueue's connection has synchronous_commit off for its session
RAW_ENQUEUE = _pyformat(_ENQUEUE_PG.format(lazy=""))

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
    kind: str = field(default="", repr=False)
    error: BaseException | None = field(default=None, repr=False)
    queued_at: float = field(default=0.0, repr=False)  # monotonic time it was queued

    @property
    def settled(self) -> bool:
        return self.index is not None

    @property
    def settled_index(self) -> int:
        """The index of a settled event (:meth:`LedgerStore.settle` gives it one or raises)."""
        if self.index is None:
            raise InvalidRequest(
                f"ledger event {self.queue_id} is not settled yet",
                hint="settle() it after its transaction commits",
            )
        return self.index


class LedgerStore:
    """Append-only Merkle log over one SQLAlchemy engine. ``signer`` signs checkpoints
    (see :mod:`exchange.ledger.keys`). Thread-safe: share one per engine and process
    (its threads then wait for their receipts through one agent)."""

    def __init__(self, engine: Engine, signer=None) -> None:
        self.engine = engine
        self.signer = signer
        self.dialect = engine.dialect.name
        self._mutex: threading.RLock | None = None
        if self.dialect == "sqlite":
            key = engine.url.render_as_string()
            with _sqlite_locks_guard:
                self._mutex = _sqlite_locks.setdefault(key, threading.RLock())
        # PostgreSQL: receipts come from the sequencer (see exchange.ledger.sequencer)
        self._cond = threading.Condition()
        self._agent: Agent | None = None
        self._known_size: int | None = None  # a committed head size seen (a lower bound)
        self._signed_listeners: list[Callable[[], None]] = []
        # PostgreSQL standalone appends: one enqueue connection per process, shared by
        # its threads (see _enqueue_standalone)
        self._enq_cond = threading.Condition()
        self._enq_busy = False
        self._outbox: list[list[Any]] = []
        self._enq_fairy: Any = None
        self._enq_pid = os.getpid()

    # -- after a checkpoint is signed ---------------------------------------------------
    def on_signed(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` after each commit that signed a new checkpoint (the one hook for
        work that follows a checkpoint, e.g. witnessing: it must not block — it runs on
        the committing thread, after the commit)."""
        self._signed_listeners.append(fn)

    def off_signed(self, fn: Callable[[], None]) -> None:
        if fn in self._signed_listeners:
            self._signed_listeners.remove(fn)

    def _announce(self) -> None:
        for fn in list(self._signed_listeners):
            try:
                fn()
            except Exception:  # noqa: BLE001, S110 - a listener never fails a trade
                pass

    # -- locking ---------------------------------------------------------------------
    def lock(self, s: Session) -> tuple[int, CompactRange]:
        """Take the ledger lock for the rest of ``s``'s transaction (waiting for it);
        return the head.

        On SQLite call it before anything else in the transaction (``BEGIN IMMEDIATE``
        must open it). On PostgreSQL do not call it in a transaction that holds row
        locks others may wait for while holding the ledger lock; :meth:`append` never
        waits for it."""
        if self.dialect == "sqlite":
            conn = s.connection()
            raw = conn.connection.driver_connection  # the sqlite3 connection
            if raw is None or not raw.in_transaction:
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
        self._known_size = size
        return size, CompactRange(size, _split(bytes(frontier)))

    def _lock_pg(self, conn) -> tuple[int, CompactRange, bool]:
        """Wait for the lock (PostgreSQL); the head and whether events are queued (as of
        the statement's start: every event committed before it is seen)."""
        row = conn.execute(_LOCK_PG, {"id": HEAD_ID}).one_or_none()
        if row is None:
            return (*self.lock(conn), True)
        size, frontier, queued = row
        self._known_size = size
        return size, CompactRange(size, _split(bytes(frontier))), queued

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
                    failpoints.hit("ledger.committed")
                    if s.info.pop("nsdx_ledger_signed", False):
                        self._announce()
                except BaseException:
                    s.rollback()
                    raise
                pending = s.info.pop("nsdx_ledger_pending", [])
            if mutex is not None:
                mutex.release()
                mutex = None
            self.settle_all(pending)
        finally:
            if mutex is not None:
                mutex.release()

    # -- appending -------------------------------------------------------------------
    def append(self, s: Session, kind: str, data: dict[str, Any], *, ref=None) -> Appended:
        """Append one event inside ``s``'s transaction (never waits for the lock on
        PostgreSQL: the event is queued for the sequencer).

        ``ref``: an ORM row with a ``ledger_index`` column (an order, a payment, ...) to
        receive the event's index — at once if the index is given in this transaction
        (SQLite), else when the event is settled (a short transaction of its own, after
        the commit: the sequencer never waits for a row lock a trade may hold)."""
        return self.append_many(s, [(kind, data)], ref=ref)[0]

    def append_many(
        self, s: Session, events: list[tuple[str, dict[str, Any]]], *, ref=None
    ) -> list[Appended]:
        prepared = []
        for kind, data in events:
            payload = canonical_json({"type": kind, "at": data.get("at") or now_iso(), **data})
            prepared.append((kind, payload, leaf_hash(payload)))
        if self.dialect != "sqlite":
            out = self._enqueue(s, prepared, ref)
            s.info.setdefault("nsdx_ledger_pending", []).extend(out)
            return out
        size0, cr = self.lock(s)
        failpoints.hit("ledger.append")
        first = size0
        now = _utcnow()
        rows = [(None, kind, payload.decode(), lh, now) for kind, payload, lh in prepared]
        cp = self.write_batch(s, size0, cr, rows)
        if cp is not None:
            s.info["nsdx_ledger_signed"] = True
        failpoints.hit("ledger.written")
        out = [
            Appended(first + i, lh, payload, checkpoint=cp)
            for i, (_, payload, lh) in enumerate(prepared)
        ]
        if ref is not None and out:
            ref.ledger_index = out[0].index
        return out

    def _enqueue(self, s: Session | Connection, prepared, ref, *, lazy: bool = False):
        """Queue ``prepared`` [(kind, payload, leaf hash)] in one statement; the events,
        unsettled. ``lazy``: the row need not be flushed by this commit (the sequencer's
        commit flushes it before any receipt is given)."""
        back = None
        if ref is not None:
            if getattr(ref, "id", None) is None:
                s.flush()  # type: ignore[union-attr]
            back = (ref.__table__.name, ref.id)
        now, t = _utcnow(), time.monotonic()
        sql = _ENQUEUE_PG.format(lazy=_LAZY if lazy else "")
        got = s.execute(
            text(sql),
            {
                "kind": [k for k, _, _ in prepared],
                "payload": [p.decode() for _, p, _ in prepared],
                "lh": [h for _, _, h in prepared],
                "created": [now] * len(prepared),
            },
        ).all()
        ids = sorted(r[0] for r in got)  # a sequence numbers the rows in unnest order
        hint = got[0][1] if got and got[0][1] is not None else (self._known_size or 0)
        return [
            Appended(
                None,
                lh,
                payload,
                queue_id=q,
                hint=hint,
                ref=back if i == 0 else None,
                kind=kind,
                queued_at=t,
            )  # fmt: skip
            for i, ((kind, payload, lh), q) in enumerate(zip(prepared, ids, strict=True))
        ]

    def _drain(self, s: Session | Connection) -> list[tuple]:
        """Take every committed queued event off the queue (caller holds the lock), in
        queue order: [(queue id, kind, payload, leaf hash, created)]."""
        if self.dialect == "sqlite":
            return []  # SQLite appends directly; nothing is ever queued
        out: list[tuple] = []
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
            out += [(q, k, p, bytes(h), c) for q, k, p, h, c in got]
            if len(got) < DRAIN_LIMIT:
                out.sort(key=lambda r: r[0])
                return out

    def _sign_checkpoint(self, size: int, root: bytes) -> Checkpoint:
        """Sign the tree head (size, root): the one place a checkpoint is signed (every
        batch's by :meth:`write_batch`, the current head's by :meth:`checkpoint`). The
        caller stores it in its transaction, which holds the ledger lock."""
        assert self.signer is not None
        return Checkpoint(size, root, self.signer.sign_checkpoint(size, root))

    def write_batch(
        self, s: Session | Connection, size0: int, cr: CompactRange, rows: list[tuple]
    ) -> Checkpoint | None:
        """Give ``rows`` [(queue id, kind, payload, leaf hash, created)] the indices from
        ``size0`` on, move the head, store the tiles they complete and sign one
        checkpoint: one statement on PostgreSQL, plus the batch's announcement to the
        waiting appenders (``NOTIFY``, delivered at commit). The caller holds the lock."""
        cp, key, params = self.batch_params(size0, cr, rows)
        if self.dialect == "postgresql":
            s.execute(_WRITE_PG[key], params)
            return cp
        return self._write_batch_sqlite(s, size0, rows, cp, params)

    def batch_params(
        self, size0: int, cr: CompactRange, rows: list[tuple]
    ) -> tuple[Checkpoint | None, tuple[bool, bool], dict[str, Any]]:
        """What :meth:`write_batch` writes: the batch's signed checkpoint, the key of its
        statement in :data:`_WRITE_PG` / :data:`RAW_WRITE` and the statement's parameters
        (the leaves folded into the compact range in one loop, keeping the tile nodes)."""
        hashes = cr.hashes
        size = size0
        tiles: list[tuple[int, int, bytes]] = []
        sha = hashlib.sha256
        for row in rows:  # CompactRange.append, also keeping the tile-level nodes
            h, n, level = row[3], size, 0
            while n & 1:
                h = sha(b"\x01" + hashes.pop() + h).digest()
                n >>= 1
                level += 1
                if level % TILE_HEIGHT == 0:
                    tiles.append((level, ((size + 1) >> level) - 1, h))
            hashes.append(h)
            size += 1
        now = _utcnow()
        cp = None
        if self.signer is not None and rows:
            cp = self._sign_checkpoint(size, CompactRange(size, hashes).root())
        params: dict[str, Any] = {
            "id": HEAD_ID,
            "idx": list(range(size0, size)),
            "kind": [r[1] for r in rows],
            "payload": [r[2] for r in rows],
            "lh": [r[3] for r in rows],
            "created": [r[4] for r in rows],
            "qid": [r[0] for r in rows],
            "tl": [t[0] for t in tiles],
            "ti": [t[1] for t in tiles],
            "th": [t[2] for t in tiles],
            "size": size,
            "frontier": b"".join(hashes),
            "now": now,
        }
        if cp is not None:
            params.update(root=cp.root, note=cp.note)
        announce = bool(rows) and rows[0][0] is not None  # queued events: appenders wait
        if announce:
            params.update(channel=CHANNEL, announce=announcement(size0, [r[0] for r in rows], cp))
        return cp, (cp is not None, announce), params

    def _write_batch_sqlite(
        self, s: Session | Connection, size0: int, rows: list[tuple], cp, params
    ) -> Checkpoint | None:
        size, frontier, now = params["size"], params["frontier"], params["now"]
        tiles = list(zip(params["tl"], params["ti"], params["th"], strict=True))
        if rows:
            s.execute(
                insert(entries_t),
                [
                    {
                        "idx": size0 + i,
                        "kind": r[1],
                        "payload": r[2],
                        "leaf_hash": r[3],
                        "created": r[4],
                        "queue_id": r[0],
                    }
                    for i, r in enumerate(rows)
                ],
            )
        if tiles:
            s.execute(insert(tiles_t), [{"level": lv, "idx": i, "hash": h} for lv, i, h in tiles])
        s.execute(
            update(LedgerHead).where(LedgerHead.id == HEAD_ID).values(size=size, frontier=frontier)
        )
        if cp is not None:
            s.execute(
                insert(LedgerCheckpoint).values(
                    tree_size=size, root=cp.root, note=cp.note, created=now
                )
            )
        return cp

    def root_at(self, size: int) -> bytes:
        """The root hash of the stored tree of ``size`` leaves (O(log n) small reads)."""
        with self.engine.connect() as conn:
            return _range_hash(0, size, self.node_reader(conn))

    def read_hashes(self, level: int, lo: int, hi: int) -> bytes:
        """Packed hashes of the perfect subtrees at ``level`` (0 = leaf hashes, else a
        multiple of TILE_HEIGHT) with indices [lo, hi): what a C2SP tlog tile holds. The
        caller checks that they exist (``hi << level`` is within the head size)."""
        with self.engine.connect() as conn:
            return self._read_level(conn, level, lo, hi)

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
        """Append one event on its own (no other change to commit with it); returns it
        settled. SQLite: one transaction. PostgreSQL: queued by one short statement
        (see :mod:`exchange.ledger.sequencer`), then settled by the sequencer's next
        batch, together with every other process's events; in the sequencer's own
        process it is handed to the sequencer in memory instead of queued."""
        payload = canonical_json({"type": kind, "at": data.get("at") or now_iso(), **data})
        if self.dialect == "sqlite":
            with self.transaction() as s:
                return self.append_many(s, [(kind, data)])[0]
        agent = self._agent
        if agent is not None:  # this process is the sequencer: no queue row needed
            a = Appended(None, leaf_hash(payload), payload, kind=kind)
            if agent.hand_over(a):
                if a.error is not None:
                    raise a.error
                return a
        return self.settle(self._enqueue_standalone((kind, payload, leaf_hash(payload))))

    def _enqueue_standalone(self, prepared: tuple[str, bytes, bytes]) -> Appended:
        """Queue one standalone event (PostgreSQL) in **one round trip**: a single
        autocommitted INSERT on this process's enqueue connection, whose session has
        ``synchronous_commit`` off (the row is not flushed on its own; it is acknowledged
        only after the sequencer's batch commit, whose flush covers it). Threads of one
        process that queue at the same moment share the statement: the first takes every
        event waiting and inserts them together (one round trip for all)."""
        item: list[Any] = [prepared, None]  # [(kind, payload, leaf), Appended | error]
        with self._enq_cond:
            self._outbox.append(item)
            while item[1] is None:
                if self._enq_busy:
                    self._enq_cond.wait()
                    continue
                self._enq_busy = True
                group, self._outbox = self._outbox, []
                self._enq_cond.release()
                try:
                    try:
                        out: list[Any] = self._enqueue_raw([g[0] for g in group])
                    except BaseException as e:  # noqa: BLE001 - raised by every caller
                        out = [e] * len(group)
                finally:
                    self._enq_cond.acquire()
                    self._enq_busy = False
                for g, o in zip(group, out, strict=True):
                    g[1] = o
                self._enq_cond.notify_all()
        if isinstance(item[1], BaseException):
            raise item[1]
        return item[1]

    def _enqueue_raw(self, prepared: list[tuple[str, bytes, bytes]]) -> list[Appended]:
        """The INSERT of :meth:`_enqueue_standalone` (its caller holds the connection)."""
        raw = self._enqueue_connection()
        now, t = _utcnow(), time.monotonic()
        try:
            got = raw.execute(
                RAW_ENQUEUE,
                {
                    "kind": [k for k, _, _ in prepared],
                    "payload": [p.decode() for _, p, _ in prepared],
                    "lh": [h for _, _, h in prepared],
                    "created": [now] * len(prepared),
                },
            ).fetchall()
        except BaseException:
            self._drop_enqueue_connection()
            raise
        ids = sorted(r[0] for r in got)  # a sequence numbers the rows in unnest order
        hint = got[0][1] if got and got[0][1] is not None else (self._known_size or 0)
        return [
            Appended(None, lh, payload, queue_id=q, hint=hint, kind=kind, queued_at=t)
            for (kind, payload, lh), q in zip(prepared, ids, strict=True)
        ]

    def _enqueue_connection(self):
        """This process's enqueue connection (a driver connection taken out of the pool,
        autocommit, ``synchronous_commit`` off for its session); a new one after a fork or
        when the server has closed it (anything readable on an idle connection that does
        not listen is the server's goodbye: it is replaced without a round trip)."""
        if self._enq_pid != os.getpid():  # forked: the parent's socket is not ours
            self._enq_fairy = None
            self._enq_pid = os.getpid()
        fairy = self._enq_fairy
        if fairy is not None:
            raw = fairy.driver_connection
            if raw.closed or _select.select([raw.fileno()], [], [], 0)[0]:
                self._drop_enqueue_connection()
                fairy = None
        if fairy is None:
            fairy = self.engine.raw_connection()
            raw = fairy.driver_connection
            raw.rollback()
            raw.autocommit = True
            raw.execute("SET synchronous_commit TO off")
            raw.execute("SET application_name TO 'nsdx ledger enqueue'")
            self._enq_fairy = fairy
        return fairy.driver_connection

    def _drop_enqueue_connection(self) -> None:
        fairy, self._enq_fairy = self._enq_fairy, None
        if fairy is not None:
            try:
                fairy.invalidate()  # never back to the pool: its session is not the default
            except Exception:  # noqa: BLE001, S110 - already broken
                pass

    # -- settling --------------------------------------------------------------------
    def settle(self, a: Appended) -> Appended:
        """Wait until ``a`` (appended by a committed transaction) has its index and a
        signed checkpoint covering it; fill them in and return ``a``. Raises the error
        that kept it from being integrated (the event then stays queued: the next
        sequencer batch integrates it)."""
        self.settle_all([a])
        return a

    def settle_all(self, events: Sequence[Appended]) -> None:
        """:meth:`settle` every one of ``events``, waiting for all at once."""
        queued = [a for a in events if a.index is None]
        if queued:
            with self._cond:
                if self._agent is None:
                    self._agent = Agent(self)
                agent = self._agent
            agent.wait(queued)
            for a in queued:
                if a.error is not None:
                    raise a.error
                if a.index is None:  # pragma: no cover - wait() returns only when set
                    raise InvalidRequest(f"queued ledger event {a.queue_id} has no index")
                if a.ref is not None:
                    self._link(a.ref, a.index, a.leaf_hash)
        for a in events:
            if a.checkpoint is None and self.signer is not None and a.index is not None:
                a.checkpoint = self._covering(a.index)

    def _covering(self, index: int) -> Checkpoint:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(LedgerCheckpoint.tree_size, LedgerCheckpoint.root, LedgerCheckpoint.note)
                .where(LedgerCheckpoint.tree_size > index)
                .order_by(LedgerCheckpoint.tree_size)
                .limit(1)
            ).first()
        if row is not None:
            return Checkpoint(row[0], bytes(row[1]), row[2])
        return self.checkpoint()

    def _link(self, ref: tuple[str, str], idx: int, leaf: bytes) -> None:
        """Write ``idx`` into the ``ledger_index`` of the row ``ref`` — only if the entry
        at ``idx`` holds ``leaf``, the event's own leaf hash (in the same statement);
        else :class:`LedgerCorrupt`, and nothing is written."""
        table = LedgerEntry.metadata.tables.get(ref[0])
        if table is None or "ledger_index" not in table.c:
            return
        own = (
            select(entries_t.c.idx)
            .where(entries_t.c.idx == idx, entries_t.c.leaf_hash == leaf)
            .exists()
        )
        with self.engine.begin() as conn:
            done = conn.execute(
                update(table).where(table.c.id == ref[1], own).values(ledger_index=idx)
            ).rowcount
            if not done and conn.execute(select(own)).scalar() is not True:
                raise LedgerCorrupt(
                    f"ledger entry {idx} does not hold the leaf of the event of "
                    f"{ref[0]} {ref[1]}: its index is not linked",
                    hint="run `nsdx audit verify`",
                    index=idx,
                )

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
        rows = self._drain(s)
        if not rows:
            existing = s.get(LedgerCheckpoint, size0)
            if existing is not None:
                return Checkpoint(existing.tree_size, bytes(existing.root), existing.note)
            cp = self._sign_checkpoint(size0, cr.root())
            s.execute(
                insert(LedgerCheckpoint).values(
                    tree_size=size0, root=cp.root, note=cp.note, created=_utcnow()
                )
            )
            s.info["nsdx_ledger_signed"] = True
            return cp
        batch_cp = self.write_batch(s, size0, cr, rows)
        assert batch_cp is not None
        s.info["nsdx_ledger_signed"] = True
        return batch_cp

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
    def inclusion(
        self,
        index: int,
        tree_size: int | None = None,
        *,
        checkpoint: Checkpoint | None = None,
        witnessed: bool = False,
    ) -> dict:
        """Inclusion proof of entry ``index`` against a signed checkpoint: ``checkpoint``
        when the caller holds it (a settled event's), else the one of ``tree_size``, else
        (``witnessed``) the latest witnessed one, else the latest (signing the current head
        first if it is not covered yet). The proof is checked against the checkpoint's root
        before it is returned."""
        if checkpoint is None and tree_size is None and witnessed:
            checkpoint = self.latest_witnessed()
            if checkpoint is None or checkpoint.tree_size <= index:
                raise CheckpointNotFound(
                    f"no witnessed checkpoint covers entry {index} yet",
                    hint="witnessing follows each checkpoint in the background; ask again "
                    "later, or see `nsdx audit witness`",
                    index=index,
                )
        cp = checkpoint or self._covering_checkpoint(index + 1, tree_size)
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
        witnessed, lines = self.witnessing(cp.tree_size)
        return {
            "index": index,
            "tree_size": cp.tree_size,
            "leaf_hash": b64(leaf),
            "proof": [b64(p) for p in proof],
            "root": b64(cp.root),
            # the log-signed note with the witnesses' cosignature lines appended (note
            # verifiers that do not know a witness ignore its line)
            "checkpoint": cp.note + "".join(ln + "\n" for _, ln in lines),
            "witnessed": witnessed,
            "cosigners": [w for w, _ in lines],
        }

    def witnessing(self, tree_size: int) -> tuple[bool, list[tuple[str, str]]]:
        """Whether the checkpoint of ``tree_size`` reached the witness quorum, and the
        cosignature lines stored for it, ``[(witness, line)]`` by witness name
        (:mod:`exchange.witness.publish` writes them, migration 0012)."""
        with self.engine.connect() as conn:
            witnessed = (
                conn.execute(
                    select(LedgerWitnessed.tree_size).where(LedgerWitnessed.tree_size == tree_size)
                ).first()
                is not None
            )
            lines = [
                (w, ln)
                for w, ln in conn.execute(
                    select(LedgerCosignature.witness, LedgerCosignature.line)
                    .where(LedgerCosignature.tree_size == tree_size)
                    .order_by(LedgerCosignature.witness)
                )
            ]
        return witnessed, lines

    def witnessed_sizes(self) -> set[int]:
        """The sizes of the checkpoints that reached the witness quorum."""
        with self.engine.connect() as conn:
            return set(conn.execute(select(LedgerWitnessed.tree_size)).scalars())

    def latest_witnessed(self) -> Checkpoint | None:
        """The newest checkpoint that reached the witness quorum."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(LedgerCheckpoint.tree_size, LedgerCheckpoint.root, LedgerCheckpoint.note)
                .join(LedgerWitnessed, LedgerWitnessed.tree_size == LedgerCheckpoint.tree_size)
                .order_by(LedgerCheckpoint.tree_size.desc())
                .limit(1)
            ).first()
        return None if row is None else Checkpoint(row[0], bytes(row[1]), row[2])

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
