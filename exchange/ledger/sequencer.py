"""The ledger sequencer (PostgreSQL): one process at a time writes the tree, in batches.

Every appender, in whatever process (``nsdx serve`` workers, CLI commands, the job
worker), only *queues* its event: one INSERT into ``ledger_queue``, committed by its own
transaction (a trade's transaction commits the event atomically with the trade's rows).
It then waits for its **receipt**: the index the event was given, and the signed
checkpoint of the batch that gave it.

**The sequencer** is whichever process holds the PostgreSQL advisory lock
:data:`SEQUENCER_LOCK` (session level, taken with ``pg_try_advisory_lock``). There is no
separate daemon: each process that waits for a receipt runs one background thread, its
*agent*; an agent that finds no sequencer takes the lock and becomes it. The sequencer
loops: lock the head row, take every committed queued event off the queue, give them the
next indices, store the entries and the completed tiles, move the head, sign **one**
checkpoint — one transaction, one WAL flush for the whole batch
(:meth:`~exchange.ledger.store.LedgerStore.write_batch`, the single place that signs a
batch's checkpoint) — and announce the batch with ``NOTIFY`` :data:`CHANNEL` (delivered at
commit, so only committed batches are announced). It resigns after :data:`IDLE_RESIGN`
seconds without work.

**Receipts.** The receipt is durable before it is announced: ``ledger_entries.queue_id``
records which queue row became which entry. An announcement is only a *wake-up*: any
role that can connect may ``NOTIFY`` on :data:`CHANNEL`, so its payload is never read.
On a wake-up from another session the agent reads, in one query, every entry written
since the last one it saw (``queue_id``, index, leaf hash) and the latest signed
checkpoint, and hands its waiters their receipts from that — the database is the truth.
A receipt whose leaf hash is not the event's own is refused
(:class:`~exchange.errors.LedgerCorrupt`). An agent also looks receipts up by queue id
when a wake-up may have been missed (the event was queued before the agent listened, or
a waiter has waited :data:`LOOKUP_AFTER` seconds).

**Crashes.** A sequencer killed mid-batch (SIGKILL, power loss) leaves an open
transaction that PostgreSQL rolls back: the queue rows it took are back in the queue, no
entry, head or checkpoint of that batch exists, and its session's advisory lock is
released. The next agent that looks (every :data:`WAIT` seconds while it has waiters)
becomes the sequencer and integrates them. An append is *acknowledged* only when its
receipt is given, i.e. after the batch that integrated it committed with a synchronous
WAL flush; so no acknowledged append is lost, and indices stay dense (no gap, no
duplicate, no fork: only the head-row lock holder gives indices). A sequencer whose
connection is lost (terminated, a database restart) rolls back the same way; its agent
connects again for up to :data:`RETRY_FOR` seconds, and the waiters of queued events get
their receipts from the next batch instead of an error (their trades are committed).

A standalone event (:meth:`~exchange.ledger.store.LedgerStore.append_event`) is queued
with ``synchronous_commit`` off: its queue row is not flushed on its own, but it is not
acknowledged either until the sequencer's batch commits, and that commit's flush covers
every earlier WAL record, the queue row included. It costs its process one round trip
(an autocommitted INSERT on the process's enqueue session, shared by its threads, whose
concurrent events go in one statement); the agent's look-ups are one round trip each (its
session is in autocommit), a waiting agent looks for a live sequencer every :data:`WAIT`
seconds (not at each wake-up), and a busy sequencer's batch is one round trip: its
statement, COMMIT, and the next batch's head lock and queue drain in one pipeline (see
:meth:`Agent._round`).

**Where the time goes** (``bench/bench_ledger.py --procs-only``): every acknowledged
append waits for one WAL flush, its batch's, as a single-row INSERT with
``synchronous_commit`` on waits for its own; so C single-threaded appenders can never
beat C single-threaded clients that each wait for one flush per write, and the bench
measures that floor beside the ledger.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ingest import failpoints

if TYPE_CHECKING:  # pragma: no cover
    from .store import Appended, Checkpoint, LedgerStore

#: The advisory lock whose holder is the sequencer ('nsdxLEDG').
SEQUENCER_LOCK = 0x6E7364784C454447
#: The NOTIFY channel announcing integrated batches.
CHANNEL = "nsdx_ledger"
#: A waiting agent checks this often that a sequencer is alive (and becomes it if not).
WAIT = 0.05
#: The sequencer resigns after this long without work and without waiters of its own.
IDLE_RESIGN = 1.0
#: A waiter not served by an announcement after this long is looked up in the database.
LOOKUP_AFTER = 0.5
#: An agent without waiters (and not the sequencer) stops after this long.
LINGER = 2.0
#: Receipts announced recently, kept for waiters that register after the announcement.
RECENT = 100_000
#: After a lost connection, an agent with waiters connects again for this long.
RETRY_FOR = 30.0
RETRY_PAUSE = 0.2
_ELECT = "SELECT pg_try_advisory_lock(%(k)s)"
_NAME = "SELECT set_config('application_name', %(name)s, false)"
_QUEUED_SQL = "SELECT EXISTS (SELECT 1 FROM ledger_queue)"
_HEAD_SQL = "SELECT COALESCE(MAX(size), 0) FROM ledger_head"
# a wake-up: the latest checkpoint (kind 0) and every entry from :lo (kind 1), one snapshot
_WAKE_SQL = (
    "(SELECT 0, NULL::bigint, tree_size, root, note FROM ledger_checkpoints "
    "ORDER BY tree_size DESC LIMIT 1) UNION ALL "
    "(SELECT 1, queue_id, idx, leaf_hash, NULL FROM ledger_entries WHERE idx >= %(lo)s)"
)


def _connection_lost(e: BaseException) -> bool:
    """Is ``e`` the database connection failing (worth connecting again), not a fault?"""
    from sqlalchemy.exc import DBAPIError

    if isinstance(e, DBAPIError):
        return bool(e.connection_invalidated) or isinstance(e.orig, _operational())
    return isinstance(e, _operational())


def _operational() -> tuple[type[BaseException], ...]:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - the PostgreSQL driver is a dependency
        return ()
    return (psycopg.OperationalError,)


def _committed(cur) -> bool:
    """Did the COMMIT sent on ``cur`` (in a pipeline) succeed on the server?"""
    if cur is None or cur.pgresult is None:
        return False
    from psycopg import pq

    return bool(cur.pgresult.status == pq.ExecStatus.COMMAND_OK)


def announcement(size0: int, qids: list[int | None], cp: Checkpoint | None) -> str:
    """The NOTIFY payload of a batch, for operators watching the channel: its first
    index and size. Receivers never read it (anyone may NOTIFY): it is a wake-up only."""
    return json.dumps({"s": size0, "n": len(qids)}, separators=(",", ":"))


def _corrupt(q: int, idx: int) -> BaseException:
    from ..errors import LedgerCorrupt

    return LedgerCorrupt(
        f"ledger entry {idx} (queue id {q}) does not hold the leaf of the queued event",
        hint="run `nsdx audit verify`",
        index=idx,
    )


class Agent:
    """The per-process (per store) background thread that waits for receipts and, when
    no one else is, acts as the sequencer."""

    def __init__(self, store: LedgerStore) -> None:
        self.store = store
        self.cond = store._cond
        self.waiting: dict[int, Appended] = {}
        self.since: dict[int, float] = {}  # queue id -> when its waiter registered
        # queue id -> (index, checkpoint, leaf hash at that index), read from the database
        self.recent: OrderedDict[int, tuple[int, Checkpoint | None, bytes]] = OrderedDict()
        self.seen: int | None = None  # every entry below this index has been read
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()
        self.listen_at: float | None = None  # monotonic time LISTEN took effect
        self.sequencer = False
        self.memory: list[Appended] = []  # standalone events handed over in this process
        self.batches = 0  # batches this agent integrated as the sequencer
        self.busy = False  # the last round integrated something
        # the sequencer's next batch, opened by the last one's pipeline: (head, drained)
        self.opened: tuple[Any, Any] | None = None

    # -- the waiting side (any thread) ------------------------------------------------
    def wait(self, events: list[Appended]) -> None:
        """Block until every event has its index (or an error)."""
        with self.cond:
            if self.pid != os.getpid():  # forked: the parent's thread is not ours
                self.__init__(self.store)  # type: ignore[misc]
            now = time.monotonic()
            for a in events:
                assert a.queue_id is not None
                done = self.recent.get(a.queue_id)
                if done is not None:
                    if done[2] != a.leaf_hash:
                        a.error = _corrupt(a.queue_id, done[0])
                    else:
                        a.index, a.checkpoint = done[0], done[1]
                    continue
                self.waiting[a.queue_id] = a
                # queued before we listened: its announcement may be gone — look it up
                stale = self.listen_at is None or a.queued_at < self.listen_at
                self.since[a.queue_id] = now - LOOKUP_AFTER if stale else now
            if self.thread is None and self.waiting:
                self.thread = threading.Thread(target=self._run, name="nsdx-ledger", daemon=True)
                self.thread.start()
            while any(a.index is None and a.error is None for a in events):
                self.cond.wait()

    def hand_over(self, a: Appended) -> bool:
        """While this process is the sequencer, a standalone event needs no queue row:
        hand it over in memory and wait for the batch that integrates it (it is
        acknowledged only after that batch committed). False: not the sequencer."""
        with self.cond:
            if self.pid != os.getpid() or not self.sequencer or self.thread is None:
                return False
            self.memory.append(a)
            while a.index is None and a.error is None:
                self.cond.wait()
        return True

    # -- the agent thread -------------------------------------------------------------
    def _run(self) -> None:
        """Serve until lingering ends. A lost database connection (terminated, a restart)
        does not fail the waiters of queued events: their queue rows are committed (a
        trade's rows with them), so the agent connects again and the next sequencer
        integrates them; only after :data:`RETRY_FOR` seconds without a connection do
        the waiters get the error. Events handed over in memory were never stored: their
        callers get the error at once."""
        failed_at: float | None = None
        while True:
            try:
                self._serve()
                return
            except BaseException as e:  # noqa: BLE001 - handed to the waiters, who raise it
                now = time.monotonic()
                failed_at = failed_at if failed_at is not None else now
                retry = _connection_lost(e) and now - failed_at < RETRY_FOR
                with self.cond:
                    for a in self.memory:
                        a.error = e
                    self.memory.clear()
                    self.sequencer = False
                    self.opened = None  # its transaction went with the connection
                    self.listen_at = None
                    self.seen = None
                    retry = retry and bool(self.waiting)
                    if not retry:
                        for a in self.waiting.values():
                            a.error = e
                        self.waiting.clear()
                        self.since.clear()
                        self.thread = None
                    else:  # look each one up again once connected
                        self.since = dict.fromkeys(self.since, now - LOOKUP_AFTER)
                    self.cond.notify_all()
                if not retry:
                    return
                time.sleep(RETRY_PAUSE)

    def _serve(self) -> None:
        """The agent's loop on its own driver connection (taken out of the pool, in
        autocommit: every look-up is one round trip, with no BEGIN or ROLLBACK around it;
        the sequencer's batches open their transaction explicitly, see :meth:`_round`)."""
        fairy = None
        try:
            fairy = self.store.engine.raw_connection()
            raw: Any = fairy.driver_connection
            raw.rollback()
            raw.autocommit = True
            raw.execute(f"LISTEN {CHANNEL}")
            # every entry committed after this is read on a wake-up (earlier ones: _lookup)
            head = raw.execute(_HEAD_SQL).fetchone()
            with self.cond:
                self.seen = int(head[0] or 0) if head else 0
                self.listen_at = time.monotonic()
            idle = time.monotonic()
            tried = -WAIT  # when this agent last tried to become the sequencer
            while True:
                with self.cond:
                    now = time.monotonic()
                    if not self.waiting and not self.sequencer and now - idle > LINGER:
                        self.thread = None
                        self.listen_at = None
                        return
                    late = [q for q, t in self.since.items() if now - t >= LOOKUP_AFTER]
                    for q in late:
                        self.since[q] = now
                    has_waiters = bool(self.waiting or self.memory)
                if late:
                    self._lookup(raw, late)
                if has_waiters:
                    idle = time.monotonic()
                # a waiting agent looks for a live sequencer every WAIT seconds, not at
                # every wake-up (that would be one more round trip per receipt)
                since_try = time.monotonic() - tried
                if not self.sequencer and has_waiters and since_try >= WAIT:
                    tried = time.monotonic()
                    got = raw.execute(_ELECT, {"k": SEQUENCER_LOCK}).fetchone()
                    self.sequencer = bool(got and got[0])
                    if self.sequencer:  # operators find it in pg_stat_activity
                        self._wake(raw)  # what the previous sequencer wrote: all of it
                        raw.execute(_NAME, {"name": f"nsdx ledger sequencer {os.getpid()}"})
                    since_try = 0.0
                if not self.sequencer:
                    self._listen(raw, WAIT - since_try if has_waiters else WAIT)
                    continue
                if self._round(raw):
                    idle = time.monotonic()
                    self._listen(raw, 0)
                    continue
                if not has_waiters and time.monotonic() - idle > IDLE_RESIGN:
                    with self.cond:  # no hand-over after this
                        if self.memory:
                            continue
                        self.sequencer = False
                    raw.execute("SELECT pg_advisory_unlock(%(k)s)", {"k": SEQUENCER_LOCK})
                    raw.execute(_NAME, {"name": ""})
                    continue
                # nothing queued yet: look again in a moment (less often the longer idle)
                self._listen(raw, min(0.02, 0.001 + (time.monotonic() - idle) / 20))
        finally:
            if fairy is not None:
                # never back to the pool: it listens (and may hold the advisory lock)
                fairy.invalidate()

    def _round(self, raw) -> int:
        """One batch as the sequencer: every queued event, then those handed over in
        memory; the number of events integrated.

        A batch is one round trip while the sequencer is busy: its statement, COMMIT
        (whose synchronous WAL flush makes it durable before any receipt is read), and the
        next batch's BEGIN, head-row lock and queue drain go together in one pipeline, so
        the server takes the events queued during the flush as soon as it ends; the next
        round writes them (or rolls back if there were none). Idle, the first batch opens
        with one more round trip (BEGIN, lock, drain). When a crash test stops between the
        statement and COMMIT (:func:`failpoints.armed`) they are sent one by one."""
        from .merkle import CompactRange
        from .store import DRAIN_LIMIT, HEAD_ID, RAW_DRAIN, RAW_LOCK, RAW_WRITE, _split

        store = self.store
        with self.cond:
            mem, self.memory = self.memory, []
        opened, self.opened = self.opened, None
        committed = None
        try:
            if opened is None:
                # idle: look before taking the lock; busy: the drain looks
                if not mem and not self.busy and not self._queued(raw):
                    return 0
                with raw.pipeline():
                    raw.execute("BEGIN")
                    opened = (
                        raw.execute(RAW_LOCK, {"id": HEAD_ID}),
                        raw.execute(RAW_DRAIN, {"limit": DRAIN_LIMIT}),
                    )
            head, drained = opened
            row = head.fetchone()
            if row is None:  # the head row is made by the migration: put it back
                raw.execute("ROLLBACK")
                with store.transaction() as s:
                    store.lock(s)
                return 0
            size0, cr = int(row[0]), CompactRange(int(row[0]), _split(bytes(row[1])))
            store._known_size = size0
            failpoints.hit("ledger.append")
            rows = [tuple(r) for r in drained.fetchall()]
            while len(rows) % DRAIN_LIMIT == 0 and rows:  # more than one statement's worth
                more = raw.execute(RAW_DRAIN, {"limit": DRAIN_LIMIT}).fetchall()
                rows += [tuple(r) for r in more]
                if len(more) < DRAIN_LIMIT:
                    break
            rows = sorted(((q, k, p, bytes(h), c) for q, k, p, h, c in rows), key=lambda r: r[0])
            n_queued = len(rows)
            now = datetime.now(UTC).replace(tzinfo=None)
            rows += [(None, a.kind, a.payload.decode(), a.leaf_hash, now) for a in mem]
            if not rows:
                raw.execute("ROLLBACK")
                self.busy = False
                return 0
            cp, key, params = store.batch_params(size0, cr, rows)
            if failpoints.armed("ledger.written"):  # the crash tests stop between them
                raw.execute(RAW_WRITE[key], params)
                failpoints.hit("ledger.written")
                raw.execute("COMMIT")
            else:
                with raw.pipeline():
                    raw.execute(RAW_WRITE[key], params)
                    committed = raw.execute("COMMIT")
                    raw.execute("BEGIN")
                    self.opened = (
                        raw.execute(RAW_LOCK, {"id": HEAD_ID}),
                        raw.execute(RAW_DRAIN, {"limit": DRAIN_LIMIT}),
                    )
        except BaseException as e:
            self.opened = None
            if _committed(committed):  # only the next batch's opening failed
                self._integrated(raw, size0, rows, n_queued, mem, cp)
                raise
            with self.cond:  # never written: their callers get the error
                for a in mem:
                    a.error = e
                self.cond.notify_all()
            raise
        self._integrated(raw, size0, rows, n_queued, mem, cp)
        return len(rows)

    def _integrated(self, raw, size0: int, rows: list[tuple], n_queued: int, mem, cp) -> None:
        """After a batch committed: its receipts to the waiters (queued events: the
        database's entries; events handed over in memory: the indices just committed)."""
        store = self.store
        store._known_size = size0 + len(rows)
        self.batches += 1
        if self.seen is not None and self.seen < size0:  # entries another writer added
            self._wake(raw)
        if cp is not None:
            store._announce()  # after-signing listeners (witnessing) of this process
        self.busy = True
        with self.cond:
            for i, a in enumerate(mem):
                a.index, a.checkpoint = size0 + n_queued + i, cp
            if self.seen is not None and self.seen >= size0:
                self.seen = max(self.seen, size0 + len(rows))
        self._resolve([(r[0], size0 + i, r[3]) for i, r in enumerate(rows[:n_queued])], cp)

    @staticmethod
    def _queued(raw) -> bool:
        row = raw.execute(_QUEUED_SQL).fetchone()
        return bool(row and row[0])

    def _listen(self, raw, timeout: float) -> None:
        """Wait up to ``timeout`` s for a wake-up. A notification is never trusted (any
        role that can connect may NOTIFY on the channel): its payload is not read, and one
        from another session only makes the agent read the new entries (:meth:`_wake`).
        Our own batches' announcements are skipped (the server sets the sender's pid)."""
        own = raw.info.backend_pid
        woken = False
        for n in raw.notifies(timeout=timeout, stop_after=1):
            woken = woken or n.pid != own
        if woken:
            self._wake(raw)

    def _wake(self, raw) -> None:
        """Read every entry from :attr:`seen` on and the latest signed checkpoint (one
        statement, one snapshot, one round trip: the checkpoint covers every entry read)
        and give the waiters their receipts."""
        with self.cond:
            lo = self.seen
        if lo is None:  # pragma: no cover - set once listening
            return
        got = raw.execute(_WAKE_SQL, {"lo": lo}).fetchall()
        cp = None
        pairs: list[tuple[int, int, bytes]] = []
        hi = lo
        for kind, q, idx, h, note in got:
            if kind == 0:
                from .store import Checkpoint

                cp = Checkpoint(int(idx), bytes(h), note)
            else:
                hi = max(hi, int(idx) + 1)
                if q is not None:
                    pairs.append((int(q), int(idx), bytes(h)))
        with self.cond:
            if self.seen is not None:
                self.seen = max(self.seen, hi)
        if pairs:
            self._resolve(pairs, cp if self.store.signer is not None else None)

    def _lookup(self, raw, qids: list[int]) -> None:
        with self.cond:
            hint = min((self.waiting[q].hint for q in qids if q in self.waiting), default=0)
        rows = raw.execute(
            "SELECT queue_id, idx, leaf_hash FROM ledger_entries "
            "WHERE idx >= %(hint)s AND queue_id = ANY(CAST(%(q)s AS bigint[]))",
            {"hint": hint, "q": qids},
        ).fetchall()
        cp = None
        if rows and self.store.signer is not None:
            cp = self.store.latest_checkpoint()  # covers every integrated entry
        self._resolve([(q, i, bytes(h)) for q, i, h in rows], cp)

    def _resolve(self, pairs: list[tuple[int, int, bytes]], cp) -> None:
        """Hand out receipts read from the database: (queue id, index, leaf hash at that
        index). A waiter whose event's leaf hash differs gets :class:`LedgerCorrupt`."""
        with self.cond:
            for q, idx, h in pairs:
                if q is None:
                    continue
                c = cp if cp is not None and cp.tree_size > idx else None
                a = self.waiting.pop(q, None)
                self.since.pop(q, None)
                if a is None:
                    self.recent[q] = (idx, c, h)
                elif h != a.leaf_hash:
                    a.error = _corrupt(q, idx)
                else:
                    a.index, a.checkpoint = idx, c
            while len(self.recent) > RECENT:
                self.recent.popitem(last=False)
            self.cond.notify_all()
