"""RFC 9162 §2.1.1 hashing and tree shape: the primitives the Merkle tree
(:mod:`exchange.ledger.merkle`) and the proof verifiers (:mod:`exchange.ledger.proofs`) share.

::

    leaf hash = SHA-256(0x00 || leaf bytes)
    node hash = SHA-256(0x01 || left || right)
    MTH({})   = SHA-256("")
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "is_valid_subtree",
    "leaf_hash",
    "node_hash",
    "root_from_packed",
]

HASH_SIZE = 32
MAX_TREE_SIZE = (1 << 64) - 1  # sizes and indices are uint64 in every interoperable format
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data), RFC 9162 §2.1.1."""
    return _sha256(b"\x00" + bytes(data)).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), RFC 9162 §2.1.1."""
    return _sha256(b"\x01" + left + right).digest()


def _fold(packed: bytes | bytearray, rounds: int) -> bytes:
    """Hash adjacent pairs of packed hashes ``rounds`` times.

    ``packed`` holds ``m * 2**rounds`` hashes; the result holds the ``m`` perfect-subtree
    hashes ``rounds`` levels up. This is the hot loop: one list comprehension per level.
    """
    buf = bytes(packed)
    for _ in range(rounds):
        buf = b"".join(
            [_sha256(b"\x01" + buf[i : i + 64]).digest() for i in range(0, len(buf), 64)]
        )
    return buf


def root_from_packed(packed: bytes | bytearray | memoryview) -> bytes:
    """MTH over leaf hashes packed back to back (32 bytes each)."""
    buf = bytes(packed)
    if len(buf) % HASH_SIZE:
        raise ValueError(
            f"packed leaf hashes must be a multiple of {HASH_SIZE} bytes, got {len(buf)}"
        )
    if not buf:
        return EMPTY_ROOT
    # Pairing from the left and carrying an odd last node up unchanged builds exactly
    # the RFC 6962 tree (k = largest power of two smaller than n at every split).
    while len(buf) > HASH_SIZE:
        even = len(buf) - len(buf) % 64
        nxt = b"".join([_sha256(b"\x01" + buf[i : i + 64]).digest() for i in range(0, even, 64)])
        buf = nxt + buf[even:] if even != len(buf) else nxt
    return buf


def _pack(hashes: Sequence[bytes]) -> bytes:
    if any(len(h) != HASH_SIZE for h in hashes):
        raise ValueError(f"every leaf hash must be {HASH_SIZE} bytes")
    return b"".join(hashes)


def _check_hash(name: str, value: bytes) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{name} must be bytes, got {type(value).__name__}")
    if len(value) != HASH_SIZE:
        raise ValueError(f"{name} must be {HASH_SIZE} bytes, got {len(value)}")


def _check_uint(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_TREE_SIZE:
        raise ValueError(f"{name} must be in [0, 2**64), got {value}")


def _split(n: int) -> int:
    """The largest power of two strictly smaller than n (n > 1), RFC 9162 §2.1.1's k."""
    return 1 << ((n - 1).bit_length() - 1)


def is_valid_subtree(start: int, end: int) -> bool:
    """[start, end) is a subtree in the MTC draft's sense.

    0 <= start < end and start is a multiple of BIT_CEIL(end - start); these are exactly
    the ranges whose MTH is a node (or a "right edge" node) of every tree that holds them.
    """
    if start < 0 or start >= end:
        return False
    width = 1 << (end - start - 1).bit_length()  # BIT_CEIL(end - start)
    return start % width == 0
