"""`nsdx ledger`: the exchange ledger as C2SP tlog-tiles, and the offline receipt check."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .exchange import _ex, json_option
from .render import echo_json


@click.group()
def ledger() -> None:
    """Export the ledger as static tiles; check a receipt offline."""


@ledger.command("export-tiles")
@click.argument("dest", type=click.Path(file_okay=False))
@click.option(
    "--entries",
    is_flag=True,
    help="Also write the entry bundles (they name the parties and amounts: for officials).",
)
@json_option
def export_tiles_cmd(dest: str, entries: bool, as_json: bool) -> None:
    """Write the checkpoint and tiles (C2SP tlog-tiles) under DEST, for any web server.

    DEST then holds `checkpoint` (the latest witnessed checkpoint, else the latest signed
    one) and `tile/...`; serve it as a URL prefix, or hand the folder over as it is. Run it
    again as the log grows: full tiles already there are kept, the checkpoint is written
    last.
    """
    from exchange.ledger.tiles import export_tiles
    from exchange.witness.published import published_checkpoint

    ex = _ex(read_only=True)
    note = published_checkpoint(ex.ledger, ex.home)
    r = export_tiles(ex.ledger, note, Path(dest), entries=entries)
    if as_json:
        echo_json({**r.to_dict(), "path": str(dest)})
        return
    click.echo(
        f"tiles of tree size {r.tree_size} in {dest}: {r.written} written, {r.kept} full "
        f"tiles already there" + (" (with entry bundles)" if r.entries else "")
    )


@ledger.command(
    "verify-receipt",
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def verify_receipt_cmd(args: tuple[str, ...]) -> None:
    """Check a receipt offline against tiles and witness keys (nsdx/verify_receipt.py).

    The same program as the one-file verifier; `nsdx ledger verify-receipt --help` lists
    its options (RECEIPT --tiles DIR-or-URL --log-key KEY [--witness-key KEY ...]).
    """
    from nsdx.verify_receipt import main

    sys.exit(main(list(args)))
