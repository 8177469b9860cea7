"""The ledger as C2SP tlog-tiles (https://c2sp.org/tlog-tiles): static files anyone can
mirror, from which an inclusion or consistency proof at any published size is computed
without asking the exchange.

::

    <prefix>/checkpoint                    the signed (and cosigned) checkpoint note
    <prefix>/tile/<L>/<N>[.p/<W>]          hash tiles
    <prefix>/tile/entries/<N>[.p/<W>]      entry bundles

A tile at level ``L``, index ``N`` holds the RFC 6962 hashes of the perfect subtrees at tree
level ``8·L`` with indices ``[256·N, 256·N + W)``, 32 bytes each, back to back (level 0: the
leaf hashes). ``W`` = 256 is a *full* tile (immutable: the log only grows); the last tile of
a level at a tree size is *partial*, ``.p/<W>`` with 1 ≤ W ≤ 255. ``N`` is written in
zero-padded groups of three digits, all but the last prefixed by ``x``: 1234067 →
``x001/x234/067``. An entry bundle holds the entries [256·N, 256·N + W), each as a
big-endian uint16 length and the entry's bytes (our canonical-JSON leaves).

Tile hashes are exactly what the store keeps (``ledger_tiles`` at levels 8, 16, …, leaf
hashes at level 0), read through :meth:`LedgerStore.read_hashes`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import TileNotFound
from .note import NoteError, parse_checkpoint

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "TileRef",
    "encode_index",
    "entry_bundle",
    "export_tiles",
    "parse_tile_path",
    "read_tile",
    "tiles_for_size",
    "verify_tiles",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
HASH_SIZE = 32
#: Tile levels of a uint64 tree: level 7 holds the hashes at tree level 56.
MAX_LEVEL = 7
MAX_TILE_PATH = 128  # "tile/entries/" + 7 groups + ".p/255" is well below
MAX_ENTRY_BYTES = 0xFFFF  # an entry bundle's uint16 length prefix
_GROUP_LAST = re.compile(r"[0-9]{3}")
_GROUP = re.compile(r"x[0-9]{3}")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")


def encode_index(n: int) -> str:
    """``N`` in tlog-tiles path form: 1234067 → ``x001/x234/067``, 5 → ``005``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"a tile index is a non-negative int, got {n!r}")
    digits = str(n)
    digits = "0" * (-len(digits) % 3) + digits
    groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
    return "/".join([f"x{g}" for g in groups[:-1]] + [groups[-1]])


@dataclass(frozen=True)
class TileRef:
    """One tile (``level`` 0–7) or entry bundle (``level`` None): index and width."""

    level: int | None
    index: int
    width: int = TILE_WIDTH

    @property
    def entries(self) -> bool:
        return self.level is None

    @property
    def full(self) -> bool:
        return self.width == TILE_WIDTH

    @property
    def path(self) -> str:
        """The path under the prefix, e.g. ``tile/0/x001/234.p/17``."""
        kind = "entries" if self.level is None else str(self.level)
        tail = "" if self.full else f".p/{self.width}"
        return f"tile/{kind}/{encode_index(self.index)}{tail}"

    @property
    def hash_level(self) -> int:
        """The tree level of the hashes in the tile (entry bundles: the leaves' 0)."""
        return 0 if self.level is None else self.level * TILE_HEIGHT

    def available(self, size: int) -> bool:
        """Whether the tile exists in a tree of ``size`` leaves."""
        return (self.index * TILE_WIDTH + self.width) << self.hash_level <= size


def parse_tile_path(path: str) -> TileRef:
    """The tile a path under the prefix names (``tile/...``); :class:`TileNotFound` for
    anything that is not the one canonical spelling of a tile."""
    if not isinstance(path, str) or len(path) > MAX_TILE_PATH:
        raise TileNotFound("not a tile path")
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise TileNotFound(f"not a tile path: {path[:60]!r}", hint="tile/<L>/<N>[.p/<W>]")
    kind, rest = parts[1], parts[2:]
    if kind == "entries":
        level = None
    elif kind.isdigit() and kind.isascii() and str(int(kind)) == kind and int(kind) <= MAX_LEVEL:
        level = int(kind)
    else:
        raise TileNotFound(f"no tile level {kind[:10]!r}", hint=f"levels are 0 to {MAX_LEVEL}")
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        w = rest[-1]
        if not _WIDTH.fullmatch(w) or int(w) >= TILE_WIDTH:
            raise TileNotFound(f"a partial tile's width is 1 to 255, got {w[:10]!r}")
        width = int(w)
        rest = rest[:-2] + [rest[-2][:-2]]
    if (
        not rest
        or not _GROUP_LAST.fullmatch(rest[-1])
        or not all(_GROUP.fullmatch(g) for g in rest[:-1])
    ):
        raise TileNotFound(f"malformed tile index in {path[:60]!r}", hint="e.g. x001/x234/067")
    index = int("".join(g.lstrip("x") for g in rest))
    ref = TileRef(level, index, width)
    if ref.path != path:  # x000/... or other non-canonical spellings
        raise TileNotFound(f"not the canonical tile path: {path[:60]!r} (it is {ref.path!r})")
    return ref


def tiles_for_size(size: int, *, entries: bool = False) -> Iterator[TileRef]:
    """Every tile of a tree of ``size`` leaves (full tiles, then the partial one, level by
    level); with ``entries``, the entry bundles too (last)."""
    for level in range(MAX_LEVEL + 1):
        n = size >> (level * TILE_HEIGHT)
        if n == 0:
            break
        full, rest = divmod(n, TILE_WIDTH)
        for i in range(full):
            yield TileRef(level, i)
        if rest:
            yield TileRef(level, full, rest)
    if entries:
        full, rest = divmod(size, TILE_WIDTH)
        for i in range(full):
            yield TileRef(None, i)
        if rest:
            yield TileRef(None, full, rest)


def _check(ref: TileRef, size: int) -> None:
    if not ref.available(size):
        raise TileNotFound(
            f"{ref.path} is beyond the ledger's {size} entries",
            hint="fetch the checkpoint first; its size says which tiles exist",
        )


def read_tile(store, ref: TileRef, size: int | None = None) -> bytes:
    """The bytes of a hash tile, from the store (``size``: the tree size to allow; default
    the head size)."""
    if ref.level is None:
        return entry_bundle(store, ref, size)
    _check(ref, store.head_size() if size is None else size)
    lo = ref.index * TILE_WIDTH
    data = store.read_hashes(ref.hash_level, lo, lo + ref.width)
    assert len(data) == ref.width * HASH_SIZE
    return data


def entry_bundle(store, ref: TileRef, size: int | None = None) -> bytes:
    """The bytes of an entry bundle: each entry as a big-endian uint16 length and its
    canonical-JSON bytes (the leaf the leaf hash is taken of)."""
    if ref.level is not None:
        raise ValueError("not an entry bundle")
    _check(ref, store.head_size() if size is None else size)
    lo = ref.index * TILE_WIDTH
    out = bytearray()
    n = 0
    for idx, payload, _ in store.iter_rows(lo + ref.width, start=lo, batch=TILE_WIDTH):
        data = payload.encode("utf-8")
        if len(data) > MAX_ENTRY_BYTES:  # pragma: no cover - no event is that large
            raise TileNotFound(f"entry {idx} is over {MAX_ENTRY_BYTES} bytes: no bundle holds it")
        out += len(data).to_bytes(2, "big") + data
        n += 1
    if n != ref.width:
        raise TileNotFound(
            f"{ref.path}: the ledger has a gap there", hint="run `nsdx audit verify`"
        )
    return bytes(out)


def checkpoint_size(note: str) -> int:
    """The tree size of a checkpoint note (its signatures are not checked here)."""
    split = note.rfind("\n\n")
    try:
        return parse_checkpoint(note[: split + 1] if split >= 0 else note).size
    except NoteError as e:
        raise TileNotFound(f"not a checkpoint note: {e}") from None


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


@dataclass
class ExportResult:
    tree_size: int
    written: int  # tiles and bundles written by this run
    kept: int  # full ones already there (immutable: not rewritten)
    entries: bool

    def to_dict(self) -> dict:
        return {
            "tree_size": self.tree_size,
            "written": self.written,
            "kept": self.kept,
            "entries": self.entries,
        }


def export_tiles(store, note: str, dest: Path, *, entries: bool = False) -> ExportResult:
    """Write the tiles of the checkpoint ``note``'s tree (and with ``entries`` the entry
    bundles) under ``dest``, then ``dest/checkpoint``: a directory any web server can
    serve as the log. Full tiles already present are kept (they never change); the
    checkpoint is written last, so a reader never sees one whose tiles are missing."""
    size = checkpoint_size(note)
    head = store.head_size()
    if size > head:
        raise TileNotFound(f"the checkpoint's size {size} is beyond the ledger's {head} entries")
    root = store.root_at(size)
    if root != parse_checkpoint(note[: note.rfind("\n\n") + 1]).root:
        raise TileNotFound(
            f"the checkpoint's root at size {size} is not the ledger's: not exporting it",
            hint="run `nsdx audit verify`",
        )
    dest = Path(dest)
    written = kept = 0
    for ref in tiles_for_size(size, entries=entries):
        path = dest / ref.path
        if ref.full and path.is_file():
            kept += 1
            continue
        _write(path, read_tile(store, ref, size))
        written += 1
    _write(dest / "checkpoint", note.encode("utf-8"))
    return ExportResult(size, written, kept, entries)


@dataclass
class TilesCheck:
    """What :func:`verify_tiles` established about a folder of tiles."""

    tree_size: int
    root: bytes
    tiles: int
    entry_bundles: int
    cosigners: list[str]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        import base64

        return {
            "ok": self.ok,
            "tree_size": self.tree_size,
            "root": base64.b64encode(self.root).decode(),
            "tiles": self.tiles,
            "entry_bundles": self.entry_bundles,
            "cosigners": self.cosigners,
            "problems": self.problems,
        }


def _bundle_entries(data: bytes) -> list[bytes] | None:
    out, pos = [], 0
    while pos < len(data):
        if pos + 2 > len(data):
            return None
        n = int.from_bytes(data[pos : pos + 2], "big")
        if pos + 2 + n > len(data):
            return None
        out.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    return out


def verify_tiles(
    dest: Path, log_key: str, witness_keys: Sequence[str] = (), quorum: int = 0
) -> TilesCheck:
    """Check a whole folder of tiles (an official's audit of an export or a mirror, no
    database): the checkpoint is signed by ``log_key`` and cosigned by ``quorum`` of the
    witnesses; the level-0 tiles hash to its root; every higher tile holds the hashes of
    the tiles below; every entry bundle present holds entries whose leaf hashes are the
    level-0 tile. Reads every tile once (the leaf hashes are held in memory: 32 bytes an
    entry)."""
    from ..witness.cosignature import parse_cosigner_verifier, verify_cosignatures
    from .merkle import MerkleTree, leaf_hash
    from .note import open_note

    dest = Path(dest)
    problems: list[str] = []
    try:
        note = (dest / "checkpoint").read_text(encoding="utf-8")
        body, _ = open_note(note, log_key)
        cp = parse_checkpoint(body)
        cosigners = sorted(
            verify_cosignatures(
                body, note[len(body) + 1 :], [parse_cosigner_verifier(k) for k in witness_keys]
            )
        )
    except (OSError, UnicodeDecodeError, NoteError) as e:
        return TilesCheck(0, b"", 0, 0, [], [f"checkpoint: {e}"])
    if len(cosigners) < quorum:
        problems.append(f"{len(cosigners)} witnesses cosigned the checkpoint; {quorum} needed")
    tree = MerkleTree()
    count = bundles = 0
    for ref in tiles_for_size(cp.size):
        path = dest / ref.path
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            problems.append(f"{ref.path} is missing")
            continue
        count += 1
        if len(data) != ref.width * HASH_SIZE:
            problems.append(f"{ref.path} holds {len(data)} bytes, not {ref.width * HASH_SIZE}")
            continue
        lo = ref.index * TILE_WIDTH
        if ref.level == 0:
            if len(tree) == lo:
                tree.extend_packed(data)
            continue
        if (lo + ref.width) << ref.hash_level > len(tree):
            continue  # a level-0 tile is missing (reported above)
        want = b"".join(tree.node(ref.hash_level, i) for i in range(lo, lo + ref.width))
        if data != want:
            problems.append(f"{ref.path} does not hold the hashes of the tiles below it")
    if len(tree) == cp.size and tree.root() != cp.root:
        problems.append("the level-0 tiles do not hash to the checkpoint's root")
    for ref in tiles_for_size(cp.size, entries=True):
        path = dest / ref.path
        if ref.level is not None or not path.is_file():
            continue
        bundles += 1
        entries = _bundle_entries(path.read_bytes())
        lo = ref.index * TILE_WIDTH
        if entries is None or len(entries) != ref.width:
            problems.append(f"{ref.path} is not a bundle of {ref.width} entries")
        elif len(tree) >= lo + ref.width and any(
            leaf_hash(e) != tree.leaf(lo + i) for i, e in enumerate(entries)
        ):
            problems.append(f"{ref.path} holds entries that are not the logged ones")
    return TilesCheck(cp.size, cp.root, count, bundles, cosigners, problems)
