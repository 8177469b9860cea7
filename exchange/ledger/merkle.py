"""RFC 6962 / RFC 9162 Merkle trees: roots, the compact range, the cached tree and proof
generation.

Proof *generation* needs the hashes of complete ("perfect") subtrees: the subtree at
``(level, index)`` covers leaves ``[index * 2**level, (index + 1) * 2**level)``. Anything
that can answer ``node(level, index) -> bytes`` can back a proof: a :class:`MerkleTree`
(cached, fast), a list of leaf hashes (hashes on demand, O(n) per proof), a packed
``bytes`` of leaf hashes, or a callable (e.g. one that reads stored hashes from a
database).

The module is split by responsibility; this one re-exports the others so that
``exchange.ledger.merkle`` still offers every name:

* :mod:`exchange.ledger.hashing` — RFC 9162 §2.1.1 leaf and node hashes, ``root_from_packed``,
  subtree shape (:func:`is_valid_subtree`);
* :mod:`exchange.ledger.proofs` — proof *verification* (RFC 9162 §2.1.3.2, §2.1.4.2 and the
  MTC draft's subtree proofs) and :class:`ProofError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeGuard

from .hashing import (
    EMPTY_ROOT,
    HASH_SIZE,
    _check_hash,
    _check_uint,
    _fold,
    _pack,
    _sha256,
    _split,
    is_valid_subtree,
    leaf_hash,
    node_hash,
    root_from_packed,
)
from .proofs import (
    ProofError,
    verify_consistency,
    verify_inclusion,
    verify_subtree_consistency,
    verify_subtree_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "MerkleTree",
    "NodeSource",
    "ProofError",
    "consistency_proof",
    "inclusion_proof",
    "is_valid_subtree",
    "leaf_hash",
    "node_hash",
    "root",
    "root_from_packed",
    "subtree_consistency_proof",
    "subtree_hash",
    "subtree_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
    "verify_subtree_consistency",
    "verify_subtree_inclusion",
]

#: ``node(level, index) -> hash`` of the perfect subtree over leaves
#: ``[index << level, (index + 1) << level)``.
NodeReader = Callable[[int, int], bytes]


# --------------------------------------------------------------------------- roots


def root(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH (RFC 9162 §2.1.1) over an iterable of 32-byte leaf hashes.

    Lists are hashed level by level; other iterables are streamed in chunks through a
    :class:`CompactRange`, so memory stays O(chunk + log n).
    """
    if isinstance(leaf_hashes, bytes | bytearray | memoryview | str):
        raise TypeError(
            "root() takes an iterable of 32-byte leaf hashes; use root_from_packed() for packed bytes"
        )
    if isinstance(leaf_hashes, Sequence):
        return root_from_packed(_pack(leaf_hashes))
    acc = CompactRange()
    acc.extend(leaf_hashes)
    return acc.root()


# --------------------------------------------------------------------------- compact range


class CompactRange:
    """The perfect-subtree hashes ("frontier") of the leaves [0, size).

    Appending costs O(1) hashes amortised and memory is O(log n): one hash per set bit of
    ``size``. ``(size, hashes)`` is small enough to store beside a checkpoint and reload
    with ``CompactRange(size, hashes)``.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        _check_uint("size", size)
        hashes = [bytes(h) for h in hashes]
        if len(hashes) != size.bit_count():
            raise ValueError(
                f"a compact range of size {size} holds {size.bit_count()} hashes, got {len(hashes)}"
            )
        for h in hashes:
            _check_hash("hash", h)
        self._size = size
        self._hashes = hashes

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> list[bytes]:
        """Perfect-subtree roots, largest (leftmost) first."""
        return list(self._hashes)

    def copy(self) -> CompactRange:
        return CompactRange(self._size, self._hashes)

    def _push(self, level: int, h: bytes) -> None:
        # size is a multiple of 2**level here; merge with equal-sized left neighbours.
        s = self._size >> level
        while s & 1:
            h = _sha256(b"\x01" + self._hashes.pop() + h).digest()
            s >>= 1
        self._hashes.append(h)
        self._size += 1 << level

    def append(self, leaf_hash: bytes) -> None:
        _check_hash("leaf_hash", leaf_hash)
        self._push(0, bytes(leaf_hash))

    def append_packed(self, packed: bytes | bytearray | memoryview) -> None:
        """Append leaf hashes packed back to back, hashing whole aligned blocks at a time."""
        buf = bytes(packed)
        if len(buf) % HASH_SIZE:
            raise ValueError(f"packed leaf hashes must be a multiple of {HASH_SIZE} bytes")
        pos, count = 0, len(buf) // HASH_SIZE
        while pos < count:
            remaining = count - pos
            level = remaining.bit_length() - 1
            if self._size:
                level = min(level, (self._size & -self._size).bit_length() - 1)
            block = buf[pos * HASH_SIZE : (pos + (1 << level)) * HASH_SIZE]
            self._push(level, _fold(block, level))
            pos += 1 << level

    def extend(self, leaf_hashes: Iterable[bytes], chunk: int = 1 << 16) -> None:
        batch: list[bytes] = []
        for h in leaf_hashes:
            _check_hash("leaf_hash", h)
            batch.append(bytes(h))
            if len(batch) == chunk:
                self.append_packed(b"".join(batch))
                batch.clear()
        if batch:
            self.append_packed(b"".join(batch))

    def root(self) -> bytes:
        """MTH of the leaves [0, size)."""
        if not self._hashes:
            return EMPTY_ROOT
        r = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            r = _sha256(b"\x01" + h + r).digest()
        return r


# --------------------------------------------------------------------------- cached tree


class MerkleTree:
    """An append-only tree over leaf hashes with perfect-subtree hashes cached every
    ``stride`` levels.

    Levels 0, stride, 2*stride, ... are kept as packed ``bytearray`` (32 bytes a hash), so
    any perfect-subtree hash costs at most ``2**stride - 1`` node hashes and a proof at any
    size costs O(log n * 2**stride). With the default stride 4 the cache adds about 1/15
    of the leaf storage (1M leaves: 32 MB of leaf hashes + ~2 MB of cached nodes).
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = (), *, stride: int = 4) -> None:
        if not 1 <= stride <= 16:
            raise ValueError("stride must be between 1 and 16")
        self._stride = stride
        self._levels: list[bytearray] = [bytearray()]
        self.extend(leaf_hashes)

    @classmethod
    def from_packed(cls, packed: bytes | bytearray | memoryview, *, stride: int = 4) -> MerkleTree:
        tree = cls(stride=stride)
        tree.extend_packed(packed)
        return tree

    def __len__(self) -> int:
        return len(self._levels[0]) // HASH_SIZE

    @property
    def size(self) -> int:
        return len(self)

    def leaf(self, index: int) -> bytes:
        if not 0 <= index < len(self):
            raise IndexError(f"leaf index {index} out of range for tree size {len(self)}")
        return bytes(self._levels[0][index * HASH_SIZE : (index + 1) * HASH_SIZE])

    def append(self, leaf_hash: bytes) -> int:
        """Append one leaf hash; return its index."""
        _check_hash("leaf_hash", leaf_hash)
        self.extend_packed(bytes(leaf_hash))
        return len(self) - 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        batch: list[bytes] = []
        for h in leaf_hashes:
            _check_hash("leaf_hash", h)
            batch.append(bytes(h))
            if len(batch) == 1 << 16:
                self.extend_packed(b"".join(batch))
                batch.clear()
        if batch:
            self.extend_packed(b"".join(batch))

    def extend_packed(self, packed: bytes | bytearray | memoryview) -> None:
        """Append leaf hashes packed back to back (e.g. ``b"".join(rows)`` from a table)."""
        if len(packed) % HASH_SIZE:
            raise ValueError(f"packed leaf hashes must be a multiple of {HASH_SIZE} bytes")
        self._levels[0] += packed
        group = (1 << self._stride) * HASH_SIZE
        j = 0
        while True:
            below = self._levels[j]
            if len(below) < group:
                break
            if j + 1 == len(self._levels):
                self._levels.append(bytearray())
            above = self._levels[j + 1]
            done = len(above) // HASH_SIZE
            complete = len(below) // group
            if complete == done:
                break
            above += _fold(below[done * group : complete * group], self._stride)
            j += 1

    def node(self, level: int, index: int) -> bytes:
        """Hash of the perfect subtree over leaves [index << level, (index + 1) << level)."""
        if level < 0 or index < 0 or (index + 1) << level > len(self):
            raise IndexError(
                f"no complete subtree at level {level}, index {index} in a tree of size {len(self)}"
            )
        j, r = divmod(level, self._stride)
        width = (1 << r) * HASH_SIZE
        return _fold(self._levels[j][index * width : (index + 1) * width], r)

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default: all)."""
        size = len(self) if size is None else size
        if not 0 <= size <= len(self):
            raise ValueError(f"size {size} is beyond the tree size {len(self)}")
        return _range_hash(0, size, self.node)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return inclusion_proof(index, len(self) if size is None else size, self)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        return consistency_proof(size1, len(self) if size2 is None else size2, self)


# --------------------------------------------------------------------------- node sources

#: What proof generators accept: a :class:`MerkleTree`, a sequence of leaf hashes,
#: packed leaf hashes (32 bytes each, back to back) or a :data:`NodeReader` callable.
NodeSource = MerkleTree | Sequence[bytes] | bytes | bytearray | memoryview | NodeReader


def _is_leaf_list(source: object) -> TypeGuard[Sequence[bytes]]:
    """A sequence of leaf hashes (not packed bytes, which are a sequence of ints)."""
    return isinstance(source, Sequence) and not isinstance(source, bytes | bytearray | memoryview)


def _reader_for(source: NodeSource, size: int) -> NodeReader:
    if isinstance(source, MerkleTree):
        if size > len(source):
            raise ValueError(f"size {size} is beyond the tree size {len(source)}")
        return source.node
    if isinstance(source, bytes | bytearray | memoryview):
        packed = bytes(source)
        if len(packed) % HASH_SIZE or size > len(packed) // HASH_SIZE:
            raise ValueError(
                f"packed leaf hashes hold {len(packed) / HASH_SIZE:g} leaves, need {size}"
            )

        def packed_node(level: int, index: int) -> bytes:
            width = (1 << level) * HASH_SIZE
            return _fold(packed[index * width : (index + 1) * width], level)

        return packed_node
    if _is_leaf_list(source):
        leaves = source
        if size > len(leaves):
            raise ValueError(f"{len(leaves)} leaf hashes given, need {size}")

        def list_node(level: int, index: int) -> bytes:
            block = leaves[index << level : (index + 1) << level]
            return _fold(_pack(block), level)

        return list_node
    if callable(source):
        return source
    raise TypeError(f"cannot read subtree hashes from {type(source).__name__}")


def _range_hash(start: int, end: int, node: NodeReader) -> bytes:
    """MTH(D[start:end]) for a valid subtree range (start aligned to BIT_CEIL(end-start))."""
    if start == end:
        return EMPTY_ROOT
    parts: list[bytes] = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        parts.append(node(level, start >> level))
        start += 1 << level
    r = parts[-1]
    for h in reversed(parts[:-1]):
        r = _sha256(b"\x01" + h + r).digest()
    return r


def subtree_hash(start: int, end: int, source: NodeSource) -> bytes:
    """MTH(D[start:end]) for a valid subtree (see :func:`is_valid_subtree`)."""
    if not is_valid_subtree(start, end):
        raise ValueError(f"[{start}, {end}) is not a valid subtree")
    return _range_hash(start, end, _reader_for(source, end))


# --------------------------------------------------------------------------- proof generation


def _path(m: int, base: int, n: int, node: NodeReader) -> list[bytes]:
    """PATH(m, D[base:base+n]), RFC 9162 §2.1.3.1, bottom-up."""
    proof: list[bytes] = []
    while n > 1:
        k = _split(n)
        if m < k:
            proof.append(_range_hash(base + k, base + n, node))
            n = k
        else:
            proof.append(_range_hash(base, base + k, node))
            m, base, n = m - k, base + k, n - k
    proof.reverse()
    return proof


def inclusion_proof(index: int, size: int, source: NodeSource) -> list[bytes]:
    """The RFC 9162 §2.1.3.1 inclusion proof for leaf ``index`` in the tree of ``size``."""
    _check_uint("index", index)
    _check_uint("size", size)
    if index >= size:
        raise ValueError(f"index {index} is beyond tree size {size}")
    return _path(index, 0, size, _reader_for(source, size))


def consistency_proof(size1: int, size2: int, source: NodeSource) -> list[bytes]:
    """The RFC 9162 §2.1.4.1 consistency proof PROOF(size1, D[size2]).

    0 < size1 <= size2; for size1 == size2 the proof is empty.
    """
    _check_uint("size1", size1)
    _check_uint("size2", size2)
    if size1 == 0:
        raise ValueError(
            "a consistency proof from the empty tree is meaningless (every tree extends it)"
        )
    if size1 > size2:
        raise ValueError(f"size1 {size1} is larger than size2 {size2}")
    return subtree_consistency_proof(0, size1, size2, source)  # SUBPROOF(m, D[n], true)


def subtree_inclusion_proof(index: int, start: int, end: int, source: NodeSource) -> list[bytes]:
    """Inclusion proof of leaf ``index`` in the subtree [start, end) (MTC draft §4.4.2):
    the RFC 9162 path for ``index - start`` in D[start:end]."""
    if not is_valid_subtree(start, end):
        raise ValueError(f"[{start}, {end}) is not a valid subtree")
    if not start <= index < end:
        raise ValueError(f"index {index} is outside the subtree [{start}, {end})")
    return _path(index - start, start, end - start, _reader_for(source, end))


def subtree_consistency_proof(start: int, end: int, size: int, source: NodeSource) -> list[bytes]:
    """SUBTREE_PROOF(start, end, D[size]) of the MTC draft §4.4.3: proves that the subtree
    [start, end) is part of the tree of ``size``. With start == 0 it equals PROOF(end, D[size])."""
    if not is_valid_subtree(start, end):
        raise ValueError(f"[{start}, {end}) is not a valid subtree")
    if end > size:
        raise ValueError(f"subtree end {end} is beyond tree size {size}")
    node = _reader_for(source, size)
    proof: list[bytes] = []
    base, n, known = 0, size, True
    while not (start == 0 and end == n):
        k = _split(n)
        if end <= k:
            proof.append(_range_hash(base + k, base + n, node))
            n = k
        elif start >= k:
            proof.append(_range_hash(base, base + k, node))
            start, end, base, n = start - k, end - k, base + k, n - k
        else:  # start == 0 < k < end: the left half lies inside the subtree
            proof.append(_range_hash(base, base + k, node))
            end, base, n, known = end - k, base + k, n - k, False
    if not known:
        proof.append(_range_hash(base, base + n, node))
    proof.reverse()
    return proof


# --------------------------------------------------------------------------- verification
