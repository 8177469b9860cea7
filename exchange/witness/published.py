"""The checkpoint the log publishes — the one rule for ``/log/checkpoint`` (nsdx.web.tlog)
and ``nsdx ledger export-tiles``: what a buyer's offline check (nsdx/verify_receipt.py)
takes as the witnessed head.

It is the latest *witnessed* checkpoint, with its cosignature lines, once the exchange is
witnessed (:mod:`exchange.witness.publish` writes it when a quorum cosigned), else the
latest signed checkpoint. Tiles are served for every size up to the ledger's head, so any
checkpoint published here is backed by them. Where the witnessing state lives is
:mod:`exchange.witness.publish`'s business: if it moves, this function follows it.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["published_checkpoint"]

#: Written by :func:`exchange.witness.publish.witness_latest` at a quorum.
WITNESSED_NOTE = Path("witnessing") / "witnessed"


def published_checkpoint(ledger, home: Path) -> str:
    """The published checkpoint note (see the module)."""
    try:
        return (Path(home) / WITNESSED_NOTE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return ledger.get_checkpoint().note
