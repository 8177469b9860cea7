#!/usr/bin/env python3
"""Check an nsdx exchange receipt offline, trusting neither the exchange nor its portal.

One file, Python 3.10 or later, standard library only (Ed25519 is implemented below, after RFC 8032
§5.1.7). Copy it anywhere and run::

    python verify_receipt.py RECEIPT.json [--tiles DIR-or-URL] --log-key LOG_KEY \\
        [--witness-key WITNESS_KEY ...] [--quorum N] [--json]

* ``RECEIPT.json`` — what the exchange printed for a trade step with ``--json`` (or its
  ``receipt`` member): the entry, its index, an inclusion proof and the signed checkpoint.
* ``--tiles`` — the ledger as C2SP tlog-tiles: a folder written by
  ``nsdx ledger export-tiles DIR`` (or any mirror of it), or the URL of the portal's
  ``/log/`` prefix. Without it, the receipt's own checkpoint is the one that must carry
  the witnesses' cosignatures (a receipt given against a witnessed checkpoint).
* ``--log-key`` — the exchange's checkpoint verifier key (``nsdx audit pubkey``), obtained
  once from a source you trust (e.g. the bureau's website); ``--log-key-file`` reads it.
* ``--witness-key`` — a witness's verifier key (``nsdx witness init`` prints it; repeat for
  each); the published checkpoint must carry valid cosignatures by ``--quorum`` of them
  (default: a majority of the keys given; one public key under two names counts once).

It checks, and exits 0 only if all hold (1: a check failed; 2: could not run):

1. the entry in the receipt hashes (RFC 8785 canonical JSON, RFC 6962 leaf hash) to the
   receipt's leaf hash, and the receipt's inclusion proof leads to its checkpoint's root;
2. the receipt's checkpoint is signed by the log key;
3. the published checkpoint (``<tiles>/checkpoint``; without ``--tiles`` the receipt's own)
   is signed by the log key and cosigned by the quorum of witnesses;
4. (with ``--tiles``) from the tiles alone: the entry is in the published tree (an inclusion proof computed
   from the tiles verifies against the published root), and the receipt's tree is a prefix
   of the published one (a consistency proof from the tiles verifies against both roots).

The tiles themselves need no trust: every hash read from them is checked against signed
roots. See docs/ledger.md, "How a buyer checks a receipt offline".
"""

from __future__ import annotations

import argparse
import base64
import binascii
import decimal
import hashlib
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence

__all__ = ["Failed", "ed25519_verify", "main", "verify_receipt"]

MAX_CHECKPOINT = 64 * 1024
TILE_WIDTH = 256
TILE_HEIGHT = 8
SIG_PREFIX = "\u2014 "


class Failed(Exception):
    """A check failed: the receipt, the checkpoint or the tiles are not what they claim."""


class CannotRun(Exception):
    """Bad arguments or unreadable input (exit 2)."""


# ----------------------------------------------------------------- Ed25519 (RFC 8032)

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z


def _add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return e * f % _P, g * h % _P, f * g % _P, e * h % _P


def _mul(s: int, p: Point) -> Point:
    q: Point = (0, 1, 1, 0)
    while s:
        if s & 1:
            q = _add(q, p)
        p = _add(p, p)
        s >>= 1
    return q


def _x_of(y: int, sign: int) -> int | None:
    if y >= _P:
        return None
    x2 = (y * y - 1) * pow(_D * y * y + 1, _P - 2, _P) % _P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P:
        return None
    if x & 1 != sign:
        x = _P - x
    return x


def _decode_point(s: bytes) -> Point | None:
    y = int.from_bytes(s, "little")
    sign, y = y >> 255, y & ((1 << 255) - 1)
    x = _x_of(y, sign)
    return None if x is None else (x, y, 1, x * y % _P)


_GY = 4 * pow(5, _P - 2, _P) % _P
_GX = _x_of(_GY, 0)
assert _GX is not None
_G: Point = (_GX, _GY, 1, _GX * _GY % _P)


def _same(p: Point, q: Point) -> bool:
    return (p[0] * q[2] - q[0] * p[2]) % _P == 0 and (p[1] * q[2] - q[1] * p[2]) % _P == 0


def ed25519_verify(public: bytes, message: bytes, signature: bytes) -> bool:
    """RFC 8032 §5.1.7 Ed25519 verification ([S]B = R + [k]A, canonical encodings only)."""
    if len(public) != 32 or len(signature) != 64:
        return False
    a = _decode_point(public)
    r = _decode_point(signature[:32])
    s = int.from_bytes(signature[32:], "little")
    if a is None or r is None or s >= _L:
        return False
    k = int.from_bytes(hashlib.sha512(signature[:32] + public + message).digest(), "little") % _L
    return _same(_mul(s, _G), _add(r, _mul(k, a)))


# ----------------------------------------------------------------- signed notes


def _b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise Failed(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode() != text:
        raise Failed(f"{what} is not canonical base64")
    return raw


def parse_key(text: str, alg: int, what: str) -> tuple[str, int, bytes]:
    """``<name>+<key ID hex>+base64(alg || public key)`` → (name, key ID, public key)."""
    parts = text.strip().split("+", 2)
    if len(parts) != 3 or len(parts[1]) != 8:
        raise CannotRun(f"{what} must look like <name>+<8 hex digits>+<base64 key>")
    name, kid_hex, key64 = parts
    try:
        raw = _b64(key64, what)
        kid = int(kid_hex, 16)
    except (Failed, ValueError) as e:
        raise CannotRun(f"{what}: {e}") from None
    if len(raw) != 33 or raw[0] != alg:
        raise CannotRun(f"{what} is not a key of algorithm {alg:#04x} (+ 32 bytes)")
    digest = hashlib.sha256(name.encode() + b"\n" + raw).digest()
    if int.from_bytes(digest[:4], "big") != kid:
        raise CannotRun(f"{what}: the key ID does not match the name and key")
    return name, kid, raw[1:]


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """(body, [(signer name, signature bytes)]) of a signed note."""
    i = note.rfind("\n\n")
    if i < 0 or not note.endswith("\n"):
        raise Failed("not a signed note (no blank line before the signatures)")
    body, sigs = note[: i + 1], []
    for line in note[i + 2 : -1].split("\n"):
        if not line.startswith(SIG_PREFIX):
            raise Failed(f"malformed signature line {line[:40]!r}")
        name, _, sig64 = line[len(SIG_PREFIX) :].partition(" ")
        sigs.append((name, _b64(sig64, f"signature by {name}")))
    return body, sigs


def check_log_signature(note: str, key: tuple[str, int, bytes]) -> tuple[str, int, bytes]:
    """Verify the log's signature; return the checkpoint (origin, size, root)."""
    body, sigs = split_note(note)
    name, kid, public = key
    ok = False
    for who, sig in sigs:
        if who == name and len(sig) == 68 and int.from_bytes(sig[:4], "big") == kid:
            if not ed25519_verify(public, body.encode(), sig[4:]):
                raise Failed(f"the signature by {name} does not verify: the checkpoint was altered")
            ok = True
    if not ok:
        raise Failed(f"the checkpoint is not signed by the log key {name}")
    lines = body[:-1].split("\n")
    if len(lines) < 3 or not lines[1].isdigit() or str(int(lines[1])) != lines[1]:
        raise Failed("the note is not a tlog checkpoint (origin, size, root)")
    root = _b64(lines[2], "checkpoint root")
    if len(root) != 32:
        raise Failed("the checkpoint root is not 32 bytes")
    return lines[0], int(lines[1]), root


def check_cosignatures(note: str, witnesses: list[tuple[str, int, bytes]]) -> list[str]:
    """The names of the given witnesses whose cosignature/v1 on the note verifies, one per
    distinct public key (the same key under two names is one witness and counts once); a
    bad cosignature by a given witness fails."""
    body, sigs = split_note(note)
    good: list[str] = []
    counted: set[bytes] = set()
    for name, kid, public in witnesses:
        if public in counted:
            continue
        for who, sig in sigs:
            if who != name or len(sig) < 4 or int.from_bytes(sig[:4], "big") != kid:
                continue
            if len(sig) != 76:
                raise Failed(f"the cosignature by {name} is {len(sig)} bytes, not 76")
            ts = int.from_bytes(sig[4:12], "big")
            msg = f"cosignature/v1\ntime {ts}\n".encode() + body.encode()
            if not ed25519_verify(public, msg, sig[12:]):
                raise Failed(f"the cosignature by witness {name} does not verify")
            if name not in good:
                good.append(name)
                counted.add(public)
    return good


# ----------------------------------------------------------------- RFC 8785 / RFC 6962


def canonical_json(value: object) -> bytes:
    """RFC 8785 canonical JSON of the values the ledger holds (strings, integers, exact
    floats, booleans, null, arrays, objects)."""

    def enc(v: object) -> str:
        if v is None or isinstance(v, bool):
            return json.dumps(v)
        if isinstance(v, int):
            return str(v)
        if isinstance(v, float):
            if v != v or v in (float("inf"), float("-inf")):
                raise Failed("the entry holds a non-finite number")
            return _es_number(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, list):
            return "[" + ",".join(enc(x) for x in v) + "]"
        if isinstance(v, dict):
            keys = sorted(v, key=lambda k: k.encode("utf-16-be"))
            return "{" + ",".join(enc(k) + ":" + enc(v[k]) for k in keys) + "}"
        raise Failed(f"the entry holds a {type(v).__name__}")

    return enc(value).encode("utf-8")


def _es_number(x: float) -> str:
    """ECMAScript Number::toString (RFC 8785 §3.2.2.3) from Python's shortest repr."""
    if x == 0:
        return "0"
    shortest = repr(x)
    sign, rest = ("-", shortest[1:]) if shortest.startswith("-") else ("", shortest)
    _, digits_t, exp = decimal.Decimal(rest).as_tuple()
    assert isinstance(exp, int)
    digits = "".join(map(str, digits_t)).rstrip("0")
    exp += len(digits_t) - len(digits)
    digits = digits.lstrip("0")
    k = len(digits)
    n = exp + k  # value = 0.d1d2...dk * 10**n
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        mant = digits if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mant}e{'+' if n - 1 >= 0 else '-'}{abs(n - 1)}"
    return sign + body


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return _h(b"\x01" + left + right)


def _split(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def _hashes(*hashes: bytes) -> None:
    if any(len(h) != 32 for h in hashes):
        raise Failed("a hash in the proof or checkpoint is not 32 bytes")


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2."""
    _hashes(leaf, root, *proof)
    if not 0 <= index < size:
        raise Failed(f"index {index} is outside the tree of {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise Failed("the inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = _node(p, r)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = _node(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or r != root:
        raise Failed("the inclusion proof does not lead to the checkpoint's root")


def verify_consistency(
    size1: int, size2: int, proof: list[bytes], root1: bytes, root2: bytes
) -> None:
    """RFC 9162 §2.1.4.2 (size1 = 0 refused: every tree extends the empty one)."""
    _hashes(root1, root2, *proof)
    if not 0 < size1 <= size2:
        raise Failed(f"no consistency from {size1} to {size2}")
    if size1 == size2:
        if proof or root1 != root2:
            raise Failed("two checkpoints of the same size with different roots: a fork")
        return
    if not 0 < size1 < size2:
        raise Failed(f"no consistency from {size1} to {size2}")
    if (size1 & (size1 - 1)) == 0:  # a power of two: the old root starts the proof
        proof = [root1, *proof]
    if not proof:
        raise Failed("empty consistency proof")
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            raise Failed("the consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = _node(c, fr), _node(c, sr)
            while fn and not fn & 1:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = _node(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or fr != root1 or sr != root2:
        raise Failed(
            f"the tree of {size1} is not a prefix of the tree of {size2}: the log was rewritten"
        )


# ----------------------------------------------------------------- tiles


class Tiles:
    """Reads C2SP tlog-tiles from a folder or a URL prefix, for one tree size."""

    def __init__(self, source: str, timeout: float = 20.0) -> None:
        self.source = source.rstrip("/")
        self.remote = source.startswith(("http://", "https://"))
        self.timeout = timeout
        self._cache: dict[tuple[int, int, int], bytes] = {}
        if not self.remote and not os.path.isdir(source):
            raise CannotRun(f"{source} is neither a folder nor an http(s) URL")

    def fetch(self, path: str, limit: int) -> bytes:
        if self.remote:
            req = urllib.request.Request(
                f"{self.source}/{path}", headers={"User-Agent": "nsdx-verify"}
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    data = r.read(limit + 1)
            except urllib.error.HTTPError as e:
                raise Failed(f"{path}: the server answered {e.code}") from None
            except (urllib.error.URLError, OSError) as e:
                raise CannotRun(f"cannot fetch {self.source}/{path}: {e}") from None
        else:
            try:
                with open(os.path.join(self.source, *path.split("/")), "rb") as f:
                    data = f.read(limit + 1)
            except FileNotFoundError:
                raise Failed(f"{path} is missing from {self.source}") from None
            except OSError as e:
                raise CannotRun(f"cannot read {path}: {e}") from None
        if len(data) > limit:
            raise Failed(f"{path} is larger than {limit} bytes")
        return data

    @staticmethod
    def index_path(n: int) -> str:
        digits = str(n)
        digits = "0" * (-len(digits) % 3) + digits
        groups = [digits[i : i + 3] for i in range(0, len(digits), 3)]
        return "/".join([f"x{g}" for g in groups[:-1]] + [groups[-1]])

    def tile(self, level: int, index: int, size: int) -> bytes:
        """The hash tile (level, index) of the tree of ``size``, full or partial."""
        width = min(TILE_WIDTH, (size >> (level * TILE_HEIGHT)) - index * TILE_WIDTH)
        if width <= 0:
            raise Failed(f"tile {level}/{index} does not exist at size {size}")
        key = (level, index, width)
        if key not in self._cache:
            path = f"tile/{level}/{self.index_path(index)}"
            if width < TILE_WIDTH:
                path += f".p/{width}"
            data = self.fetch(path, 32 * TILE_WIDTH)
            if len(data) != 32 * width:
                raise Failed(f"{path} holds {len(data)} bytes, expected {32 * width}")
            self._cache[key] = data
        return self._cache[key]

    def reader(self, size: int) -> Callable[[int, int], bytes]:
        """node(level, index) of the perfect subtree over leaves [index << level, ...)."""

        def node(level: int, index: int) -> bytes:
            t, r = divmod(level, TILE_HEIGHT)
            lo = index << r
            data = self.tile(t, lo >> TILE_HEIGHT, size)
            off = lo % TILE_WIDTH
            buf = data[32 * off : 32 * (off + (1 << r))]
            for _ in range(r):
                buf = b"".join(
                    _node(buf[i : i + 32], buf[i + 32 : i + 64]) for i in range(0, len(buf), 64)
                )
            return buf

        return node


def _range_hash(start: int, end: int, node: Callable[[int, int], bytes]) -> bytes:
    """MTH(D[start:end]) for a range that is a subtree of every tree holding it."""
    parts = []
    while start < end:
        level = (end - start).bit_length() - 1
        if start:
            level = min(level, (start & -start).bit_length() - 1)
        parts.append(node(level, start >> level))
        start += 1 << level
    r = parts[-1]
    for h in reversed(parts[:-1]):
        r = _node(h, r)
    return r


def inclusion_proof(index: int, size: int, node: Callable[[int, int], bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(index, D[size])."""
    proof: list[bytes] = []
    base, m, n = 0, index, size
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


def consistency_proof(size1: int, size2: int, node: Callable[[int, int], bytes]) -> list[bytes]:
    """RFC 9162 §2.1.4.1 PROOF(size1, D[size2])."""
    proof: list[bytes] = []
    base, m, n, known = 0, size1, size2, True
    while m != n:
        k = _split(n)
        if m <= k:
            proof.append(_range_hash(base + k, base + n, node))
            n = k
        else:
            proof.append(_range_hash(base, base + k, node))
            m, base, n, known = m - k, base + k, n - k, False
    if not known:
        proof.append(_range_hash(base, base + n, node))
    proof.reverse()
    return proof


# ----------------------------------------------------------------- the receipt


def verify_receipt(
    receipt: dict,
    tiles: Tiles | None,
    log_key: str,
    witness_keys: Sequence[str] = (),
    quorum: int | None = None,
) -> dict:
    """Run every check (see the module's help); return what was established, or raise
    :class:`Failed` naming the first check that failed."""
    r = receipt.get("receipt", receipt)
    try:
        entry, index, size = r["entry"], int(r["index"]), int(r["tree_size"])
        note, leaf64, proof64 = r["checkpoint"], r["leaf_hash"], r["proof"]
        if not (isinstance(note, str) and isinstance(leaf64, str) and isinstance(proof64, list)):
            raise TypeError("checkpoint, leaf_hash or proof")
        if not all(isinstance(p, str) for p in proof64):
            raise TypeError("proof")
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CannotRun(f"not an nsdx receipt (missing or bad {e})") from None
    leaf = _b64(leaf64, "leaf hash")
    proof = [_b64(p, "proof hash") for p in proof64]
    log = parse_key(log_key, 0x01, "log key")
    wits = [parse_key(k, 0x04, "witness key") for k in witness_keys]
    distinct = len({public for _, _, public in wits})  # one key under two names: one witness
    need = quorum if quorum is not None else (distinct // 2 + 1 if wits else 0)
    if need > distinct or need < 0:
        raise CannotRun(
            f"a quorum of {need} needs at least {need} witness keys (distinct public keys; "
            f"{distinct} given)"
        )

    # 1-2: the receipt on its own
    if _h(b"\x00" + canonical_json(entry)) != leaf:
        raise Failed("the entry does not match the receipt's leaf hash: the entry was altered")
    origin, cp_size, cp_root = check_log_signature(note, log)
    if cp_size != size or base64.b64encode(cp_root).decode() != r.get("root", ""):
        raise Failed("the receipt's proof is not for its checkpoint")
    verify_inclusion(index, size, leaf, proof, cp_root)

    # 3: the published checkpoint (without tiles: the receipt's own), signed and cosigned
    if tiles is None:
        published = note
    else:
        published = tiles.fetch("checkpoint", MAX_CHECKPOINT).decode("utf-8", "replace")
    p_origin, p_size, p_root = check_log_signature(published, log)
    if p_origin != origin:
        raise Failed(f"the tiles are of the log {p_origin!r}, the receipt of {origin!r}")
    cosigners = check_cosignatures(published, wits)
    if len(cosigners) < need:
        raise Failed(
            f"the published checkpoint ({p_size}) carries {len(cosigners)} valid cosignature(s) "
            f"of the {distinct} witnesses given; {need} needed"
        )
    if size > p_size:
        raise Failed(
            f"the receipt's tree ({size}) is newer than the published checkpoint ({p_size}): "
            "not witnessed yet, try again later"
        )

    # 4: from the tiles alone, against the signed roots
    if tiles is None:
        return _result(origin, index, entry, size, p_size, cosigners, need, tiles=False)
    node = tiles.reader(p_size)
    if node(0, index) != leaf:
        raise Failed(f"the tiles hold another leaf at index {index}")
    verify_inclusion(index, p_size, leaf, inclusion_proof(index, p_size, node), p_root)
    verify_consistency(
        size,
        p_size,
        consistency_proof(size, p_size, node) if size < p_size else [],
        cp_root,
        p_root,
    )
    return _result(origin, index, entry, size, p_size, cosigners, need, tiles=True)


def _result(
    origin: str,
    index: int,
    entry: object,
    size: int,
    p_size: int,
    cosigners: list,
    need: int,
    *,
    tiles: bool,
) -> dict:
    return {
        "ok": True,
        "tiles": tiles,
        "origin": origin,
        "index": index,
        "entry_type": entry.get("type") if isinstance(entry, dict) else None,
        "receipt_tree_size": size,
        "published_tree_size": p_size,
        "witnesses": cosigners,
        "quorum": need,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="verify_receipt.py", description="Check an nsdx exchange receipt offline."
    )
    ap.add_argument("receipt", help="the receipt JSON file (- for standard input)")
    ap.add_argument(
        "--tiles", help="folder or URL prefix of the tlog tiles (default: the receipt alone)"
    )
    ap.add_argument("--log-key", help="the exchange's checkpoint verifier key")
    ap.add_argument("--log-key-file", help="a file holding the log key")
    ap.add_argument("--witness-key", action="append", default=[], help="a witness verifier key")
    ap.add_argument("--quorum", type=int, default=None, help="cosignatures needed")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    try:
        if args.log_key_file:
            with open(args.log_key_file, encoding="utf-8") as f:
                args.log_key = f.read().strip()
        if not args.log_key:
            raise CannotRun("give the exchange's verifier key: --log-key or --log-key-file")
        if args.receipt == "-":
            receipt = json.load(sys.stdin)
        else:
            with open(args.receipt, encoding="utf-8") as f:
                receipt = json.load(f)
        if not isinstance(receipt, dict):
            raise CannotRun("the receipt is not a JSON object")
        out = verify_receipt(
            receipt,
            Tiles(args.tiles) if args.tiles else None,
            args.log_key,
            args.witness_key,
            args.quorum,
        )
    except Failed as e:
        if args.json:
            print(json.dumps({"ok": False, "error": str(e)}, ensure_ascii=False))
        print(f"FAILED: {e}", file=sys.stderr)
        return 1
    except (CannotRun, OSError, ValueError, TypeError, RecursionError) as e:
        if args.json:
            print(
                json.dumps({"ok": False, "error": str(e), "cannot_run": True}, ensure_ascii=False)
            )
        print(f"cannot check: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        wit = (
            f", cosigned by {', '.join(out['witnesses'])}"
            if out["witnesses"]
            else " (no witness key given: the log's own signature only)"
        )
        where = (
            f"receipt tree {out['receipt_tree_size']} is a prefix of the published tree "
            f"{out['published_tree_size']}"
            if out["tiles"]
            else f"tree size {out['receipt_tree_size']}, the receipt's own checkpoint"
        )
        print(
            f"OK: entry {out['index']} ({out['entry_type']}) is in the ledger {out['origin']}; "
            f"{where}{wit}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
