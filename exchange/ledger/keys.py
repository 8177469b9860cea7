"""The checkpoint signing key.

Where it comes from, in order:

1. ``NSDX_LEDGER_KEY`` — the signer key text, ``PRIVATE+KEY+<name>+<id>+<base64>``
   (C2SP signed-note form, as Go's ``note.GenerateKey`` writes it);
2. ``$NSDX_HOME/ledger.key`` — generated once on first use (file mode 600), with the
   key name ``NSDX_LEDGER_ORIGIN`` (default ``nsdx.nansha/exchange-ledger``), which is
   also the checkpoint origin line.

The matching verifier key (``nsdx audit pubkey``) is what officials keep to check
checkpoints independently.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import LedgerKeyError
from .note import NoteError, checkpoint_body, open_note, parse_checkpoint, sign_note, verifier_key
from .note import generate_key as _generate

DEFAULT_ORIGIN = "nsdx.nansha/exchange-ledger"
KEY_FILE = "ledger.key"


@dataclass(frozen=True)
class LedgerSigner:
    signer_key: str
    generated: bool = False  # True when this call created the key file

    @property
    def origin(self) -> str:
        return self.signer_key.split("+")[2]

    @property
    def verifier_key(self) -> str:
        return verifier_key(self.signer_key)

    def sign_checkpoint(self, size: int, root: bytes) -> str:
        return sign_note(checkpoint_body(self.origin, size, root), self.signer_key)

    def open_checkpoint(self, note: str):
        return open_checkpoint(note, self.verifier_key)


def open_checkpoint(note: str, verifier: str):
    """Verify a signed checkpoint; return the parsed :class:`note.Checkpoint`."""
    body, _ = open_note(note, verifier)
    return parse_checkpoint(body)


def load_signer(
    home: Path, env: Mapping[str, str] | None = None, *, create: bool = True
) -> LedgerSigner:
    """The ledger signing key: NSDX_LEDGER_KEY, else ``home``/ledger.key, generated there
    when missing — unless ``create`` is false (commands that only read): then a missing key
    is an error that says where it looked."""
    env = os.environ if env is None else env
    text = env.get("NSDX_LEDGER_KEY")
    where = "NSDX_LEDGER_KEY"
    generated = False
    if not text:
        path = Path(home) / KEY_FILE
        where = str(path)
        if path.exists():
            text = path.read_text().strip()
        elif not create:
            raise LedgerKeyError(
                f"no ledger signing key: {path} does not exist and NSDX_LEDGER_KEY is not set",
                hint="run nsdx where the deployment's state is (set NSDX_HOME to it), or set "
                "NSDX_LEDGER_KEY; a command that writes to the exchange creates the key",
            )
        else:
            origin = env.get("NSDX_LEDGER_ORIGIN") or DEFAULT_ORIGIN
            text, _ = _generate(origin)
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process won the race: use its key
                text = path.read_text().strip()
            else:
                with os.fdopen(fd, "w") as f:
                    f.write(text + "\n")
                generated = True
    try:
        verifier_key(text)
    except NoteError as e:
        raise LedgerKeyError(
            f"the ledger signing key in {where} is not usable: {e}",
            hint="set NSDX_LEDGER_KEY to a PRIVATE+KEY+... signer key, or move the file away "
            "to generate a new key (old checkpoints then need the old verifier key)",
        ) from None
    return LedgerSigner(text, generated)
