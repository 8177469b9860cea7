"""The log's side of C2SP tlog-witness: ask configured witnesses to cosign a checkpoint,
keep the cosignatures that verify, and say whether a quorum cosigned.

A witness that is down, slow or refusing costs at most ``timeout`` seconds per request
(an overall deadline, not per socket read; redirects are refused) and is reported in
``failures``; it never raises. Each witness's answer is handed to ``on_result`` as it
arrives, so a slow witness does not delay the others' cosignatures. (Not yet wired into the exchange's trade path: see
docs/ledger.md §6, "Not done yet".)
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from ..ledger.note import open_note, parse_checkpoint
from .cosignature import (
    CosignatureError,
    CosignerVerifier,
    parse_cosigner_verifier,
    verify_cosignatures,
)
from .transport import witness_request

__all__ = [
    "WitnessEndpoint",
    "WitnessedCheckpoint",
    "distinct_witnesses",
    "parse_witness_config",
    "request_cosignatures",
]

#: proof(old_size, new_size) -> RFC 6962 consistency proof hashes
ProofSource = Callable[[int, int], Sequence[bytes]]
MAX_WITNESSES = 32
MAX_RESPONSE_BYTES = 16 * 1024


@dataclass(frozen=True)
class WitnessEndpoint:
    url: str  # the submission prefix; the request goes to <url>/add-checkpoint
    key: CosignerVerifier


@dataclass
class WitnessedCheckpoint:
    note: str  # the log-signed note with the verified cosignature lines appended
    cosigners: list[str]
    quorum: int
    failures: dict[str, str] = field(default_factory=dict)  # witness name -> why
    sizes: dict[str, int] = field(default_factory=dict)  # witness name -> size it now holds

    @property
    def witnessed(self) -> bool:
        # the cosigners come from distinct_witnesses: one name per public key
        return len(set(self.cosigners)) >= self.quorum


def parse_witness_config(text: str) -> list[WitnessEndpoint]:
    """``<url> <witness verifier key>`` per line, ``#`` comments (e.g. ``NSDX_WITNESSES``)."""
    out = []
    seen: dict[str, int] = {}  # witness name -> the line that configured it
    seen_keys: dict[bytes, tuple[int, str]] = {}  # public key -> (line, name)
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        url, _, key = line.partition(" ")
        if not url.startswith(("http://", "https://")) or not key.strip():
            raise CosignatureError(f"witness line {n}: expected `<http(s) URL> <verifier key>`")
        endpoint = WitnessEndpoint(url.rstrip("/"), parse_cosigner_verifier(key.strip()))
        name = endpoint.key.name
        if name in seen:  # the same witness twice would count twice towards the quorum
            raise CosignatureError(
                f"witness line {n}: the witness {name} is already configured on line "
                f"{seen[name]}; each witness counts once towards the quorum - keep one line"
            )
        public = endpoint.key.public
        if public in seen_keys:  # one key under two names would also count twice
            line_no, other = seen_keys[public]
            raise CosignatureError(
                f"witness line {n}: the witness {name} has the same public key as {other} "
                f"on line {line_no}; one key is one witness and counts once towards the "
                "quorum - keep one line"
            )
        seen[name] = n
        seen_keys[public] = (n, name)
        out.append(endpoint)
    if len(out) > MAX_WITNESSES:
        raise CosignatureError(f"more than {MAX_WITNESSES} witnesses configured")
    return out


def distinct_witnesses(witnesses: Sequence[WitnessEndpoint]) -> list[WitnessEndpoint]:
    """One endpoint per witness (by its name and by its public key, the first configured):
    a witness listed twice, or one key under two names, is asked, and counted towards the
    quorum, once."""
    out: list[WitnessEndpoint] = []
    names: set[str] = set()
    keys: set[bytes] = set()
    for w in witnesses:
        if w.key.name in names or w.key.public in keys:
            continue
        names.add(w.key.name)
        keys.add(w.key.public)
        out.append(w)
    return out


def _post(url: str, body: bytes, timeout: float) -> tuple[int, str]:
    status, raw = witness_request(
        url + "/add-checkpoint", data=body, timeout=timeout, limit=MAX_RESPONSE_BYTES
    )
    return status, raw.decode("utf-8", "replace")


def _body(old: int, new: int, note: str, proof: ProofSource) -> bytes:
    hashes = list(proof(old, new)) if 0 < old < new else []
    lines = [f"old {old}", *(base64.b64encode(h).decode() for h in hashes)]
    return ("\n".join(lines) + "\n\n" + note).encode()


def _one(
    w: WitnessEndpoint,
    note: str,
    body: str,
    size: int,
    old: int,
    proof: ProofSource,
    timeout: float,
) -> tuple[str | None, int | None, str | None]:
    """(cosignature line, witness size, failure) for one witness; at most one 409 retry."""
    try:
        for _ in range(2):
            status, text = _post(w.url, _body(old, size, note, proof), timeout)
            if status == 409 and text.rstrip("\n").isdigit() and int(text) != old:
                old = int(text)
                if old > size:
                    return None, old, f"the witness holds a larger size {old} than {size}"
                continue
            if status == 409 and text.rstrip("\n") == str(old) and old == size:
                return (
                    None,
                    old,
                    (
                        f"HTTP 409: refused - the witness cosigned another checkpoint of size "
                        f"{size} (a fork of what it was shown before: a split view)"
                    ),
                )
            if status == 422:
                return (
                    None,
                    None,
                    (
                        f"HTTP 422: refused - not an append-only extension of the checkpoint of "
                        f"size {old} the witness cosigned (a fork): {text.strip()[:160]}"
                    ),
                )
            if status != 200:
                return None, None, f"HTTP {status}: {text.strip()[:200]}"
            # keep the line that verifies: the answer may hold other lines under the same
            # name (another key ID, garbage) that verify_cosignatures skips
            for ln in text.splitlines():
                if not ln.startswith(f"\u2014 {w.key.name} "):
                    continue
                if w.key.name in verify_cosignatures(body, ln, [w.key]):
                    return ln + "\n", size, None
            return None, None, "no cosignature by its key in the answer"
        return None, old, "the witness's size kept changing"
    except Exception as e:  # noqa: BLE001 - down, timeout, garbage, no proof: never fatal
        return None, None, f"{type(e).__name__}: {e}"


def request_cosignatures(
    note: str,
    log_key: str,
    witnesses: Sequence[WitnessEndpoint],
    proof: ProofSource,
    *,
    quorum: int,
    known_sizes: dict[str, int] | None = None,
    timeout: float = 5.0,
    on_result: Callable[[WitnessEndpoint, str | None, int | None, str | None], None] | None = None,
) -> WitnessedCheckpoint:
    """Send the signed checkpoint ``note`` to every witness at once; return it with the
    verified cosignatures appended. ``known_sizes`` (witness name -> last size it cosigned)
    saves a round trip; without it each witness is asked with ``old 0`` first and answers
    its size (409). ``on_result(witness, line, size, failure)`` is called (in this thread)
    for each witness as soon as its answer is in, before slower witnesses answer."""
    body, _ = open_note(note, log_key)
    size = parse_checkpoint(body).size
    known = known_sizes or {}
    out = WitnessedCheckpoint(note, [], quorum)
    witnesses = distinct_witnesses(witnesses)
    if not witnesses:
        return out
    with ThreadPoolExecutor(max_workers=min(len(witnesses), MAX_WITNESSES)) as pool:
        futures = {
            pool.submit(_one, w, note, body, size, known.get(w.key.name, 0), proof, timeout): w
            for w in witnesses[:MAX_WITNESSES]
        }
        lines: dict[str, str] = {}
        for f in as_completed(futures):
            w = futures[f]
            line, wsize, failure = f.result()
            if wsize is not None:
                out.sizes[w.key.name] = wsize
            if line is not None:
                lines[w.key.name] = line
            else:
                out.failures[w.key.name] = failure or "refused"
            if on_result is not None:
                on_result(w, line, wsize, None if line is not None else failure or "refused")
    order = [w.key.name for w in witnesses if w.key.name in lines]  # the configured order
    out.cosigners = order
    out.note = note + "".join(lines[n] for n in order)
    return out
