"""C2SP signed notes (https://c2sp.org/signed-note) and tlog checkpoints
(https://c2sp.org/tlog-checkpoint), Ed25519 only, wire-compatible with Go's
``golang.org/x/mod/sumdb/note``.

A signed note is the text (ending in a newline), a blank line, then one line per
signature::

    — <key name> base64(4-byte key ID || Ed25519 signature of the text)

with key ID = SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4]. Keys travel as
text: ``<name>+<key ID hex>+base64(0x01 || public key)`` to verify, and
``PRIVATE+KEY+<name>+<key ID hex>+base64(0x01 || 32-byte seed)`` to sign.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from validation.messages import Msg

__all__ = [
    "MAX_SIGNATURES",
    "Checkpoint",
    "CheckpointError",
    "NoteError",
    "checkpoint_body",
    "generate_key",
    "open_note",
    "parse_checkpoint",
    "sign_note",
    "verifier_key",
]

ALG_ED25519 = 0x01
#: Signature lines read from one note at most (the spec asks for at least 16; Go uses 100).
MAX_SIGNATURES = 100
_SIG_PREFIX = "\u2014 "  # em dash, space
_SIZE_RE = re.compile(r"0|[1-9][0-9]*")


class NoteError(ValueError):
    """A note, key or checkpoint is malformed, unsigned by a known key, or has a bad
    signature. Not retryable: the same text always fails."""


def reason(e: ValueError) -> str:
    """The reason a :class:`NoteError` gives: its message (a ``Msg`` a surface translates)."""
    return e.args[0] if e.args and isinstance(e.args[0], str) else str(e)


class CheckpointError(NoteError):
    """The note body is not a valid tlog checkpoint."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


# --------------------------------------------------------------------------- keys


def _is_valid_name(name: str) -> bool:
    # Non-empty, no Unicode spaces (str.isspace covers Go's unicode.IsSpace), no '+'.
    return (
        bool(name)
        and "+" not in name
        and not any(ch.isspace() for ch in name)
        and _no_controls(name)
    )


def _no_controls(text: str) -> bool:
    return not any(ord(ch) < 0x20 and ch != "\n" for ch in text) and not any(
        "\ud800" <= ch <= "\udfff" for ch in text
    )


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64: only the canonical encoding of its bytes is accepted."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise NoteError(Msg("%(what)s is not valid base64", what=what)) from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(Msg("%(what)s is not canonical base64", what=what))
    return raw


def _key_id(name: str, public_key: bytes) -> int:
    digest = hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key
    ).digest()
    return int.from_bytes(digest[:4], "big")


def _public_bytes(private: Ed25519PrivateKey) -> bytes:
    return private.public_key().public_bytes_raw()


def generate_key(name: str) -> tuple[str, str]:
    """Make an Ed25519 key pair for ``name``; return ``(signer_key, verifier_key)`` text.

    The signer key is a secret: keep it out of the repository and out of logs.
    """
    if not _is_valid_name(name):
        raise NoteError(
            f"key name {name!r} must be non-empty without spaces, '+' or control characters"
        )
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = _public_bytes(private)
    kid = _key_id(name, public)
    signer = (
        f"PRIVATE+KEY+{name}+{kid:08x}+{base64.b64encode(bytes([ALG_ED25519]) + seed).decode()}"
    )
    verifier = f"{name}+{kid:08x}+{base64.b64encode(bytes([ALG_ED25519]) + public).decode()}"
    return signer, verifier


@dataclass(frozen=True)
class _Signer:
    name: str
    key_id: int
    private: Ed25519PrivateKey


@dataclass(frozen=True)
class _Verifier:
    name: str
    key_id: int
    public: Ed25519PublicKey


def _parse_key_fields(text: str, what: str) -> tuple[str, int, bytes]:
    parts = text.split("+", 2)
    if len(parts) != 3:
        raise NoteError(f"{what} must look like <name>+<8 hex digits>+<base64 key>")
    name, kid_hex, key64 = parts
    if not _is_valid_name(name):
        raise NoteError(f"{what} has an invalid key name {name!r}")
    if not re.fullmatch(r"[0-9a-f]{8}", kid_hex):
        raise NoteError(f"{what} key ID must be 8 lowercase hex digits, got {kid_hex!r}")
    key = _b64decode(key64, f"{what} key material")
    if len(key) != 33 or key[0] != ALG_ED25519:
        raise NoteError(f"{what} is not an Ed25519 key (algorithm byte 0x01 + 32 bytes)")
    return name, int(kid_hex, 16), key[1:]


@functools.lru_cache(maxsize=16)
def _parse_signer(text: str) -> _Signer:
    """The signer key ``text`` parsed and checked (cached: a sequencer signs one
    checkpoint per batch with the same key, and deriving the key is half a signature's
    cost; an Ed25519 private key object signs from any thread)."""
    if not text.startswith("PRIVATE+KEY+"):
        raise NoteError("signer key must start with PRIVATE+KEY+")
    name, kid, seed = _parse_key_fields(text[len("PRIVATE+KEY+") :], "signer key")
    private = Ed25519PrivateKey.from_private_bytes(seed)
    if _key_id(name, _public_bytes(private)) != kid:
        raise NoteError("signer key ID does not match its name and public key")
    return _Signer(name, kid, private)


def _parse_verifier(text: str) -> _Verifier:
    name, kid, public = _parse_key_fields(text, "verifier key")
    if _key_id(name, public) != kid:
        raise NoteError(
            f"verifier key ID {kid:08x} does not match the name {name!r} and public key"
        )
    try:
        key = Ed25519PublicKey.from_public_bytes(public)
    except ValueError:
        raise NoteError("verifier key holds an invalid Ed25519 public key") from None
    return _Verifier(name, kid, key)


def verifier_key(signer_key_text: str) -> str:
    """The verifier key text that belongs to a signer key text."""
    s = _parse_signer(signer_key_text)
    public = _public_bytes(s.private)
    return f"{s.name}+{s.key_id:08x}+{base64.b64encode(bytes([ALG_ED25519]) + public).decode()}"


# --------------------------------------------------------------------------- notes


def _check_text(text: str, what: str) -> None:
    if not _no_controls(text):
        raise NoteError(
            Msg(
                "%(what)s must be valid UTF-8 without control characters other than newline",
                what=what,
            )
        )


def sign_note(body: str, signer_key_text: str | Iterable[str]) -> str:
    """Sign ``body`` (which must end in a newline) with one or more signer keys; return
    the signed note text: body, blank line, one ``— name signature`` line per key."""
    if not isinstance(body, str) or not body.endswith("\n"):
        raise NoteError("note body must be text ending in a newline")
    _check_text(body, "note body")
    keys = [signer_key_text] if isinstance(signer_key_text, str) else list(signer_key_text)
    if not keys:
        raise NoteError("sign_note needs at least one signer key")
    message = body.encode("utf-8")
    lines = []
    for key_text in keys:
        s = _parse_signer(key_text)
        sig = s.key_id.to_bytes(4, "big") + s.private.sign(message)
        lines.append(f"{_SIG_PREFIX}{s.name} {base64.b64encode(sig).decode()}\n")
    return body + "\n" + "".join(lines)


def open_note(text: str | bytes, verifier_key_texts: str | Iterable[str]) -> tuple[str, list[str]]:
    """Verify a signed note against the trusted verifier keys.

    Returns ``(body, names)``: the signed text and the names of the known keys whose
    signatures verified (in note order, each once). Signatures by unknown keys are
    ignored, as the spec requires. Raises :class:`NoteError` when the note is malformed,
    when a signature by a known key fails (the whole note is rejected), or when no known
    key signed it.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise NoteError(Msg("note is not valid UTF-8")) from None
    _check_text(text, Msg("note"))
    keys = [verifier_key_texts] if isinstance(verifier_key_texts, str) else list(verifier_key_texts)
    known: dict[tuple[str, int], _Verifier] = {}
    for key_text in keys:
        v = _parse_verifier(key_text)
        prev = known.get((v.name, v.key_id))
        if prev is not None and prev.public.public_bytes_raw() != v.public.public_bytes_raw():
            raise NoteError(
                f"two different verifier keys share the name and ID {v.name}+{v.key_id:08x}"
            )
        known[(v.name, v.key_id)] = v

    split = text.rfind("\n\n")
    if split < 0:
        raise NoteError(Msg("note has no blank line before its signatures"))
    body, sig_block = text[: split + 1], text[split + 2 :]
    if not sig_block or not sig_block.endswith("\n"):
        raise NoteError(Msg("note signatures must end with a newline"))
    sig_lines = sig_block[:-1].split("\n")
    if len(sig_lines) > MAX_SIGNATURES:
        raise NoteError(Msg("note has more than %(n)s signatures", n=MAX_SIGNATURES))

    message = body.encode("utf-8")
    verified: list[str] = []
    for line in sig_lines:
        if not line.startswith(_SIG_PREFIX):
            raise NoteError(
                Msg(
                    "signature line %(line)s does not start with an em dash and a space",
                    line=repr(line[:40]),
                )
            )
        name, sep, sig64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not _is_valid_name(name) or not sig64:
            raise NoteError(Msg("malformed signature line %(line)s", line=repr(line[:60])))
        sig = _b64decode(sig64, Msg("signature by %(name)s", name=name))
        if len(sig) < 5:
            raise NoteError(Msg("signature by %(name)s is too short", name=name))
        kid = int.from_bytes(sig[:4], "big")
        signer = known.get((name, kid))
        if signer is None:
            continue  # unknown key: ignore (c2sp.org/signed-note)
        try:
            signer.public.verify(sig[4:], message)
        except InvalidSignature:
            raise NoteError(
                Msg(
                    "signature by %(key)s does not verify: the note was altered or forged",
                    key=f"{name}+{kid:08x}",
                )
            ) from None
        if name not in verified:
            verified.append(name)
    if not verified:
        raise NoteError(Msg("note carries no signature from a trusted key"))
    return body, verified


# --------------------------------------------------------------------------- checkpoints


def checkpoint_body(origin: str, size: int, root: bytes, extensions: Iterable[str] = ()) -> str:
    """The tlog-checkpoint note body: ``origin\\nsize\\nbase64(root)\\n`` (+ extension lines)."""
    if not origin or "\n" in origin or not _no_controls(origin):
        raise CheckpointError("checkpoint origin must be one non-empty line of text")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size < 2**64:
        raise CheckpointError(f"checkpoint size must be an int in [0, 2**64), got {size!r}")
    if not isinstance(root, bytes | bytearray) or len(root) != 32:
        raise CheckpointError("checkpoint root must be a 32-byte SHA-256 hash")
    lines = [origin, str(size), base64.b64encode(bytes(root)).decode()]
    for ext in extensions:
        if not ext or "\n" in ext or not _no_controls(ext):
            raise CheckpointError("checkpoint extension lines must be non-empty single lines")
        lines.append(ext)
    return "\n".join(lines) + "\n"


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse a checkpoint note body (as returned by :func:`open_note`)."""
    if not body.endswith("\n"):
        raise CheckpointError(Msg("checkpoint body must end with a newline"))
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError(
            Msg("checkpoint needs origin, size and root lines, got %(n)s line(s)", n=len(lines))
        )
    origin, size_text, root64, *extensions = lines
    if not origin:
        raise CheckpointError(Msg("checkpoint origin is empty"))
    if not _SIZE_RE.fullmatch(size_text):
        raise CheckpointError(
            Msg(
                "checkpoint size %(size)s is not a decimal number without leading zeros",
                size=repr(size_text),
            )
        )
    size = int(size_text)
    if size >= 2**64:
        raise CheckpointError(Msg("checkpoint size %(size)s does not fit in 64 bits", size=size))
    try:
        root = _b64decode(root64, Msg("checkpoint root hash"))
    except NoteError as exc:
        raise CheckpointError(reason(exc)) from None
    if len(root) != 32:
        raise CheckpointError(Msg("checkpoint root hash is %(n)s bytes, expected 32", n=len(root)))
    if any(not ext for ext in extensions):
        raise CheckpointError(Msg("checkpoint extension lines must be non-empty"))
    return Checkpoint(origin, size, root, tuple(extensions))
