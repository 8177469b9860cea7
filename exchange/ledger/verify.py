"""`nsdx audit verify`: recompute the whole tree from the database and check it against
the signed checkpoints.

Steps, in one streaming pass over ``ledger_entries`` in index order:

1. indices are dense from 0 (a gap or a duplicate names the first bad index);
2. every stored leaf hash equals SHA-256(0x00 || payload) (RFC 9162 §2.1.1), so an edited
   payload is named at its exact index;
3. the root recomputed over leaves [0, n) equals the signed root of every checkpoint of
   size n (the signature is checked first with the verifier key); if a payload *and* its
   leaf hash were both rewritten, the first checkpoint whose root differs bounds the
   change to the entries between it and the previous good checkpoint — and because every
   trade step signs a checkpoint, that range is one entry;
4. the latest signed checkpoint is not beyond the entries (nothing was cut off the end).

An external checkpoint (one an official kept from earlier, ``--checkpoint FILE``) is
checked the same way, so a rewritten history that re-signed everything with a stolen key
still fails against the copy held outside the database.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from validation.messages import Msg

from ..errors import CheckpointNotFound, LedgerCorrupt
from .keys import open_checkpoint
from .merkle import HASH_SIZE, CompactRange, _fold
from .note import NoteError, reason
from .store import TILE_HEIGHT, Checkpoint, LedgerStore, b64


@dataclass
class Problem:
    kind: str  # gap | duplicate | leaf_hash | root | signature | missing | unsigned | tile
    # | fork | quorum | cosignature (with witnesses: exchange.witness.audit)
    message: str
    index: int | None = None
    range: tuple[int, int] | None = None


@dataclass
class VerifyResult:
    ok: bool
    entries: int
    checkpoints_checked: int
    latest_checkpoint: int | None
    root: str | None
    seconds: float
    first_bad_index: int | None = None
    problems: list[Problem] = field(default_factory=list)
    unsigned_tail: int = 0
    pending: int = 0
    witnessing: dict | None = None  # with witnesses: what they cosigned (exchange.witness.audit)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["problems"] = [asdict(p) for p in self.problems]
        return d


@dataclass(frozen=True)
class Verified:
    """What a successful verification of the entries [0, entries) leaves for the next one
    to resume from: the compact range (O(log n) hashes), the recomputed subtree hashes at
    level TILE_HEIGHT and the leaf hashes of the last, partial block (for the tile check),
    the signed roots it checked, and the checkpoint rows whose signatures it checked."""

    entries: int
    frontier: CompactRange
    leaves: bytes
    level_nodes: bytes
    last_good: int
    roots: dict[int, bytes]
    notes_ok: frozenset[tuple[int, bytes, str]]


def verify_ledger(
    store: LedgerStore,
    verifier_key: str,
    *,
    external_checkpoints: Sequence[str] = (),
    batch: int = 20000,
    resume: Verified | None = None,
    out: list[Verified] | None = None,
) -> VerifyResult:
    """Verify the ledger (the steps above). ``resume``: the state of an earlier successful
    verification of the entries [0, resume.entries) — whose rows the caller has checked are
    unchanged since (:func:`verify_with_state`) — so only the entries after it are hashed;
    every checkpoint of the database and every external one is still checked (a signed size
    inside the resumed prefix must have the root verified then). ``out``: receives the state
    of this verification when it succeeds."""
    t0 = time.perf_counter()
    problems: list[Problem] = []
    signed: dict[int, bytes] = {}
    notes_ok: set[tuple[int, bytes, str]] = set()
    for cp in store.checkpoints():
        if resume is not None and (cp.tree_size, cp.root, cp.note) in resume.notes_ok:
            signed[cp.tree_size] = cp.root  # this very row's signature was checked then
            notes_ok.add((cp.tree_size, cp.root, cp.note))
            continue
        try:
            parsed = open_checkpoint(cp.note, verifier_key)
        except NoteError as e:
            problems.append(
                Problem(
                    "signature",
                    Msg(
                        "checkpoint at size %(size)s: %(error)s", size=cp.tree_size, error=reason(e)
                    ),
                )
            )
            continue
        if parsed.size != cp.tree_size or parsed.root != cp.root:
            problems.append(
                Problem(
                    "signature",
                    Msg("checkpoint row %(size)s differs from its signed note", size=cp.tree_size),
                )
            )
        else:
            notes_ok.add((cp.tree_size, cp.root, cp.note))
        signed[parsed.size] = parsed.root
    for text in external_checkpoints:
        try:
            parsed = open_checkpoint(text, verifier_key)
        except NoteError as e:
            problems.append(
                Problem("signature", Msg("external checkpoint: %(error)s", error=reason(e)))
            )
            continue
        if parsed.size in signed and signed[parsed.size] != parsed.root:
            problems.append(
                Problem(
                    "root",
                    Msg(
                        "the external checkpoint at size %(size)s and the database's "
                        "disagree: the database's checkpoints were replaced",
                        size=parsed.size,
                    ),
                    index=None,
                )
            )
        signed[parsed.size] = parsed.root
    sizes = sorted(signed)
    cr = CompactRange()
    expected = 0
    first_bad: int | None = None
    last_good_cp = 0
    next_cp = 0  # position in sizes
    if resume is not None:
        if any(resume.roots.get(n) != signed[n] for n in sizes if n <= resume.entries):
            resume = None  # a signed size in the prefix not verified then: all of it again
    if resume is not None:
        cr = resume.frontier.copy()
        expected = resume.entries
        last_good_cp = resume.last_good
        while next_cp < len(sizes) and sizes[next_cp] <= expected:
            next_cp += 1
    sha = hashlib.sha256
    root_failures = [0]

    def check_roots_upto(n: int) -> None:
        nonlocal next_cp, last_good_cp, first_bad
        while next_cp < len(sizes) and sizes[next_cp] == n:
            if cr.root() != signed[n]:
                lo = last_good_cp
                if first_bad is None:
                    first_bad = lo if n - lo == 1 else None
                root_failures[0] += 1
                if root_failures[0] > 1:  # later checkpoints fail too; name the first only
                    next_cp += 1
                    continue
                problems.append(
                    Problem(
                        "root",
                        Msg(
                            "the tree of size %(n)s does not match its signed checkpoint: "
                            "entry %(lo)s was changed",
                            n=n,
                            lo=lo,
                        )
                        if n - lo == 1
                        else Msg(
                            "the tree of size %(n)s does not match its signed checkpoint: an "
                            "entry in [%(lo)s, %(n)s) was changed",
                            n=n,
                            lo=lo,
                        ),
                        index=lo if n - lo == 1 else None,
                        range=(lo, n),
                    )
                )
            else:
                last_good_cp = n
            next_cp += 1

    block = 1 << TILE_HEIGHT
    leaves = bytearray()  # leaf hashes of the current tile block
    level_nodes = bytearray()  # recomputed nodes at level TILE_HEIGHT
    if resume is None:
        check_roots_upto(0)
    else:
        leaves += resume.leaves
        level_nodes += resume.level_nodes
    # A block (2**TILE_HEIGHT aligned leaves) with no checkpoint strictly inside enters the
    # compact range as the one node its fold gives (the tiles need that fold anyway);
    # only a block a checkpoint ends inside is appended leaf by leaf. The same roots,
    # without hashing every block twice.
    per_leaf = True

    def leafwise(start: int) -> bool:
        """Does a signed size fall strictly inside the block starting at ``start``?"""
        i = next_cp
        while i < len(sizes) and sizes[i] <= start:
            i += 1
        return i < len(sizes) and sizes[i] < start + block

    # resumed inside a block: its first leaves are in the compact range one by one already
    per_leaf = leafwise(expected) or bool(leaves)
    for idx, payload, stored in store.iter_rows(start=expected, batch=batch):
        if idx != expected:
            kind = "gap" if idx > expected else "duplicate"
            problems.append(
                Problem(
                    kind,
                    Msg(
                        "expected entry %(expected)s, found %(found)s", expected=expected, found=idx
                    ),
                    index=expected,
                )
            )
            if first_bad is None:
                first_bad = expected
            break
        h = sha(b"\x00" + payload.encode("utf-8")).digest()
        if h != stored or len(stored) != HASH_SIZE:
            problems.append(
                Problem(
                    "leaf_hash",
                    Msg(
                        "entry %(i)s: its payload does not hash to its stored leaf hash (edited)",
                        i=idx,
                    ),
                    index=idx,
                )
            )
            if first_bad is None:
                first_bad = idx
        if per_leaf:
            cr.append(h)
        leaves += h
        expected += 1
        if len(leaves) == block * HASH_SIZE:
            node = _fold(leaves, TILE_HEIGHT)
            level_nodes += node
            if not per_leaf:
                cr._push(TILE_HEIGHT, node)  # aligned: the block starts at a multiple
            leaves.clear()
            check_roots_upto(expected)
            per_leaf = leafwise(expected)
        elif per_leaf:
            check_roots_upto(expected)
    if not per_leaf and leaves:  # the last, partial block: its leaves, largest first
        cr.append_packed(bytes(leaves))
        check_roots_upto(expected)
    n = expected
    if sizes and sizes[-1] > n:
        problems.append(
            Problem(
                "missing",
                Msg(
                    "a checkpoint signs %(signed)s entries but the database holds %(n)s: "
                    "entries from %(n)s on were removed",
                    signed=sizes[-1],
                    n=n,
                ),
                index=n,
            )
        )
        if first_bad is None:
            first_bad = n
    if not any(p.kind in ("gap", "duplicate") for p in problems):
        problems += _check_tiles(store, bytes(level_nodes))
    if root_failures[0] > 1:
        problems.append(
            Problem(
                "root",
                Msg(
                    "%(count)s later checkpoint(s) fail for the same reason",
                    count=root_failures[0] - 1,
                ),
            )
        )
    if first_bad is None:
        bounded = [p.range for p in problems if p.range]
        first_bad = bounded[0][0] if bounded else None
    latest = sizes[-1] if sizes else None
    if not problems and out is not None:
        done = dict(resume.roots) if resume is not None else {}
        done.update((s, signed[s]) for s in sizes if s <= n)
        out.append(
            Verified(
                entries=n,
                frontier=cr.copy(),
                leaves=bytes(leaves),
                level_nodes=bytes(level_nodes),
                last_good=last_good_cp,
                roots=done,
                notes_ok=frozenset(notes_ok),
            )
        )
    return VerifyResult(
        ok=not problems,
        entries=n,
        checkpoints_checked=len(sizes),
        latest_checkpoint=latest,
        root=b64(cr.root()),
        seconds=round(time.perf_counter() - t0, 3),
        first_bad_index=first_bad,
        problems=problems,
        unsigned_tail=n - (latest or 0) if latest is not None and latest <= n else n,
        pending=store.pending(),
    )


def _check_tiles(store: LedgerStore, computed: bytes) -> list[Problem]:
    """Compare the stored tiles with the nodes recomputed from the leaves (``computed``:
    the packed nodes at level TILE_HEIGHT); the first difference per level is named."""
    out: list[Problem] = []
    level = TILE_HEIGHT
    while True:
        stored = store.tiles(level)
        want = [computed[i : i + HASH_SIZE] for i in range(0, len(computed), HASH_SIZE)]
        if not want and not stored:
            return out
        for i, w in enumerate(want):
            if i >= len(stored) or stored[i] != (i, w):
                where = {"level": level, "i": i, "lo": i << level, "hi": (i + 1) << level}
                if i >= len(stored) or stored[i][0] != i:
                    message = Msg(
                        "stored subtree hash at level %(level)s, index %(i)s (leaves "
                        "[%(lo)s, %(hi)s)) is missing; the entries may be intact, "
                        "but proofs that read it fall back to the leaves",
                        **where,
                    )
                else:
                    message = Msg(
                        "stored subtree hash at level %(level)s, index %(i)s (leaves "
                        "[%(lo)s, %(hi)s)) is wrong; the entries may be intact, "
                        "but proofs that read it fall back to the leaves",
                        **where,
                    )
                out.append(Problem("tile", message))
                break
        else:
            if len(stored) > len(want):
                i = stored[len(want)][0]
                out.append(
                    Problem(
                        "tile",
                        Msg(
                            "stored subtree hash at level %(level)s, index %(i)s covers leaves "
                            "beyond the tree",
                            level=level,
                            i=i,
                        ),
                    )
                )
        usable = len(computed) - len(computed) % (HASH_SIZE << TILE_HEIGHT)
        computed = _fold(computed[:usable], TILE_HEIGHT)
        level += TILE_HEIGHT


def verified_events(
    store: LedgerStore, verifier_key: str | Callable[[], str], tree_size: int | None = None
) -> tuple[Checkpoint, list[dict]]:
    """The signed checkpoint of ``tree_size`` (default: the latest one; none is signed here:
    reading is read-only) and the decoded ledger entries [0, tree_size) it covers — after
    checking that they are exactly what was signed: the checkpoint's signature, dense
    indices, and the Merkle root recomputed from the payloads themselves (stored leaf
    hashes are not trusted). Every computation that cites a checkpoint (rewards, flags,
    reports, the HTTP API) reads entries through this, and refuses with
    :class:`LedgerCorrupt` when they were changed. ``verifier_key`` may be a callable, called
    only once a checkpoint was found (so a fresh deployment's key is not generated by a
    read)."""
    if tree_size is None:
        cp = store.latest_checkpoint()
        if cp is None:
            raise CheckpointNotFound(
                "the ledger has no signed checkpoint yet, so there is nothing to compute from",
                hint="record a trade (every step signs a checkpoint), or have the operator run "
                "`nsdx audit checkpoint`",
            )
    else:
        cp = store.get_checkpoint(tree_size)
    hint = Msg("run `nsdx audit verify` to find the changed entries; nothing was computed")
    if callable(verifier_key):
        verifier_key = verifier_key()
    try:
        parsed = open_checkpoint(cp.note, verifier_key)
    except NoteError as e:
        raise LedgerCorrupt(
            f"the checkpoint at tree size {cp.tree_size} does not carry a valid signature: {e}",
            hint=hint,
            tree_size=cp.tree_size,
        ) from None
    if parsed.size != cp.tree_size or parsed.root != cp.root:
        raise LedgerCorrupt(
            f"the checkpoint row at tree size {cp.tree_size} differs from its signed note",
            hint=hint,
            tree_size=cp.tree_size,
        )
    events: list[dict] = []
    cr = CompactRange()
    edited: list[int] = []
    sha = hashlib.sha256
    n = 0
    for idx, payload, stored in store.iter_rows(cp.tree_size):
        if idx != n:
            raise LedgerCorrupt(
                f"ledger entry {n} is missing (found {idx}); the entries do not match "
                f"the signed checkpoint at tree size {cp.tree_size}",
                hint=hint,
                index=n,
            )
        h = sha(b"\x00" + payload.encode("utf-8")).digest()
        if h != stored:
            edited.append(idx)
        cr.append(h)
        events.append({**json.loads(payload), "index": idx})
        n += 1
    if n != cp.tree_size:
        raise LedgerCorrupt(
            f"the signed checkpoint covers {cp.tree_size} entries but the database holds {n}",
            hint=hint,
            tree_size=cp.tree_size,
        )
    if cr.root() != cp.root:
        if edited:
            message = Msg(
                "the ledger entries [0, %(size)s) do not hash to the root signed in checkpoint "
                "%(size)s (entries %(entries)s were edited): they were changed after they were "
                "signed, so no figure computed from them can be trusted",
                size=cp.tree_size,
                entries=", ".join(map(str, edited[:10])),
            )
        else:
            message = Msg(
                "the ledger entries [0, %(size)s) do not hash to the root signed in checkpoint "
                "%(size)s: they were changed after they were signed, so no figure computed "
                "from them can be trusted",
                size=cp.tree_size,
            )
        raise LedgerCorrupt(
            message,
            hint=hint,
            tree_size=cp.tree_size,
            edited=edited[:10] or None,
        )
    return cp, events


_DIGEST_CHUNK = 20_000


def _digest_sql(dialect: str, leaf_hashes: bool) -> str:
    """Per chunk: the database concatenates (and PostgreSQL hashes) the rows in index order,
    no per-row Python work; SQLite hands the text over as bytes (no decoding and
    re-encoding in Python). The counts of non-null payloads (and leaf hashes, and those of
    32 bytes) make the concatenation unambiguous: a canonical payload holds no raw newline,
    so the same text with the same counts is the same rows."""
    if dialect == "postgresql":
        col = "payload || E'\\t' || encode(leaf_hash, 'hex')" if leaf_hashes else "payload"
        return (
            "SELECT count(*), sum(idx), sum(idx * idx), count(payload), count(leaf_hash), "
            f"sha256(convert_to(string_agg({col}, E'\\n' ORDER BY idx), 'UTF8')) "
            "FROM ledger_entries WHERE idx >= :a AND idx < :b"
        )
    if leaf_hashes:  # the 32-byte hashes as they are, in a second aggregate of the same scan
        return (
            "SELECT count(*), sum(idx), sum(idx * idx), count(p), sum(length(h) = 32), "
            "CAST(group_concat(p, char(10)) AS BLOB), CAST(group_concat(h, '') AS BLOB) "
            "FROM (SELECT idx, payload AS p, leaf_hash AS h FROM ledger_entries "
            "WHERE idx >= :a AND idx < :b ORDER BY idx)"
        )
    return (
        "SELECT count(*), sum(idx), sum(idx * idx), count(p), NULL, "
        "CAST(group_concat(p, char(10)) AS BLOB) "
        "FROM (SELECT idx, payload AS p FROM ledger_entries WHERE idx >= :a AND idx < :b "
        "ORDER BY idx)"
    )


def rows_digest_chunks(
    store: LedgerStore, tree_size: int, *, start_chunk: int = 0, leaf_hashes: bool = False
) -> list[bytes]:
    """The digests of the ledger rows [0, tree_size) in fixed chunks of 20,000 indices
    (chunk ``i`` covers [20,000 i, 20,000 (i + 1)) cut at ``tree_size``), from chunk
    ``start_chunk`` on. Each is a SHA-256 over what a figure computed from those rows
    depends on, as the rows are now: every payload in index order (with ``leaf_hashes``,
    each row's stored leaf hash too), and the count and the sums of the indices and of their
    squares. Equal digests mean the rows did not change between two readings; an edited
    payload, a removed, inserted or renumbered row changes them. One pass in the database,
    no per-row Python and no Merkle work."""
    from sqlalchemy import text  # noqa: PLC0415

    dialect = store.engine.dialect.name
    sql = text(_digest_sql(dialect, leaf_hashes))
    out: list[bytes] = []
    with store.engine.connect() as conn:
        for lo in range(start_chunk * _DIGEST_CHUNK, max(tree_size, 0), _DIGEST_CHUNK):
            hi = min(tree_size, lo + _DIGEST_CHUNK)
            count, s1, s2, c1, c2, *chunks = conn.execute(sql, {"a": lo, "b": hi}).one()
            h = hashlib.sha256(f"{lo}:{hi}:{count}:{s1}:{s2}:{c1}:{c2}:{int(leaf_hashes)}".encode())
            for chunk in chunks:
                h.update(b":" if chunk is None else b":%d:" % len(chunk))
                if chunk is not None:
                    h.update(chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk))
            out.append(h.digest())
    return out


def rows_digest(store: LedgerStore, tree_size: int) -> bytes:
    """One SHA-256 over :func:`rows_digest_chunks` of the rows [0, tree_size): cheap enough
    to re-check a cached figure (stored leaf hashes are not read: a figure never uses them,
    and verification recomputes them); :func:`change_token` says when even that re-reading
    can be skipped."""
    return hashlib.sha256(b"".join(rows_digest_chunks(store, tree_size))).digest()


# -- "was anything committed to the database since?" -------------------------------------
_held: weakref.WeakKeyDictionary[Any, tuple[threading.Lock, Any]] = weakref.WeakKeyDictionary()
_held_lock = threading.Lock()


def change_token(store: LedgerStore) -> tuple | None:
    """A value that differs after anything was committed to the ledger's database since it
    was last read, or None where the database gives no such value (then every check re-reads
    the rows). Two equal tokens mean that no transaction changed any row in between, so a
    digest of the rows (or a verification of them) taken after the first reading still
    holds at the second: re-reading them would give the same.

    SQLite: ``PRAGMA data_version`` of a connection of its own that never writes (it changes
    when any other connection, of this process or another, commits) and the identity, time
    and size of the database file and of its write-ahead log (a file swapped for another,
    or edited in place around SQLite, is a change). PostgreSQL: the server's current
    WAL position (every committed change moves it)."""
    engine = store.engine
    if engine.dialect.name == "sqlite":
        path = engine.url.database
        if not path or path == ":memory:":
            return None
        with _held_lock:
            held = _held.get(engine)
            if held is None:
                raw = engine.raw_connection()
                raw.detach()  # out of the pool: this connection only reads data_version
                held = _held[engine] = (threading.Lock(), raw)
        lock, raw = held
        with lock:
            cur = raw.cursor()
            try:
                (version,) = cur.execute("PRAGMA data_version").fetchone()
            finally:
                cur.close()
        try:
            st = os.stat(path)
        except OSError:
            return None
        # a write that bypassed SQLite (the file edited in place) leaves data_version as it
        # was; it does change the file's, or its write-ahead log's, time or size
        files: list[tuple[int, ...] | None] = [(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)]
        try:
            wal = os.stat(path + "-wal")
            files.append((wal.st_ino, wal.st_mtime_ns, wal.st_size))
        except OSError:
            files.append(None)
        return ("sqlite", id(raw), version, *files)
    if engine.dialect.name == "postgresql":
        from sqlalchemy import text  # noqa: PLC0415

        try:
            with engine.connect() as conn:
                lsn = conn.scalar(text("SELECT pg_current_wal_lsn()::text"))
        except Exception:  # noqa: BLE001 - a standby, or not allowed: no shortcut
            return None
        return ("postgresql", str(engine.url), lsn)
    return None


# the last successful verification per database and key, in this process only (never read
# from a file someone could write): the next one resumes from it
_memo: weakref.WeakKeyDictionary[Any, dict[str, tuple[tuple | None, list[bytes], Verified]]] = (
    weakref.WeakKeyDictionary()
)


def remembered(store: LedgerStore, verifier_key: str) -> bool:
    """Has this process verified this ledger successfully already (a later verification
    resumes from it)?"""
    with _held_lock:
        return verifier_key in _memo.get(store.engine, {})


def _resumable(
    store: LedgerStore, verifier_key: str, token: tuple | None
) -> tuple[Verified | None, list[bytes], int]:
    """The state of this process's last successful verification if the rows it covered are
    unchanged since — nothing was committed at all (the same :func:`change_token`), or else
    the digests of those rows, leaf hashes included, read again now, equal the ones taken
    then — and the chunk digests of the rows [0, size) as they are now (taken *before* the
    rows are verified, so a row changed later differs from them), to keep with the next
    state. (None, digests, size) when the verification must start from entry 0."""
    with _held_lock:
        prev = _memo.get(store.engine, {}).get(verifier_key)
    if prev is not None and token is not None and prev[0] == token:
        return prev[2], prev[1], prev[2].entries
    head = store.head_size()
    if prev is not None and prev[2].entries <= head:
        _, chunks, state = prev
        now = rows_digest_chunks(store, state.entries, leaf_hashes=True)
        if now == chunks:
            full = state.entries // _DIGEST_CHUNK
            rest = rows_digest_chunks(store, head, start_chunk=full, leaf_hashes=True)
            return state, now[:full] + rest, head
    return None, rows_digest_chunks(store, head, leaf_hashes=True), head


def verify_with_state(
    store: LedgerStore,
    verifier_key: str,
    *,
    kept: Sequence[str] = (),
    state: Path | None = None,
    remember: bool = False,
    also: Callable[[VerifyResult], None] | None = None,
) -> VerifyResult:
    """`nsdx audit verify --state` as one function (the CLI and the portal call it): verify
    against the database's checkpoints, the checkpoints ``kept`` outside the database, and
    the one remembered in ``state`` from the last successful run; on success the latest
    signed checkpoint is remembered there for the next run (as a transparency-log monitor
    does, so removing the newest entries with their checkpoints is caught). Signs nothing."""
    external = list(kept)
    if state is not None and state.exists():
        external.append(state.read_text(encoding="utf-8"))
    out: list[Verified] = []
    if remember:
        token = change_token(store)  # read before the rows: any commit after it changes it
        resume, chunks, size = _resumable(store, verifier_key, token)
        res = verify_ledger(
            store, verifier_key, external_checkpoints=external, resume=resume, out=out
        )
        if out and out[0].entries == size:  # the digests cover exactly what was verified
            with _held_lock:
                _memo.setdefault(store.engine, {})[verifier_key] = (token, chunks, out[0])
    else:
        res = verify_ledger(store, verifier_key, external_checkpoints=external)
    if also is not None:  # more checks (the witnesses') before anything is remembered
        also(res)
    if res.ok and state is not None:
        latest = store.latest_checkpoint()
        if latest is not None:
            state.parent.mkdir(parents=True, exist_ok=True)
            tmp = state.with_suffix(state.suffix + ".tmp")
            tmp.write_text(latest.note, encoding="utf-8")
            tmp.replace(state)
    return res
