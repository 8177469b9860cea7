"""C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature), the Ed25519 ``cosignature/v1``
type: keys, signing and verifying.

A cosignature is a signed-note signature line on a checkpoint::

    — <witness name> base64(key ID || u64 big-endian timestamp || Ed25519 signature)

key ID = SHA-256(name || 0x0A || 0x04 || 32-byte public key)[:4] (algorithm byte 0x04, not
the 0x01 of plain note signatures) and the signed message is::

    cosignature/v1
    time <timestamp>
    <the whole checkpoint body, final newline included>

Keys travel as text, like note keys but with the 0x04 byte: the verifier key
``<name>+<key ID hex>+base64(0x04 || public key)`` is published; the signer key
``PRIVATE+KEY+<name>+<key ID hex>+base64(0x04 || seed)`` stays with the witness.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ..ledger.note import NoteError

__all__ = [
    "ALG_COSIGNATURE_V1",
    "CosignatureError",
    "CosignerKey",
    "CosignerVerifier",
    "cosignature_message",
    "cosignature_timestamp",
    "generate_cosigner_key",
    "parse_cosigner_key",
    "parse_cosigner_verifier",
    "verify_cosignatures",
]

ALG_COSIGNATURE_V1 = 0x04
_SIG_PREFIX = "\u2014 "
_MAX_TIMESTAMP = 2**63 - 1


class CosignatureError(NoteError):
    """A cosigner key or a cosignature line is malformed or does not verify."""


def _valid_name(name: str) -> bool:
    return (
        bool(name)
        and "+" not in name
        and not any(ch.isspace() for ch in name)
        and not any(ord(ch) < 0x20 for ch in name)
    )


def _key_id(name: str, public: bytes) -> int:
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public).digest()
    return int.from_bytes(digest[:4], "big")


def _b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise CosignatureError(f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode() != text:
        raise CosignatureError(f"{what} is not canonical base64")
    return raw


def cosignature_message(body: str, timestamp: int) -> bytes:
    """The bytes a ``cosignature/v1`` signs: header line, time line, checkpoint body."""
    if not body.endswith("\n"):
        raise CosignatureError("checkpoint body must end with a newline")
    if isinstance(timestamp, bool) or not 0 <= timestamp <= _MAX_TIMESTAMP:
        raise CosignatureError(f"cosignature timestamp {timestamp!r} is outside [0, 2**63)")
    return f"cosignature/v1\ntime {timestamp}\n".encode() + body.encode("utf-8")


@dataclass(frozen=True)
class CosignerVerifier:
    name: str
    key_id: int
    public: bytes

    @property
    def text(self) -> str:
        raw = bytes([ALG_COSIGNATURE_V1]) + self.public
        return f"{self.name}+{self.key_id:08x}+{base64.b64encode(raw).decode()}"


@dataclass(frozen=True)
class CosignerKey:
    name: str
    key_id: int
    seed: bytes

    @property
    def verifier(self) -> CosignerVerifier:
        public = Ed25519PrivateKey.from_private_bytes(self.seed).public_key().public_bytes_raw()
        return CosignerVerifier(self.name, self.key_id, public)

    @property
    def text(self) -> str:
        raw = bytes([ALG_COSIGNATURE_V1]) + self.seed
        return f"PRIVATE+KEY+{self.name}+{self.key_id:08x}+{base64.b64encode(raw).decode()}"

    def cosign(self, body: str, timestamp: int) -> str:
        """One signature line (ending in a newline) cosigning the checkpoint ``body``."""
        private = Ed25519PrivateKey.from_private_bytes(self.seed)
        sig = private.sign(cosignature_message(body, timestamp))
        raw = self.key_id.to_bytes(4, "big") + timestamp.to_bytes(8, "big") + sig
        return f"{_SIG_PREFIX}{self.name} {base64.b64encode(raw).decode()}\n"


def generate_cosigner_key(name: str) -> CosignerKey:
    if not _valid_name(name):
        raise CosignatureError(
            f"witness name {name!r} must be non-empty without spaces, '+' or control characters"
        )
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw()
    return CosignerKey(name, _key_id(name, public), private.private_bytes_raw())


def _fields(text: str, what: str) -> tuple[str, int, bytes]:
    parts = text.strip().split("+", 2)
    if len(parts) != 3:
        raise CosignatureError(f"{what} must look like <name>+<8 hex digits>+<base64 key>")
    name, kid_hex, key64 = parts
    if not _valid_name(name):
        raise CosignatureError(f"{what} has an invalid name {name!r}")
    if not re.fullmatch(r"[0-9a-f]{8}", kid_hex):
        raise CosignatureError(f"{what} key ID must be 8 lowercase hex digits")
    raw = _b64(key64, f"{what} key material")
    if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
        raise CosignatureError(
            f"{what} is not a cosignature/v1 key (algorithm byte 0x04 + 32 bytes)"
        )
    return name, int(kid_hex, 16), raw[1:]


def parse_cosigner_key(text: str) -> CosignerKey:
    text = text.strip()
    if not text.startswith("PRIVATE+KEY+"):
        raise CosignatureError("witness signer key must start with PRIVATE+KEY+")
    name, kid, seed = _fields(text[len("PRIVATE+KEY+") :], "witness signer key")
    key = CosignerKey(name, kid, seed)
    if _key_id(name, key.verifier.public) != kid:
        raise CosignatureError("witness signer key ID does not match its name and public key")
    return key


def parse_cosigner_verifier(text: str) -> CosignerVerifier:
    name, kid, public = _fields(text, "witness verifier key")
    if _key_id(name, public) != kid:
        raise CosignatureError(f"witness verifier key ID {kid:08x} does not match its name and key")
    try:
        Ed25519PublicKey.from_public_bytes(public)
    except ValueError:
        raise CosignatureError("witness verifier key holds an invalid Ed25519 public key") from None
    return CosignerVerifier(name, kid, public)


def cosignature_timestamp(signature_b64: str) -> int:
    """The timestamp of a ``cosignature/v1`` signature (the base64 after the name on its
    line): key ID (4 bytes) || u64 big-endian timestamp || Ed25519 signature (64)."""
    raw = _b64(signature_b64, "cosignature")
    if len(raw) != 4 + 8 + 64:
        raise CosignatureError(
            f"a cosignature/v1 signature is 76 bytes (key ID, timestamp, signature), not {len(raw)}"
        )
    ts = int.from_bytes(raw[4:12], "big")
    if ts > _MAX_TIMESTAMP:
        raise CosignatureError(f"cosignature timestamp {ts} exceeds 2**63 - 1")
    return ts


def verify_cosignatures(
    body: str, signature_lines: str, verifiers: list[CosignerVerifier]
) -> dict[str, int]:
    """Check cosignature lines on the checkpoint ``body``; return ``{witness name:
    timestamp}`` for the trusted witnesses whose cosignatures verify. Lines by unknown
    keys are ignored (as the spec requires); a trusted key's bad signature raises."""
    known = {(v.name, v.key_id): v for v in verifiers}
    out: dict[str, int] = {}
    for line in signature_lines.splitlines():
        if not line.startswith(_SIG_PREFIX):
            raise CosignatureError(f"cosignature line {line[:40]!r} does not start with '— '")
        name, sep, sig64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep:
            raise CosignatureError(f"malformed cosignature line {line[:60]!r}")
        raw = _b64(sig64, f"cosignature by {name}")
        if len(raw) < 4:
            raise CosignatureError(f"cosignature by {name} is too short")
        v = known.get((name, int.from_bytes(raw[:4], "big")))
        if v is None:
            continue
        if len(raw) != 4 + 8 + 64:
            raise CosignatureError(f"cosignature by {name} is {len(raw)} bytes, expected 76")
        ts = int.from_bytes(raw[4:12], "big")
        try:
            Ed25519PublicKey.from_public_bytes(v.public).verify(
                raw[12:], cosignature_message(body, ts)
            )
        except InvalidSignature:
            raise CosignatureError(f"cosignature by {name} does not verify") from None
        out[name] = ts
    return out
