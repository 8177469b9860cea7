"""Witnessing the exchange's own ledger: send its latest signed checkpoint to the configured
witnesses and publish it as *witnessed* once a quorum cosigned.

Run apart from the trade (``nsdx audit witness``, e.g. every minute from a timer): a trade
never waits for a witness, and a witness that is down only delays witnessing. Files, under
``<NSDX_HOME>/witnessing/`` (nothing in the database changes):

* ``checkpoint.<size>`` — the checkpoint note with every verified cosignature appended;
* ``witnessed`` — the latest note that reached the quorum (what to hand to buyers);
* ``sizes.json`` — the size each witness last cosigned (saves a round trip next time).
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointNotFound, ExchangeError
from .client import WitnessEndpoint, distinct_witnesses, request_cosignatures

__all__ = ["WitnessQuorumNotReached", "WitnessingResult", "witness_latest"]

DIR = "witnessing"


class WitnessQuorumNotReached(ExchangeError):
    """Fewer witnesses cosigned than the quorum (some down or refusing): retry later."""

    status = 503
    transient = True


@dataclass
class WitnessingResult:
    tree_size: int
    quorum: int
    cosigners: list[str]
    failures: dict[str, str]
    note: str
    path: str

    @property
    def witnessed(self) -> bool:
        return len(set(self.cosigners)) >= self.quorum

    def to_dict(self) -> dict:
        return {
            "tree_size": self.tree_size,
            "quorum": self.quorum,
            "witnessed": self.witnessed,
            "cosigners": self.cosigners,
            "failures": self.failures,
            "note": self.note,
            "path": self.path,
        }


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def witness_latest(
    ledger, home: Path, witnesses: list[WitnessEndpoint], *, quorum: int, timeout: float = 5.0
) -> WitnessingResult:
    """Ask ``witnesses`` to cosign the ledger's latest signed checkpoint; write the files
    above. Raises :class:`WitnessQuorumNotReached` (after writing what it got) when fewer
    than ``quorum`` cosigned. A witness listed twice counts once."""
    witnesses = distinct_witnesses(witnesses)
    if not 1 <= quorum <= max(len(witnesses), 1):
        raise ExchangeError(
            f"quorum {quorum} must be between 1 and the number of witnesses ({len(witnesses)})",
            hint="configure witnesses (one `<URL> <witness verifier key>` a line) first",
        )
    cp = ledger.latest_checkpoint()
    if cp is None:
        raise CheckpointNotFound(
            "the ledger has no signed checkpoint yet",
            hint="record a trade, or run `nsdx audit checkpoint`",
        )
    out_dir = Path(home) / DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes_path = out_dir / "sizes.json"
    try:
        known = {str(k): int(v) for k, v in json.loads(sizes_path.read_text()).items()}
    except (FileNotFoundError, ValueError, AttributeError, TypeError):
        known = {}

    def proof(old: int, new: int) -> list[bytes]:
        return [base64.b64decode(p) for p in ledger.consistency(old, new)["proof"]]

    r = request_cosignatures(
        cp.note,
        ledger.signer.verifier_key,
        witnesses,
        proof,
        quorum=quorum,
        known_sizes=known,
        timeout=timeout,
    )
    _write_atomic(sizes_path, json.dumps({**known, **r.sizes}, sort_keys=True))
    path = out_dir / f"checkpoint.{cp.tree_size}"
    _write_atomic(path, r.note)
    result = WitnessingResult(cp.tree_size, quorum, r.cosigners, r.failures, r.note, str(path))
    if not r.witnessed:
        raise WitnessQuorumNotReached(
            f"{len(r.cosigners)} of {len(witnesses)} witnesses cosigned checkpoint "
            f"{cp.tree_size}; the quorum is {quorum}",
            hint="the trades go on; run this again when the witnesses are back",
            **result.to_dict(),
        )
    _write_atomic(out_dir / "witnessed", r.note)
    return result
