"""A C2SP tlog-witness (https://c2sp.org/tlog-witness): check a log's new checkpoint
against the last one this witness cosigned, and cosign it only if the log grew by appending.

The witness lives in a directory of its own (``nsdx witness init``), with no access to the
exchange's database:

* ``witness.key`` — its ``cosignature/v1`` signer key (file mode 600);
* ``logs`` — the logs it witnesses: one note verifier key per line (the key name is the
  log's origin line, as for the exchange ledger), ``#`` comments allowed;
* ``state.json`` — per origin, the size, root and body of the latest cosigned checkpoint;
* ``evidence/`` — requests refused as a fork (409 with another root at the same size, 422)
  although the log's signature verified: proof that the log signed two histories (at most
  ``MAX_EVIDENCE_FILES``, so a misbehaving log cannot fill the disk).

:meth:`Witness.add_checkpoint` takes the raw ``add-checkpoint`` request body and returns
the response body (one cosignature line) or raises :class:`WitnessRefused` whose
``status`` is the protocol's (400, 403, 404, 409 with ``size``, 422). The check of the old
size and the update of the state happen under one lock (a thread lock and an ``flock`` on
``state.lock``, so two server processes on one directory cannot race either), and the new
state reaches the disk (temporary file, fsync, rename, fsync of the directory) *before* the
cosignature is returned: after a crash the witness remembers at least every size it
cosigned, so it can never cosign a fork of a checkpoint it already vouched for.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ExchangeError
from ..ledger.hashing import EMPTY_ROOT
from ..ledger.note import NoteError, _parse_verifier, open_note, parse_checkpoint
from ..ledger.proofs import ProofError, verify_consistency
from .cosignature import CosignatureError, CosignerKey, generate_cosigner_key, parse_cosigner_key

__all__ = [
    "KEY_FILE",
    "LOGS_FILE",
    "MAX_PROOF_LINES",
    "MAX_REQUEST_BYTES",
    "STATE_FILE",
    "Witness",
    "WitnessConfigError",
    "WitnessRefused",
    "init_witness",
]

KEY_FILE = "witness.key"
LOGS_FILE = "logs"
STATE_FILE = "state.json"
LOCK_FILE = "state.lock"
EVIDENCE_DIR = "evidence"
#: Refused log-signed requests kept as evidence, at most (each at most MAX_REQUEST_BYTES).
MAX_EVIDENCE_FILES = 100
#: The spec caps proofs at 63 lines; a checkpoint note with 100 signatures is under 20 KiB.
MAX_PROOF_LINES = 63
MAX_REQUEST_BYTES = 64 * 1024
MAX_LOGS = 1000
_OLD_RE = re.compile(r"old (0|[1-9][0-9]{0,19})")


class WitnessConfigError(ExchangeError):
    """The witness directory is missing or holds an unusable key or logs file."""

    status = 500


class WitnessRefused(ExchangeError):
    """The witness refuses to cosign; ``status`` is the tlog-witness status code and, for
    409, ``size`` the size of the latest checkpoint it cosigned for the log."""

    def __init__(self, status: int, message: str, *, size: int | None = None) -> None:
        super().__init__(message, hint=_HINTS.get(status), size=size)
        self.status = status  # type: ignore[misc]  # per instance: the protocol's code
        self.size = size


_HINTS = {
    400: "send `old <size>`, the proof lines, a blank line, then the signed checkpoint",
    403: "sign the checkpoint with a log key this witness trusts (its `logs` file)",
    404: "ask the witness's operator to add the log's verifier key to its `logs` file",
    409: "send the consistency proof from the size in the response body",
    422: "the log is not an append-only extension of what this witness cosigned",
}


@dataclass(frozen=True)
class _Request:
    old: int
    proof: list[bytes]
    note: str


def _parse_request(raw: bytes) -> _Request:
    if len(raw) > MAX_REQUEST_BYTES:
        raise WitnessRefused(400, f"request body over {MAX_REQUEST_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WitnessRefused(400, "request body is not UTF-8") from None
    head, sep, note = text.partition("\n\n")
    if not sep:
        raise WitnessRefused(400, "no blank line between the old size and proof and the checkpoint")
    lines = head.split("\n")
    m = _OLD_RE.fullmatch(lines[0])
    if m is None:
        raise WitnessRefused(400, f"first line must be `old <size>`, got {lines[0][:40]!r}")
    proof_lines = lines[1:]
    if len(proof_lines) > MAX_PROOF_LINES:
        raise WitnessRefused(400, f"more than {MAX_PROOF_LINES} consistency proof lines")
    proof = []
    for i, line in enumerate(proof_lines, start=2):
        try:
            h = base64.b64decode(line.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise WitnessRefused(400, f"proof line {i} is not base64") from None
        if len(h) != 32 or base64.b64encode(h).decode() != line:
            raise WitnessRefused(400, f"proof line {i} is not one canonical base64 SHA-256 hash")
        proof.append(h)
    return _Request(int(m.group(1)), proof, note)


def _read_logs(path: Path) -> dict[str, list[str]]:
    logs: dict[str, list[str]] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WitnessConfigError(
            f"no logs file at {path}", hint="run `nsdx witness init --log <log verifier key>`"
        ) from None
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            v = _parse_verifier(line)
        except NoteError as e:
            raise WitnessConfigError(f"{path}:{n}: {e}") from None
        logs.setdefault(v.name, []).append(line)
    if len(logs) > MAX_LOGS:
        raise WitnessConfigError(f"{path}: more than {MAX_LOGS} logs")
    return logs


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def init_witness(home: Path, name: str, log_keys: list[str]) -> CosignerKey:
    """Create a witness directory: a new key (refused if one exists) and the logs file."""
    home = Path(home)
    for k in log_keys:
        try:
            _parse_verifier(k.strip())
        except NoteError as e:
            raise WitnessConfigError(
                f"log key {k[:60]!r}: {e}",
                hint="pass the output of `nsdx audit pubkey` on the exchange",
            ) from None
    try:
        key = generate_cosigner_key(name)
    except CosignatureError as e:
        raise WitnessConfigError(str(e)) from None
    home.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(home / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise WitnessConfigError(
            f"{home / KEY_FILE} exists: this directory already holds a witness",
            hint="a witness keeps its key and state for life; use another directory",
        ) from None
    with os.fdopen(fd, "w") as f:
        f.write(key.text + "\n")
        f.flush()
        os.fsync(f.fileno())
    logs = home / LOGS_FILE
    existing = logs.read_text(encoding="utf-8") if logs.exists() else ""
    logs.write_text(existing + "".join(k.strip() + "\n" for k in log_keys), encoding="utf-8")
    _fsync_dir(home)
    return key


class Witness:
    """One witness directory. Thread-safe; safe beside other processes on the same directory."""

    def __init__(self, home: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.home = Path(home)
        self._clock = clock
        try:
            self.key = parse_cosigner_key((self.home / KEY_FILE).read_text())
        except FileNotFoundError:
            raise WitnessConfigError(
                f"no witness key at {self.home / KEY_FILE}",
                hint="run `nsdx witness init --name <witness name> --home <dir>` first",
            ) from None
        except CosignatureError as e:
            raise WitnessConfigError(f"{self.home / KEY_FILE}: {e}") from None
        self.logs = _read_logs(self.home / LOGS_FILE)
        self._lock = threading.Lock()
        self.state()  # refuse to start on an unreadable state file

    @property
    def verifier_key(self) -> str:
        return self.key.verifier.text

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, dict]:
        """Per origin: ``size``, ``root`` (base64) and ``checkpoint`` (the body cosigned)."""
        path = self.home / STATE_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (ValueError, UnicodeDecodeError) as e:
            raise WitnessConfigError(
                f"{path} is not valid JSON ({e})",
                hint="never hand-edit or reset a witness's state: restore it from a backup, or "
                "retire this witness and publish a new key",
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("logs"), dict):
            raise WitnessConfigError(f"{path} has no `logs` object")
        return data["logs"]

    def _save(self, logs: dict[str, dict]) -> None:
        path = self.home / STATE_FILE
        tmp = path.with_name(f".{STATE_FILE}.{os.getpid()}.{threading.get_ident()}.tmp")
        data = json.dumps({"version": 1, "logs": logs}, sort_keys=True, indent=1)
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(self.home)

    def _keep_evidence(self, raw: bytes, status: int) -> None:
        """Keep a refused, log-signed request (bounded in number; never fails the answer)."""
        folder = self.home / EVIDENCE_DIR
        try:
            folder.mkdir(exist_ok=True)
            if sum(1 for _ in folder.iterdir()) >= MAX_EVIDENCE_FILES:
                return
            name = f"{int(self._clock())}-{status}-{hashlib.sha256(raw).hexdigest()[:16]}.txt"
            (folder / name).write_bytes(raw)
        except OSError:
            pass

    def evidence(self) -> list[Path]:
        """The refused log-signed requests kept, oldest first."""
        folder = self.home / EVIDENCE_DIR
        return sorted(folder.iterdir()) if folder.is_dir() else []

    # ------------------------------------------------------------------ protocol

    def add_checkpoint(self, raw: bytes) -> str:
        """Handle one ``add-checkpoint`` request body; return the response body."""
        req = _parse_request(raw)
        origin = req.note.split("\n", 1)[0]
        keys = self.logs.get(origin)
        if keys is None:
            raise WitnessRefused(404, f"unknown log origin {origin[:80]!r}")
        try:
            body, _ = open_note(req.note, keys)
        except NoteError as e:
            msg = str(e)
            if "trusted key" in msg or "does not verify" in msg:
                raise WitnessRefused(403, f"checkpoint signature: {msg}") from None
            raise WitnessRefused(400, f"checkpoint note: {msg}") from None
        try:
            cp = parse_checkpoint(body)
        except NoteError as e:
            raise WitnessRefused(400, f"checkpoint: {e}") from None
        if req.old > cp.size:
            raise WitnessRefused(400, f"old size {req.old} is larger than the checkpoint {cp.size}")
        if cp.size == 0 and cp.root != EMPTY_ROOT:
            raise WitnessRefused(422, "an empty log must have the empty tree's root")
        with self._lock, open(self.home / LOCK_FILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            logs = self.state()
            last = logs.get(origin)
            cur = int(last["size"]) if last else 0
            if req.old != cur:
                raise WitnessRefused(
                    409, f"old size {req.old} is not the last cosigned size {cur}", size=cur
                )
            if req.old == 0:
                if req.proof:
                    raise WitnessRefused(400, "the proof must be empty when the old size is 0")
            else:
                assert last is not None
                root1 = base64.b64decode(last["root"])
                if cp.size == req.old:
                    if req.proof:
                        raise WitnessRefused(400, "the proof must be empty for the same size")
                    if cp.root != root1:
                        self._keep_evidence(raw, 409)
                        raise WitnessRefused(
                            409, f"a different root for the cosigned size {cur}: a fork", size=cur
                        )
                else:
                    try:
                        verify_consistency(req.old, cp.size, req.proof, root1, cp.root)
                    except ProofError as e:
                        self._keep_evidence(raw, 422)
                        raise WitnessRefused(422, f"consistency proof: {e.reason}") from None
            line = self.key.cosign(body, int(self._clock()))
            logs[origin] = {
                "size": cp.size,
                "root": base64.b64encode(cp.root).decode(),
                "checkpoint": body,
                # what it cosigned, as it was shown (log-signed) and with its line: anyone
                # may compare it with the log they are shown (GET /)
                "note": req.note,
                "cosignature": line,
            }
            self._save(logs)
            return line

    def latest(self) -> dict[str, str]:
        """Per origin, the latest checkpoint cosigned: the log-signed note with this
        witness's cosignature line appended (what a monitor compares with its own view)."""
        out = {}
        for origin, st in self.state().items():
            note, line = st.get("note"), st.get("cosignature")
            if isinstance(note, str) and isinstance(line, str):
                out[origin] = note + line
            elif isinstance(st.get("checkpoint"), str):  # state written before the note was kept
                out[origin] = st["checkpoint"]
        return out
