"""The checkpoint the log publishes — the one rule for ``/log/checkpoint`` (nsdx.web.tlog)
and ``nsdx ledger export-tiles``: what a buyer's offline check (nsdx/verify_receipt.py)
takes as the witnessed head.

It is the latest *witnessed* checkpoint (a quorum of witnesses cosigned it), with the
cosignature lines stored with it in the database (:mod:`exchange.witness.publish`,
migration 0012), else the latest signed checkpoint with any cosignatures it got so far.
Tiles are served for every size up to the ledger's head, so any checkpoint published here
is backed by them.
"""

from __future__ import annotations

from pathlib import Path

from .publish import cosigned_note

__all__ = ["published_checkpoint"]


def published_checkpoint(ledger, home: Path | None = None) -> str:
    """The published checkpoint note (see the module). ``home`` is not used any more: the
    cosignatures live in the database."""
    cp = ledger.latest_witnessed() or ledger.get_checkpoint()
    return cosigned_note(ledger.engine, cp.note, cp.tree_size)
